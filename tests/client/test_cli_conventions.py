"""The ``autodiff`` command's conventions: one version, exit statuses, JSON errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import autodiff_client
from app.cli import main
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``autodiff argv...`` in-process: exit status (argparse's exits too), stdout, stderr."""
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


# ----------------------------------------------------------------- version


def test_version_is_the_clients_and_the_services() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"autodiff {autodiff_client.__version__}"


def test_openapi_version_is_the_same(url: str) -> None:
    info = httpx.get(url + "/openapi.json", timeout=10).json()["info"]
    assert info["version"] == autodiff_client.__version__


# ------------------------------------------------------------ exit statuses

USAGE = [
    ["grad"],  # no function: argparse
    ["grad", "sum(x)", "--frobnicate"],  # unknown option: argparse
    ["grad", "sum(x)", "-i", "x"],  # no '='
    ["grad", "sum(x)", "-i", "x=[1,"],  # not JSON
    ["grad", "sum(x)", "-i", "x=1", "-i", "x=2"],  # given twice
    ["vjp", "x * 2", "-i", "x=[1, 2]"],  # vjp needs --cotangent
    ["grad", "@/nonexistent/program.txt", "-i", "x=1"],  # cannot read
    ["grad", "sum(x)", "-i", "x=1", "--const", "y"],  # --const names no input
    ["serve", "--workers", "0"],
]
COMPUTATION = [
    ["grad", "sum(x +* 2)", "-i", "x=[1]"],  # syntax error (422 at the service)
    ["grad", "sum(x * y)", "-i", "x=[1]"],  # unknown name
    ["grad", "x * 2", "-i", "x=[1, 2]"],  # non-scalar output without a cotangent
    ["grad", "sum(x)", "-i", 'x={"data": [1], "dtype": "int8"}'],  # invalid request
]


@pytest.mark.parametrize("argv", USAGE, ids=[" ".join(a) for a in USAGE])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and err


@pytest.mark.parametrize("argv", COMPUTATION, ids=[" ".join(a) for a in COMPUTATION])
def test_computation_errors_exit_1(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 1 and out == ""
    assert err.startswith("autodiff: error: ") and err.count("\n") == 1


def test_service_errors_exit_1(capsys: pytest.CaptureFixture[str], url: str) -> None:
    status, _, err = run(capsys, *COMPUTATION[0], "--url", url)
    assert status == 1 and "422 Invalid program" in err
    status, _, err = run(
        capsys, "grad", "sum(x)", "-i", "x=1", "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert status == 1 and "cannot reach" in err


def test_success_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "grad", "sum(x)", "-i", "x=[1]")[0] == 0


# -------------------------------------------------------------- JSON errors


def problem_of(err: str) -> dict[str, object]:
    """stderr as exactly one problem+json object."""
    assert err.count("\n") == 1, err
    problem = json.loads(err)
    assert isinstance(problem, dict)
    assert {"type", "title", "detail"} <= set(problem), problem
    return problem


@pytest.mark.parametrize("argv", USAGE[:-1], ids=[" ".join(a) for a in USAGE[:-1]])
def test_json_usage_errors_are_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, err = run(capsys, *argv, "--json")
    assert status == 2 and out == ""
    assert problem_of(err)["type"] == "urn:autodiff:problem:usage"


def test_json_computation_error_is_the_services_problem(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    argv = COMPUTATION[0]
    status, out, err = run(capsys, *argv, "--json")
    local = problem_of(err)
    assert status == 1 and out == ""
    status, out, err = run(capsys, *argv, "--json", "--url", url)
    remote = problem_of(err)
    assert status == 1 and out == ""
    answered = httpx.post(
        url + "/grad", json={"expression": argv[1], "inputs": {"x": [1]}}, timeout=10
    ).json()
    for problem in (local, remote):
        for key in ("type", "title", "status", "detail", "errors"):
            assert problem[key] == answered[key], (key, problem)


def test_json_unreachable_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    status, out, err = run(capsys, "ops", "--json", "--url", dead)
    assert status == 1 and out == ""
    assert problem_of(err)["type"] == "urn:autodiff:problem:unreachable"
