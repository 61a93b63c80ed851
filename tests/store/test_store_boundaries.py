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


# Imported by the app but installed by a declared dependency (FastAPI brings Starlette;
# autodiff-client brings httpx-retries, which app/client.py's shim imports).
TRANSITIVE = {"starlette", "httpx_retries"}


def test_every_library_the_app_imports_is_a_declared_dependency() -> None:
    # redis was installed here by hand but not declared: the image had no redis-py and
    # POST /functions answered 500 behind the compose file's redis (make deploy-test)
    import importlib.metadata
    import re
    import sys
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {
        re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower().replace("_", "-")
        for d in pyproject["project"]["dependencies"]
    }
    dists = importlib.metadata.packages_distributions()
    missing = set()
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in ("app", "engine") or top in TRANSITIVE:
                    continue
                names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not names & declared:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert missing == set()
