"""autodiff-client as a user gets it: ``pip install ./client`` in a fresh venv.

It pulls only httpx, NumPy and their own dependencies; it imports in a
project that has its own ``app`` package; ``mypy --strict`` reads its types (``py.typed``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
PIP_TIMEOUT = 600


def pip(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def resolved(*requirements: str) -> dict[str, list[str]]:
    """What ``pip install`` would install into an empty environment: name -> requires."""
    report = json.loads(
        pip(
            "install", "--dry-run", "--ignore-installed", "-q", "--report", "-", *requirements
        ).stdout
    )
    return {
        item["metadata"]["name"].lower(): item["metadata"].get("requires_dist") or []
        for item in report["install"]
    }


def test_installs_only_httpx_numpy_and_their_own_dependencies(clean_client: Path) -> None:
    client = resolved(str(clean_client))
    base = resolved("httpx", "numpy")
    assert set(client) - set(base) == {"autodiff-client"}, sorted(client)
    declared = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert sorted(d.split(">")[0] for d in declared["dependencies"]) == [
        "httpx",
        "numpy",
    ]
    assert set(declared["optional-dependencies"]) == {"jax", "torch", "scipy", "progress"}


@pytest.fixture(scope="module")
def clean_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """client/ as a fresh clone has it: no build/ or egg-info left by an earlier build
    (setuptools builds in place and would reuse them)."""
    copy = tmp_path_factory.mktemp("clone") / "client"
    junk = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".mypy_cache")
    shutil.copytree(CLIENT, copy, ignore=junk)
    return copy


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, clean_client: Path) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "-q", "-w", str(out), str(clean_client))
    (built,) = out.glob("autodiff_client-*.whl")
    return built


def test_wheel_is_typed_versioned_and_licensed(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for part in ("py.typed", "VERSION", "jax.py", "torch.py", "scipy.py", "client.py"):
        assert f"autodiff_client/{part}" in names
    assert not [n for n in names if n.startswith(("app/", "engine/", "tests/"))]
    meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = zipfile.ZipFile(wheel).read(meta_name).decode()
    version = (CLIENT / "src/autodiff_client/VERSION").read_text().strip()
    assert f"Version: {version}\n" in meta
    assert "License-Expression: MIT" in meta and "Project-URL: " in meta
    assert any(n.endswith("licenses/LICENSE") for n in names)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    """A fresh venv with the client wheel installed (non-editable, as a user has it)."""
    where = tmp_path_factory.mktemp("fresh")
    venv.create(where / "venv", with_pip=True)
    python = str(where / "venv" / "bin" / "python")
    pip("install", "-q", str(wheel), python=python)
    yield where


def test_imports_beside_a_users_own_app_package(fresh: Path) -> None:
    project = fresh / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("MINE = True\n")
    probe = (
        "import autodiff_client, app; from autodiff_client import Client; "
        "assert app.MINE; print(autodiff_client.__version__)"
    )
    done = subprocess.run(
        [str(fresh / "venv" / "bin" / "python"), "-c", probe],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (CLIENT / "src/autodiff_client/VERSION").read_text().strip()
    pip_list = pip("list", "--format=json", python=str(fresh / "venv" / "bin" / "python"))
    installed = {p["name"].lower() for p in json.loads(pip_list.stdout)}
    assert not installed & {"fastapi", "uvicorn", "pydantic", "pebble", "prometheus-client"}


USER_CODE = """\
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from autodiff_client import AsyncClient, AutodiffHTTPError, Client, Result


def gradient(url: str) -> npt.NDArray[np.floating]:
    with Client(url, retries=1) as ad:
        res: Result = ad.grad("sum(x ** 2)", {"x": np.arange(3.0)}, wrt=["x"], check=True)
        return res.gradients["x"]


async def hessian(url: str) -> npt.NDArray[np.floating]:
    async with AsyncClient(url) as ad:
        res = await ad.hessian("sum(x ** 3)", {"x": [1.0, 2.0]})
        return res.hessian["x"]["x"]


def status(err: AutodiffHTTPError) -> int:
    return err.status
"""
WRONG = {
    "a number as the function": 'Client().grad(1, {"x": 1.0})',
    "an unknown option": 'Client().grad("x", {"x": 1.0}, moed="forward")',
    "an await missing": 'len(AsyncClient().grad("x", {"x": 1.0}).gradients)',
    "a wrong mode": 'Client().jacobian("x", {"x": 1.0}, mode="sideways")',
}


def mypy_strict(fresh: Path, source: str) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on a user's file, finding autodiff_client installed in ``fresh``."""
    user = fresh / "user_code.py"
    user.write_text(source)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            str(fresh / "venv" / "bin" / "python"),
            str(user),
        ],
        cwd=fresh,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")},
    )


def test_mypy_strict_reads_the_installed_types(fresh: Path) -> None:
    done = mypy_strict(fresh, USER_CODE)
    assert done.returncode == 0, done.stdout + done.stderr
    # The types are read, not Any: each wrong call is an error.
    wrong = "from autodiff_client import AsyncClient, Client\n\n" + "\n".join(WRONG.values())
    done = mypy_strict(fresh, wrong + "\n")
    assert done.returncode == 1
    errors = [ln for ln in done.stdout.splitlines() if ": error:" in ln]
    assert len({ln.split(":")[1] for ln in errors}) == len(WRONG), done.stdout


# ------------------------------------------- the service installs the client from the tree


def test_the_image_installs_the_client_from_the_tree(tmp_path: Path) -> None:
    build = (ROOT / "Dockerfile").read_text().split("AS runtime", 1)[0]
    line = next(ln for ln in build.splitlines() if ln.startswith("RUN python -c"))
    (code,) = shlex.split(line.split("python -c ", 1)[1].split(" > requirements.txt")[0])
    (tmp_path / "client").mkdir()
    for name in ("pyproject.toml", "client/pyproject.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    requirements = done.stdout.split()
    assert "httpx>=0.27" in requirements and "fastapi>=0.165" in requirements
    assert not [r for r in requirements if r.startswith("autodiff-client")]  # never a registry's
    assert build.index("COPY client ./client") < build.index("--no-deps ./client .")


def test_make_installs_the_client_with_the_service() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    for target, wanted in (("serve", "-e . -e ./client"), ("test", "-e ./client[jax,torch,scipy]")):
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", target, "VENV=/nonexistent/venv"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        installs = [ln for ln in done.stdout.splitlines() if "pip install" in ln]
        assert any(wanted in ln.replace("'", "") for ln in installs), installs
