"""The service's version: one value for ``info.version``, the ``build_info`` metric and logs.

Read from the installed distribution's metadata (pyproject.toml), so it is written once.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "autodiff-service"


def service_version() -> str:
    """The installed ``autodiff-service`` version, or ``0+unknown`` when run uninstalled."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


__version__ = service_version()
