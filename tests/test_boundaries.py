"""The architecture's never-arrows, as tests: an import that must not exist fails here.

An AST scan of the source (every ``import`` and ``from ... import``, inside functions and
``TYPE_CHECKING`` blocks too, relative imports resolved), not an import of the modules:
a lazy import inside a function counts, and nothing is executed. import-linter would
do the same with contracts in pyproject.toml, but it is one more dependency and its
contracts cannot say "this module's classes carry no ``status``"; a page of ``ast`` can.

Each rule names its modules by glob (``engine.ops.*``) in the tables below, so pointing a
rule at a moved module is an edit of one line.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The engine's core: tracing and the backward walk.
ENGINE_CORE = ["engine.core", "engine.core.*"]
# The op rules.
OP_RULES = ["engine.ops", "engine.ops.*"]
# The measured shortcuts, each switchable (AUTODIFF_ENGINE_FAST=0).
FAST_LAYER = ["engine.fast", "engine.fast.*"]
WEB = ["fastapi", "fastapi.*", "starlette", "starlette.*", "uvicorn", "uvicorn.*"]
VALIDATION = ["pydantic", "pydantic.*", "pydantic_settings", "pydantic_settings.*"]
APP = ["app", "app.*"]
# Graph metadata and the language it must not know.
ENGINE_METADATA = ["engine.graph", "engine.dot"]
LANGUAGE = ["engine.lang", "engine.lang.*"]


class Rule(NamedTuple):
    """Modules matching ``importer`` must import nothing matching ``forbidden``."""

    name: str
    importer: list[str]
    forbidden: list[str]


RULES = [
    Rule(
        "engine imports no web, pydantic or app code",
        ["engine", "engine.*"],
        WEB + VALIDATION + APP,
    ),
    Rule("engine core imports no op rules", ENGINE_CORE, OP_RULES),
    Rule("language imports no routes or app", LANGUAGE, APP + WEB),
    Rule("compute imports no web framework", ["app.compute", "app.compute.*"], WEB),
    Rule("scheduling imports no web framework", ["app.scheduling", "app.scheduling.*"], WEB),
    Rule(
        "compute imports neither api nor scheduling",
        ["app.compute.*"],
        ["app.api*", "app.scheduling*"],
    ),
    Rule("scheduling imports no api", ["app.scheduling.*"], ["app.api", "app.api.*"]),
    Rule("engine core imports no fast-layer shortcut", ENGINE_CORE, FAST_LAYER),
    Rule("engine core does no NumPy maths", ENGINE_CORE, ["numpy", "numpy.*"]),
    Rule("graph metadata imports no language", ENGINE_METADATA, LANGUAGE),
]


def module_name(path: Path) -> str:
    """``engine/lang/ir.py`` -> ``engine.lang.ir``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module ``source`` imports (names imported from a module count as submodules
    too: ``from app import api`` may be the module ``app.api``)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def matches(name: str, globs: Iterable[str]) -> bool:
    """Whether module ``name`` matches one of the globs."""
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


def sources() -> dict[str, tuple[Path, bool]]:
    """Every module of engine/ and app/: name -> (path, is a package)."""
    out = {}
    for top in ("engine", "app"):
        for path in sorted((ROOT / top).rglob("*.py")):
            out[module_name(path)] = (path, path.name == "__init__.py")
    return out


def violations(rule: Rule) -> list[str]:
    """``importer -> imported`` for each import that breaks ``rule``."""
    found = []
    for name, (path, is_package) in sources().items():
        if not matches(name, rule.importer):
            continue
        for imported in sorted(imported_modules(path.read_text(), name, is_package)):
            if matches(imported, rule.forbidden):
                found.append(f"{name} -> {imported}")
    return found


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_never_arrow(rule: Rule) -> None:
    assert violations(rule) == []


def test_engine_errors_carry_no_http_status() -> None:
    errors = importlib.import_module("engine.errors")
    with_status = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and hasattr(value, "status")
    ]
    assert with_status == []


def test_the_rules_name_real_modules() -> None:
    """A glob that matches nothing guards nothing: each rule's importers and forbidden
    modules exist."""
    names = list(sources())
    for rule in RULES:
        assert any(matches(n, rule.importer) for n in names), rule.name
        internal = [g for g in rule.forbidden if g.split(".")[0] in ("engine", "app")]
        assert all(any(matches(n, [g]) for n in names) for g in internal), rule.name


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import fastapi.routing", "app.compute.run", "fastapi.routing"),
        ("def f():\n    from starlette import types", "app.scheduling.pool", "starlette.types"),
        ("from ..api import schemas", "app.compute.run", "app.api.schemas"),
        ("from . import wire", "app.compute.run", "app.compute.wire"),
    ],
)
def test_the_scan_sees_every_form_of_import(source: str, module: str, expected: str) -> None:
    assert expected in imported_modules(source, module, is_package=False)


def test_a_forbidden_import_breaks_its_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule fails when the arrow appears: a module of app/compute importing FastAPI."""
    rule = next(r for r in RULES if r.name == "compute imports no web framework")
    bad = tmp_path / "bad.py"
    bad.write_text("def handler():\n    from fastapi import Request\n")
    real = sources()
    monkeypatch.setitem(globals(), "sources", lambda: {**real, "app.compute.bad": (bad, False)})
    assert violations(rule) == ["app.compute.bad -> fastapi", "app.compute.bad -> fastapi.Request"]
