"""The store is a room of its own: no web framework, no API, no compute, no scheduling."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "app.api",
    "app.compute",
    "app.scheduling",
    "engine",
)


def test_the_store_imports_nothing_of_the_web_or_the_rest_of_the_app() -> None:
    found = []
    for path in sorted((ROOT / "app" / "store").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    found.append(f"{path.name}: {name}")
    assert found == []
    assert (ROOT / "app" / "store" / "base.py").exists()  # the scan saw the room
