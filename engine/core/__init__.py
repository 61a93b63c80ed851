"""The engine's core: tracing (``trace``) and the backward walk (``backward``). No maths.

The measured shortcuts that plug into it live in ``engine.fast`` and can be switched off
(``AUTODIFF_ENGINE_FAST=0``); with them off, this core and the rules give the same answers.
"""
