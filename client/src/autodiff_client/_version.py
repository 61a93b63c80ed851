"""The version of autodiff-client and autodiff-service: one file, ``VERSION``, says it.

Both distributions read that file at build time (setuptools' ``file:`` directive) and
this module reads it at run time, so the number is written once.
"""

from __future__ import annotations

from importlib.resources import files

__version__: str = files(__package__ or "autodiff_client").joinpath("VERSION").read_text().strip()
