"""Issues 16 and 17 in the client and the CLI, against a real uvicorn server with jobs:
K directions (cotangents, tangents_batch, vectors_batch) against the same service's one-
direction answers, stored functions (store, compute by id, the 404 re-store and its one
retry), jobs (submit, wait with and without a bar, cancel, a failed job, background=True),
and the CLI's --background, `jobs get|cancel` and `functions store`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app import cli
from autodiff_client import AsyncClient, AutodiffHTTPError, Client, StoredFunction
from autodiff_client.client import UNKNOWN_FUNCTION
from tests.servers import free_port, start_uvicorn, stop, wait_ready

pytestmark = pytest.mark.timeout(240)

# A loop that runs until cancelled (the server here allows its 2,000,000 iterations).
ENDLESS = "s = x\nfor i in range(1000000):\n    s = sin(s) * 0.5 + x\nreturn sum(s)"
FINAL = ("done", "failed", "cancelled")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under uvicorn with a job worker and a store of its own (not the machine's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    env.update(
        {
            "AUTODIFF_WORKERS": "1",
            "AUTODIFF_JOB_WORKERS": "1",
            "AUTODIFF_LOG_LEVEL": "warning",
            "AUTODIFF_MAX_ITERATIONS": "2000000",
            "AUTODIFF_STORE_DIR": str(tmp_path_factory.mktemp("store")),
        }
    )
    port = free_port()
    proc = start_uvicorn(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", proc)
        yield base
    finally:
        stop(proc)


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, retries=0) as c:
        yield c


def wait_running(client: Client, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.job_status(job_id)["status"] == "queued":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


# ------------------------------------------------------------------ K directions


def test_k_directions_are_the_one_direction_answers_stacked(client: Client) -> None:
    rng = np.random.default_rng(16)
    x, y = rng.normal(size=3), rng.normal(size=3)
    fn, inputs = "sin(x) * y + x ** 3", {"x": x, "y": y}
    cots = rng.normal(size=(4, 3))
    tx, ty = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))

    vjp = client.vjp(fn, inputs, cotangents=cots)
    assert vjp.vjp["x"].shape == (4, 3)
    for name in "xy":
        one = [client.vjp(fn, inputs, c).vjp[name] for c in cots]
        np.testing.assert_allclose(vjp.vjp[name], np.stack(one), rtol=1e-12)
    as_list = client.vjp(fn, inputs, cotangents=list(cots))  # a list of K works the same
    np.testing.assert_allclose(as_list.vjp["x"], vjp.vjp["x"], rtol=1e-12)
    np.testing.assert_allclose(vjp.value, np.sin(x) * y + x**3)  # value keeps its shape

    jvp = client.jvp(fn, inputs, tangents_batch={"x": tx, "y": ty})
    assert isinstance(jvp.jvp, np.ndarray) and jvp.jvp.shape == (4, 3)
    one = [client.jvp(fn, inputs, {"x": a, "y": b}).jvp for a, b in zip(tx, ty, strict=True)]
    np.testing.assert_allclose(jvp.jvp, np.stack(one), rtol=1e-12)  # type: ignore[arg-type]

    scalar = "sum(sin(x) * y * x)"
    hvp = client.hvp(scalar, inputs, vectors_batch={"x": tx, "y": ty})
    for name in "xy":
        assert hvp.hvp[name].shape == (4, 3)
        one = [
            client.hvp(scalar, inputs, {"x": a, "y": b}).hvp[name]
            for a, b in zip(tx, ty, strict=True)
        ]
        np.testing.assert_allclose(hvp.hvp[name], np.stack(one), rtol=1e-12)


def test_exactly_one_of_the_plain_and_the_batch_direction(client: Client) -> None:
    x = np.ones(2)
    with pytest.raises(TypeError, match="exactly one of cotangent and cotangents"):
        client.vjp("x * 2", {"x": x})
    with pytest.raises(TypeError, match="exactly one of tangents and tangents_batch"):
        client.jvp("x * 2", {"x": x}, {"x": x}, tangents_batch={"x": np.ones((2, 2))})
    with pytest.raises(TypeError, match="exactly one of vectors and vectors_batch"):
        client.hvp("sum(x ** 3)", {"x": x})


def test_k_directions_in_the_async_client(url: str) -> None:
    x, vs = np.array([0.5, -1.0]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    async def run() -> Any:
        async with AsyncClient(url, retries=0) as ad:
            return await ad.hvp("sum(x ** 4)", {"x": x}, vectors_batch={"x": vs})

    res = asyncio.run(run())
    np.testing.assert_allclose(res.hvp["x"], vs * 12 * x**2)  # the Hessian is diag(12 x^2)


# -------------------------------------------------------------- stored functions


def test_store_and_compute_by_id(client: Client) -> None:
    w, x = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    fid = client.store("sum(w * x ** 2)", {"w": w})
    assert isinstance(fid, StoredFunction) and fid.startswith("sha256:") and len(fid) == 71
    assert client.store("sum(w * x ** 2)", {"w": w.tolist()}) == fid  # a content hash
    meta = client.function_get(fid)
    assert meta["id"] == fid and meta["free_inputs"] == ["x"]
    by_id = client.grad(fid, {"x": x})
    np.testing.assert_allclose(by_id.gradients["x"], 2 * w * x)
    assert "w" not in by_id.gradients  # a stored constant gets no gradient
    plain = client.hessian(str(fid), {"x": x})  # a plain "sha256:..." str is an id too
    np.testing.assert_allclose(plain.hessian["x"]["x"], np.diag(2 * w))


def test_a_forgotten_function_is_stored_again_and_the_request_retried(
    client: Client, url: str
) -> None:
    x = np.array([1.0, 2.0])
    fid = client.store("sum(c * sin(x))", {"c": [2.0, 3.0]})
    client.function_delete(fid)
    with pytest.raises(AutodiffHTTPError) as gone:
        client.function_get(fid)
    assert gone.value.status == 404 and gone.value.type == UNKNOWN_FUNCTION

    # the client kept it: the 404 makes it store it again, and the retry answers
    res = client.grad(fid, {"x": x})
    np.testing.assert_allclose(res.gradients["x"], np.array([2.0, 3.0]) * np.cos(x))
    assert client.function_get(fid)["id"] == fid  # it is stored again

    # another client that never stored it cannot: the 404 is the caller's
    client.function_delete(fid)
    with Client(url, retries=0) as other, pytest.raises(AutodiffHTTPError) as unknown:
        other.grad(str(fid), {"x": x})
    assert unknown.value.status == 404 and unknown.value.type == UNKNOWN_FUNCTION

    # a job names a stored function too (still deleted here), and is re-stored the same way
    job = client.submit("grad", fid, {"x": x})
    np.testing.assert_allclose(job.result(timeout=60).gradients["x"], res.gradients["x"])


def test_the_re_store_retries_once_only() -> None:
    # a service that forgets at once: the client stores it again once, then gives the 404
    calls: list[str] = []
    fid = "sha256:" + "ab" * 32

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/functions":
            return httpx.Response(201, json={"id": fid, "free_inputs": ["x"]})
        problem = {"type": UNKNOWN_FUNCTION, "title": "Unknown function", "status": 404}
        return httpx.Response(404, json=problem)

    with Client("http://test", retries=0, transport=httpx.MockTransport(handler)) as c:
        stored = c.store("sum(x)")
        with pytest.raises(AutodiffHTTPError) as exc:
            c.grad(stored, {"x": [1.0]})
    assert exc.value.type == UNKNOWN_FUNCTION
    assert calls == ["/functions", "/grad", "/functions", "/grad"]


def test_store_and_re_store_in_the_async_client(url: str) -> None:
    x = np.array([0.25, 4.0])

    async def run() -> tuple[Any, Any]:
        async with AsyncClient(url, retries=0) as ad:
            fid = await ad.store("sum(log(x) * k)", {"k": [3.0, 5.0]})
            await ad.function_delete(fid)
            res = await ad.grad(fid, {"x": x})
            return res, await ad.function_get(fid)

    res, meta = asyncio.run(run())
    np.testing.assert_allclose(res.gradients["x"], np.array([3.0, 5.0]) / x)
    assert meta["id"].startswith("sha256:")


def test_store_refuses_an_id() -> None:
    with Client("http://127.0.0.1:1", retries=0) as c, pytest.raises(TypeError, match="not an id"):
        c.store("sha256:" + "0" * 64)


# -------------------------------------------------------------------------- jobs


def test_submit_and_wait_answer_the_synchronous_result(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.linspace(-1.0, 1.0, 6)
    fn = "sin(x) * sum(x ** 2)"
    job = client.submit("jacobian", fn, {"x": x}, mode="forward")
    assert job.id and job.endpoint == "jacobian"
    res = job.wait(progress=True)
    assert "jacobian" in capsys.readouterr().err  # the bar, labelled, on stderr
    sync = client.jacobian(fn, {"x": x}, mode="forward")
    np.testing.assert_allclose(res.jacobian["x"], sync.jacobian["x"], rtol=1e-12)
    assert res.mode == "forward"
    status = job.status()
    assert status["status"] == "done" and status["progress"]["done"] == status["progress"]["total"]


def test_background_true_is_the_synchronous_answer(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.array([0.3, -0.7, 1.1])
    fn = "sum(sin(x) ** 2) * sum(x)"
    back = client.hessian(fn, {"x": x}, background=True)
    assert capsys.readouterr().err == ""  # no bar unless asked for
    np.testing.assert_allclose(
        back.hessian["x"]["x"], client.hessian(fn, {"x": x}).hessian["x"]["x"], rtol=1e-12
    )
    jac = client.jacobian("x * x", {"x": x}, background=True, progress=True)
    assert "%" in capsys.readouterr().err
    np.testing.assert_allclose(jac.jacobian["x"], np.diag(2 * x))


def test_background_in_the_async_client(url: str) -> None:
    x = np.array([1.0, 2.0])

    async def run() -> Any:
        async with AsyncClient(url, retries=0) as ad:
            job = await ad.submit("hvp", "sum(x ** 3)", {"x": x}, vectors={"x": [1.0, 1.0]})
            by_job = await job.result(timeout=60)
            return by_job, await ad.jacobian("x ** 2", {"x": x}, background=True)

    by_job, jac = asyncio.run(run())
    np.testing.assert_allclose(by_job.hvp["x"], 6 * x)
    np.testing.assert_allclose(jac.jacobian["x"], np.diag(2 * x))


def test_cancel_and_a_timeout(client: Client) -> None:
    job = client.submit("grad", ENDLESS, {"x": [0.1, 0.2]})
    with pytest.raises(TimeoutError):
        job.wait(progress=False, timeout=0.3)  # the job keeps running
    assert job.cancel()["status"] == "cancelled"
    with pytest.raises(AutodiffHTTPError) as exc:
        job.result(timeout=30)
    assert "cancelled" in exc.value.title.lower() or "cancel" in exc.value.detail


def test_a_failed_job_raises_its_problem(client: Client) -> None:
    # a non-scalar output without a cotangent: refused at once or failed, a 422 either way
    with pytest.raises(AutodiffHTTPError) as exc:
        client.submit("grad", "x * 2", {"x": [1.0, 2.0]}).wait(progress=False, timeout=60)
    assert exc.value.status == 422 and "cotangent" in exc.value.detail
    with pytest.raises(AutodiffHTTPError) as missing:
        client.job("job_" + "0" * 32).status()
    assert missing.value.status == 404
    with pytest.raises(ValueError, match="no job endpoint"):
        client.submit("ops", "x", {"x": 1.0})


# --------------------------------------------------------------------------- CLI


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_background_prints_the_synchronous_answer(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("jacobian", "sin(x) * x", "-i", "x=[0.5, 1.0, 2.0]", "--url", url)
    status, sync_out, _ = run_cli(capsys, *args)
    assert status == 0
    status, out, err = run_cli(capsys, *args, "--background")
    assert status == 0 and out == sync_out and "jacobian" in err  # the bar on stderr
    status, out, _ = run_cli(capsys, "hessian", "sum(x ** 3)", "-i", "x=[1,2]", "--url", url,
                             "--background", "--json")  # fmt: skip
    assert status == 0 and json.loads(out)["hessian"]["x"]["x"] == [[6.0, 0.0], [0.0, 12.0]]
    status, _, err = run_cli(capsys, "grad", "x * 2", "-i", "x=[1,2]", "--url", url,
                             "--background", "--json")  # fmt: skip
    assert status == 1 and json.loads(err)["status"] == 422  # stderr: one problem, no bar
    # a failed job: exit 1 with its problem; --background without --url: a usage error
    status, _, err = run_cli(capsys, "grad", "x * 2", "-i", "x=[1,2]", "--url", url, "--background")
    assert status == 1 and "cotangent" in err
    status, _, err = run_cli(capsys, "grad", "sum(x)", "-i", "x=[1]", "--background")
    assert status == 2 and "needs --url" in err


def test_cli_jobs_get_and_cancel(
    client: Client, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done = client.submit("grad", "sum(x ** 2)", {"x": [1.0, 3.0]})
    done.result(timeout=60)
    status, out, _ = run_cli(capsys, "jobs", "get", done.id, "--url", url, "--json")
    assert status == 0 and json.loads(out)["result"]["gradients"]["x"] == [2.0, 6.0]
    status, out, _ = run_cli(capsys, "jobs", "get", done.id, "--url", url)
    assert status == 0 and "status: done" in out and "[2., 6.]" in out

    endless = client.submit("grad", ENDLESS, {"x": [0.1]})
    wait_running(client, endless.id)
    status, out, _ = run_cli(capsys, "jobs", "cancel", endless.id, "--url", url)
    assert status == 0 and "status: cancelled" in out
    assert client.job_status(endless.id)["status"] == "cancelled"

    status, _, err = run_cli(capsys, "jobs", "get", "job_" + "f" * 32, "--url", url, "--json")
    assert status == 1 and json.loads(err)["status"] == 404
    status, _, err = run_cli(capsys, "jobs", "get", done.id)
    assert status == 2 and "needs --url" in err


def test_cli_functions_store_get_delete(
    client: Client, url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = run_cli(capsys, "functions", "store", "sum(w * x)", "-c", "w=[1, 2]",
                             "--url", url)  # fmt: skip
    fid = out.strip()
    assert status == 0 and fid.startswith("sha256:")
    assert client.grad(fid, {"x": [5.0, 7.0]}).gradients["x"].tolist() == [1.0, 2.0]
    status, out, _ = run_cli(capsys, "functions", "get", fid, "--url", url, "--json")
    assert status == 0 and json.loads(out)["id"] == fid
    status, out, _ = run_cli(capsys, "grad", fid, "-i", "x=[1, 1]", "--url", url, "--json")
    assert status == 0 and json.loads(out)["gradients"]["x"] == [1.0, 2.0]
    status, _, _ = run_cli(capsys, "functions", "delete", fid, "--url", url)
    assert status == 0
    status, _, err = run_cli(capsys, "functions", "get", fid, "--url", url, "--json")
    assert status == 1 and json.loads(err)["type"] == UNKNOWN_FUNCTION
    status, _, err = run_cli(capsys, "functions", "store", "sum(w * x)", "-c", "w=[1, [2]]",
                             "--url", url)  # fmt: skip
    assert status == 2 and "rectangular" in err


def test_without_tqdm_the_wait_warns_and_has_no_bar(
    client: Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # `import tqdm.auto` fails
    job = client.submit("grad", "sum(x ** 2)", {"x": [2.0]})
    with pytest.warns(RuntimeWarning, match=r"autodiff-client\[progress\]"):
        res = job.wait(progress=True, timeout=60)
    assert res.gradients["x"].tolist() == [4.0] and capsys.readouterr().err == ""
