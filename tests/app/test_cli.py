"""The ``autodiff`` command: local computation, ``--url`` against the real app, errors, serve."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "autodiff"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll /readyz until the server answers, failing if it exits first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("the server did not become ready")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The real app, started with ``autodiff serve`` (so that command is tested too)."""
    port = free_port()
    env = {**os.environ, "AUTODIFF_WORKERS": "1", "AUTODIFF_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``autodiff argv...`` in-process: exit status, stdout, stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    """``autodiff argv... --json``, parsed."""
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


# ------------------------------------------------------------------ local


def test_grad_readable(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "grad", "2*dot(x,x)", "-i", "x=[0,1,2,3]")
    assert status == 0 and err == ""
    assert out.splitlines() == ["value: 28.0", "gradients:", "  x: [ 0.,  4.,  8., 12.]"]


def test_grad_json(capsys: pytest.CaptureFixture[str]) -> None:
    answer = as_json(capsys, "grad", "2*dot(x,x)", "-i", "x=[0,1,2,3]")
    assert answer["value"] == 28.0 and answer["gradients"] == {"x": [0.0, 4.0, 8.0, 12.0]}
    assert "graph" not in answer
    with_graph = as_json(capsys, "grad", "2*dot(x,x)", "-i", "x=[0,1,2,3]", "--graph", "--check")
    assert with_graph["graph"]["num_nodes"] >= 2 and with_graph["check"]["max_abs_error"] < 1e-6


def test_every_derivative_locally(capsys: pytest.CaptureFixture[str]) -> None:
    x = [1.0, -2.0, 0.5]
    xs = f"x={json.dumps(x)}"
    ax = np.array(x)
    vjp = as_json(capsys, "vjp", "x * x", "-i", xs, "--cotangent", "[1, 2, 3]")
    np.testing.assert_allclose(vjp["vjp"]["x"], 2 * ax * [1, 2, 3])
    jvp = as_json(capsys, "jvp", "sin(x)", "-i", xs, "-t", "x=[1,0,1]")
    np.testing.assert_allclose(jvp["jvp"], np.cos(ax) * [1, 0, 1])
    jac = as_json(capsys, "jacobian", "x * x", "-i", xs, "--mode", "forward")
    np.testing.assert_allclose(jac["jacobian"]["x"], np.diag(2 * ax))
    assert jac["mode"] == "forward"
    hes = as_json(capsys, "hessian", "sum(x ** 3)", "-i", xs)
    np.testing.assert_allclose(hes["hessian"]["x"]["x"], np.diag(6 * ax))
    hvp = as_json(capsys, "hvp", "sum(x ** 3)", "-i", xs, "-v", "x=[1,1,1]")
    np.testing.assert_allclose(hvp["hvp"]["x"], 6 * ax)


def test_constants_wrt_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    program = tmp_path / "f.txt"
    program.write_text("u = x * c\nreturn sum(u * y)\n")
    np.save(tmp_path / "y.npy", np.array([1.0, 2.0]))
    answer = as_json(
        capsys,
        "grad",
        f"@{program}",
        "-i",
        "x=[3, 4]",
        "-i",
        "c=[1, 1]",
        "-i",
        f"y=@{tmp_path / 'y.npy'}",
        "--const",
        "c",
        "--wrt",
        "x",
    )
    assert answer["gradients"] == {"x": [1.0, 2.0]}
    graph = tmp_path / "g.json"
    graph.write_text(
        json.dumps({"nodes": [{"id": "s", "op": "sum", "inputs": ["x"]}], "outputs": ["s"]})
    )
    assert as_json(capsys, "grad", f"@{graph}", "-i", "x=[1, 2]")["gradients"] == {"x": [1.0, 1.0]}


def test_hessian_readable_nests_names(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "hessian", "x * y", "-i", "x=2", "-i", "y=3")
    assert status == 0
    assert "hessian:\n  x:\n    x: 0.0\n    y: 1.0\n  y:\n    x: 1.0\n    y: 0.0" in out


def test_ops_locally(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "ops")
    assert status == 0
    assert any(line.startswith("dot(") for line in out.splitlines())


# ------------------------------------------------------------------ errors


# Exit 1: the computation refused (as the service would, 422); 2: the command line is wrong.
@pytest.mark.parametrize(
    ("argv", "expected", "exit_status"),
    [
        (["grad", "sum(x +* 2)", "-i", "x=[1]"], "line 1", 1),
        (["grad", "sum(x * y)", "-i", "x=[1]"], "y", 1),
        (["grad", "x * 2", "-i", "x=[1, 2]"], "cotangent", 1),
        (["grad", "sum(x)", "-i", "x=[1,"], "not JSON", 2),
        (["grad", "sum(x)", "-i", "x"], "NAME=VALUE", 2),
        (["vjp", "x * 2", "-i", "x=[1, 2]"], "--cotangent", 2),
        (["grad", "@/nonexistent/file.txt", "-i", "x=1"], "cannot read", 2),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str, exit_status: int
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == exit_status and out == ""
    assert err.count("\n") == 1 and err.startswith("autodiff: error: ")
    assert expected in err


def test_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "grad", "sum(x)", "-i", "x=[1]", "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert status == 1 and err.count("\n") == 1 and "cannot reach" in err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


# ----------------------------------------------------------------- --url


def test_url_gives_the_same_answers_as_local(capsys: pytest.CaptureFixture[str], url: str) -> None:
    for argv in (
        ["grad", "2*dot(x,x)", "-i", "x=[0,1,2,3]"],
        ["jacobian", "x * x", "-i", "x=[1, 2]"],
        ["hessian", "sum(x ** 3)", "-i", "x=[1, 2]"],
    ):
        local = as_json(capsys, *argv)
        remote = as_json(capsys, *argv, "--url", url)
        for key in ("value", "gradients", "jacobian", "hessian"):
            assert local.get(key) == remote.get(key), (argv, key)
    status, out, _ = run(capsys, "grad", "2*dot(x,x)", "-i", "x=[0,1,2,3]", "--url", url)
    assert status == 0 and out.startswith("value: 28.0\n")


def test_url_error_is_one_line(capsys: pytest.CaptureFixture[str], url: str) -> None:
    status, _, err = run(capsys, "grad", "sum(x +* 2)", "-i", "x=[1]", "--url", url)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("autodiff: error: 422 ") and "line 1" in err


def test_url_ops(capsys: pytest.CaptureFixture[str], url: str) -> None:
    remote = as_json(capsys, "ops", "--url", url)
    local = as_json(capsys, "ops")
    assert remote == local


def test_console_script_is_installed() -> None:
    # `make test` installs the project, which puts `autodiff` next to the interpreter.
    assert SCRIPT.exists(), "run `make test` (pip install -e .) to install the console script"
    run_ = subprocess.run(
        [str(SCRIPT), "grad", "sum(x * x)", "-i", "x=[1, 2]", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run_.returncode == 0, run_.stderr
    assert json.loads(run_.stdout)["gradients"] == {"x": [2.0, 4.0]}


def test_readme_console_session_is_what_the_cli_prints(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    readme = (ROOT / "README.md").read_text()
    session = readme.split("## Command line", 1)[1].split("```console\n", 1)[1].split("```")[0]
    chunks = [c for c in session.split("$ ") if c.strip()]
    checked = 0
    for chunk in chunks:
        command, *expected = chunk.rstrip("\n").split("\n")
        argv = shlex.split(command.replace("http://127.0.0.1:8000", url))
        if argv[0] != "autodiff":
            continue  # `echo $?`: the status is checked below
        status, out, err = run(capsys, *argv[1:])
        assert (out + err).rstrip("\n").split("\n") == expected, command
        assert status == (1 if err else 0)
        checked += 1
    assert checked >= 4


# ------------------------------------------------------------------------ serve


def test_serve_defaults_to_two_processes_as_make_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UVICORN_WORKERS", raising=False)
    assert build_parser().parse_args(["serve"]).workers == 2
    monkeypatch.setenv("UVICORN_WORKERS", "3")
    assert build_parser().parse_args(["serve"]).workers == 3
    assert build_parser().parse_args(["serve", "--workers", "1"]).workers == 1


def test_serve_passes_the_process_count_to_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setenv("UVICORN_WORKERS", "2")
    assert main(["serve", "--workers", "3"]) == 0
    assert calls[0]["workers"] == 3 and calls[0]["access_log"] is False
    # The app sizes its pools and picks its metrics mode from the variable.
    assert os.environ["UVICORN_WORKERS"] == "3"
    assert main(["serve", "--workers", "0"]) == 2  # a usage error
