"""The oldest Python pyproject.toml promises (3.11.0): what it does differently at import.

`deploy/test/python-floor.sh` (`make test-python-floor`) runs the engine and server tests on
Debian 12's CPython 3.11.2; this file checks, on any 3.11, the one thing CPython before
3.11.4 does at import that later versions do not: ``@dataclass`` builds each class's
``__doc__`` from ``inspect.signature(cls)``, which raises for a field whose default reads as
"no default" (``inspect.Parameter.empty``) after one without.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest


def modules(package: str) -> list[str]:
    """Every module of a package, by name."""
    root = importlib.import_module(package)
    found = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        found.append(info.name)
    return found


def dataclasses_of(package: str) -> list[type]:
    """Every dataclass defined in the package's modules."""
    classes: list[type] = []
    for name in modules(package):
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and dataclasses.is_dataclass(value)
                and value.__module__ == name
            ):
                classes.append(value)
    return classes


@pytest.mark.parametrize("package", ["engine", "app"])
def test_every_dataclass_has_a_signature_as_python_3_11_0_builds_it(package: str) -> None:
    classes = dataclasses_of(package)
    assert classes, f"no dataclasses found in {package}"
    broken = []
    for cls in classes:
        try:
            inspect.signature(cls)
        except (TypeError, ValueError) as error:
            broken.append(f"{cls.__module__}.{cls.__qualname__}: {error}")
    assert not broken, broken
