"""The language's own code never hands user text to Python's evaluators."""

from __future__ import annotations

import ast
from pathlib import Path

import engine.lang

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "breakpoint"}


def test_no_evaluator_is_called_anywhere_in_the_language() -> None:
    root = Path(engine.lang.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):  # re.compile is fine
                name = node.func.id
                assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n in {"builtins", "importlib", "pickle"} for n in names), path.name


def test_program_data_holds_no_callables() -> None:
    source = "s = 0\nfor i in range(3):\n    if x[i] > 0 and not x[i] > 5:\n        s += x[i:][0]\n"
    program = engine.lang.compile_source(source + "return s, 1")
    stack: list[object] = [program.body]
    while stack:
        item = stack.pop()
        assert not callable(item) or isinstance(item, type), item
        if isinstance(item, tuple):
            stack.extend(item)
