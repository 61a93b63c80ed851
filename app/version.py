"""The service's version: one value for ``info.version``, the ``build_info`` metric and logs.

Written once, in ``client/src/autodiff_client/VERSION``: the service and the client are
released together, and the client distribution (which the service depends on) reads it.
"""

from __future__ import annotations

from autodiff_client import __version__

__all__ = ["__version__"]
