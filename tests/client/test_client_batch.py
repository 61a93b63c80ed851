"""``batch=`` in the client and ``--batch`` in the CLI (issue 16), against a real uvicorn server:
every compute method's batched answer is the same service's one-point answers stacked, with K
directions too, on a stored function, in the async client and as a job; the per-sample
gradients of the README's example against torch.func's ``vmap``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from app import cli
from autodiff_client import AsyncClient, AutodiffHTTPError, Client, Result, StoredFunction

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

B = 3
FN = "sin(x) * y + x ** 3 * sum(y)"  # x is batched (B, 2), y shared (2,)
SCALAR = "sum(sin(x) * y * x) + prod(x)"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under uvicorn with a job worker and a store of its own."""
    from tests.servers import running

    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    env.update(
        AUTODIFF_WORKERS="1",
        AUTODIFF_JOB_WORKERS="1",
        AUTODIFF_LOG_LEVEL="warning",
        AUTODIFF_STORE_DIR=str(tmp_path_factory.mktemp("store")),
    )
    with running(1, env) as (base,):
        yield base


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, retries=0) as c:
        yield c


@pytest.fixture
def points() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1616)
    return rng.normal(size=(B, 2)), rng.normal(size=2)


def stacked(results: list[Result], part: Callable[[Result], Any]) -> np.ndarray:
    """One part of each point's answer, stacked on a new leading axis."""
    return np.stack([np.asarray(part(r)) for r in results])


# ------------------------------------------------------------------ the body


def test_batch_goes_in_the_body_as_a_list_of_names() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"value": 0.0})

    with Client("http://127.0.0.1:9", retries=0, transport=httpx.MockTransport(handler)) as c:
        c.grad("sum(x)", {"x": np.ones((2, 3))}, batch="x")
        c.hessian("sum(x*y)", {"x": np.ones((2, 3)), "y": np.ones((2, 3))}, batch=("x", "y"))
        c.grad("sum(x)", {"x": np.ones(3)})
    assert bodies[0]["batch"] == ["x"] and bodies[1]["batch"] == ["x", "y"]
    assert "batch" not in bodies[2]  # left to the service's default: no batch


def test_a_batch_asks_for_b64_when_its_answer_will_be_large() -> None:
    """Per-sample gradients of 300 shared weights at 4 points are 1,204 numbers, though the
    inputs are 304: the answer is asked for in b64 (B times one point's size)."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"value": 0.0})

    w, xs = np.ones(300), np.ones((4, 1))
    with Client("http://127.0.0.1:9", retries=0, transport=httpx.MockTransport(handler)) as c:
        c.grad("sum(w) * x[0]", {"w": w, "x": xs}, batch="x")
        c.grad("sum(w) * x[0]", {"w": w, "x": xs[0]})  # one point: 301 numbers
        c.hessian("sum(w * w) * x[0]", {"w": w[:20], "x": np.ones((3, 1))}, batch="x")
        c.grad("sum(w) * x[0]", {"w": w[:100], "x": np.ones((4, 1))}, batch="x")
    assert [b["encoding"] for b in bodies] == ["b64", "json", "b64", "json"]


def test_a_batch_over_stored_constants_is_sized_from_them() -> None:
    """Batching a stored function's data: B comes from the constants the client stored."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"value": 0.0})

    data = {"x": np.ones((300, 2)), "t": np.ones(300)}
    stored = StoredFunction("sha256:" + "0" * 64, "sum(w * x) - t", data)
    with Client("http://127.0.0.1:9", retries=0, transport=httpx.MockTransport(handler)) as c:
        c.grad(stored, {"w": np.ones(5)}, batch=["x", "t"])  # 300 points x 5 numbers
        c.grad(stored, {"w": np.ones(5)})  # 5 numbers
    assert [b["encoding"] for b in bodies] == ["b64", "json"]
    assert bodies[0]["batch"] == ["x", "t"] and set(bodies[0]["inputs"]) == {"w"}


# ------------------------------------------------------- every method, point by point


def test_grad_vjp_jvp_per_point(client: Client, points: tuple[np.ndarray, np.ndarray]) -> None:
    xs, y = points
    batched = client.grad(SCALAR, {"x": xs, "y": y}, batch="x")
    ones = [client.grad(SCALAR, {"x": x, "y": y}) for x in xs]
    np.testing.assert_allclose(batched.value, stacked(ones, lambda r: r.value), rtol=1e-12)
    for name in "xy":  # a shared input's gradient is per point too
        assert batched.gradients[name].shape == (B, 2)
        one = stacked(ones, lambda r: r.gradients[name])  # noqa: B023 - used at once
        np.testing.assert_allclose(batched.gradients[name], one, rtol=1e-12)

    cot = np.array([1.0, -2.0])  # the per-point shape: shared by every point
    batched = client.vjp(FN, {"x": xs, "y": y}, cot, batch=["x"])
    ones = [client.vjp(FN, {"x": x, "y": y}, cot) for x in xs]
    for name in "xy":
        one = stacked(ones, lambda r: r.vjp[name])  # noqa: B023
        np.testing.assert_allclose(batched.vjp[name], one, rtol=1e-12)

    tangents = {"x": np.array([0.5, 1.0]), "y": np.array([1.0, 0.0])}
    batched = client.jvp(FN, {"x": xs, "y": y}, tangents, batch=["x"])
    ones = [client.jvp(FN, {"x": x, "y": y}, tangents) for x in xs]
    np.testing.assert_allclose(batched.jvp, stacked(ones, lambda r: r.jvp), rtol=1e-12)  # type: ignore[arg-type]
    assert np.shape(batched.value) == (B, 2)


def test_jacobian_hessian_hvp_per_point(
    client: Client, points: tuple[np.ndarray, np.ndarray]
) -> None:
    xs, y = points
    for mode in ("reverse", "forward"):
        batched = client.jacobian(FN, {"x": xs, "y": y}, batch="x", mode=mode)
        ones = [client.jacobian(FN, {"x": x, "y": y}, mode=mode) for x in xs]
        for name in "xy":
            assert np.shape(batched.jacobian[name]) == (B, 2, 2)
            one = stacked(ones, lambda r: r.jacobian[name])  # noqa: B023
            np.testing.assert_allclose(batched.jacobian[name], one, rtol=1e-12)

    batched = client.hessian(SCALAR, {"x": xs, "y": y}, batch="x")
    ones = [client.hessian(SCALAR, {"x": x, "y": y}) for x in xs]
    for a in "xy":
        for b in "xy":
            one = stacked(ones, lambda r: r.hessian[a][b])  # noqa: B023
            np.testing.assert_allclose(batched.hessian[a][b], one, rtol=1e-12)

    vectors = {"x": np.array([1.0, 2.0]), "y": np.array([0.0, -1.0])}
    batched = client.hvp(SCALAR, {"x": xs, "y": y}, vectors, batch="x")
    ones = [client.hvp(SCALAR, {"x": x, "y": y}, vectors) for x in xs]
    for name in "xy":
        one = stacked(ones, lambda r: r.hvp[name])  # noqa: B023
        np.testing.assert_allclose(batched.hvp[name], one, rtol=1e-12)


def test_a_direction_per_point(client: Client, points: tuple[np.ndarray, np.ndarray]) -> None:
    """With ``batch``, a direction with a leading axis B gives each point its own."""
    xs, y = points
    cots = np.arange(B * 2, dtype=float).reshape(B, 2) - 2
    vjp = client.vjp(FN, {"x": xs, "y": y}, cots, batch="x")
    one = np.stack(
        [client.vjp(FN, {"x": x, "y": y}, c).vjp["x"] for x, c in zip(xs, cots, strict=True)]
    )
    np.testing.assert_allclose(vjp.vjp["x"], one, rtol=1e-12)


def test_batch_and_k_directions_give_b_by_k(
    client: Client, points: tuple[np.ndarray, np.ndarray]
) -> None:
    xs, y = points
    k = 4
    cots = np.random.default_rng(4).normal(size=(k, 2))
    vjp = client.vjp(FN, {"x": xs, "y": y}, cotangents=cots, batch="x")
    assert vjp.vjp["x"].shape == (B, k, 2)
    ones = [client.vjp(FN, {"x": x, "y": y}, cotangents=cots) for x in xs]
    one = stacked(ones, lambda r: r.vjp["x"])
    np.testing.assert_allclose(vjp.vjp["x"], one, rtol=1e-12)

    vs = {"x": np.eye(2)[[0, 1, 0, 1]], "y": np.ones((k, 2))}
    hvp = client.hvp(SCALAR, {"x": xs, "y": y}, vectors_batch=vs, batch="x")
    assert hvp.hvp["y"].shape == (B, k, 2)
    ones = [client.hvp(SCALAR, {"x": x, "y": y}, vectors_batch=vs) for x in xs]
    one = stacked(ones, lambda r: r.hvp["y"])
    np.testing.assert_allclose(hvp.hvp["y"], one, rtol=1e-12)


# ------------------------------------------------ stored functions, async, jobs, errors


def test_per_sample_gradients_on_a_stored_function_match_torch_func(client: Client) -> None:
    """The README's worked example: per-example gradients of a loss, data stored once."""
    torch = pytest.importorskip("torch")
    from torch.func import grad, vmap

    rng = np.random.default_rng(256)
    w, b = rng.normal(size=3), np.asarray(0.3)
    xs, ts = rng.normal(size=(32, 3)), rng.normal(size=32)
    loss = "r = dot(w, x) + b - t\nreturn r * r"
    stored = client.store(loss)
    res = client.grad(stored, {"w": w, "b": b, "x": xs, "t": ts}, wrt=["w", "b"], batch=["x", "t"])

    def torch_loss(w: Any, b: Any, x: Any, t: Any) -> Any:
        r = w @ x + b - t
        return r * r

    tw, tb = torch.as_tensor(w), torch.as_tensor(b)
    gw, gb = vmap(grad(torch_loss, argnums=(0, 1)), in_dims=(None, None, 0, 0))(
        tw, tb, torch.as_tensor(xs), torch.as_tensor(ts)
    )
    np.testing.assert_allclose(res.gradients["w"], gw.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.gradients["b"], gb.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.value, (xs @ w + b - ts) ** 2, rtol=1e-12)


def test_per_sample_gradients_over_stored_data(client: Client) -> None:
    """The data stored once, batched by name: only the parameters travel with each call."""
    rng = np.random.default_rng(7)
    w, xs, ts = rng.normal(size=3), rng.normal(size=(50, 3)), rng.normal(size=50)
    loss = "r = dot(w, x) - t\nreturn r * r"
    stored = client.store(loss, {"x": xs, "t": ts})
    res = client.grad(stored, {"w": w}, batch=["x", "t"])
    sent = client.grad(loss, {"w": w, "x": xs, "t": ts}, batch=["x", "t"], wrt="w")
    np.testing.assert_allclose(res.gradients["w"], sent.gradients["w"], rtol=1e-12)
    np.testing.assert_allclose(res.gradients["w"], 2 * (xs @ w - ts)[:, None] * xs, rtol=1e-12)


def test_stored_constants_are_shared_by_every_point(client: Client) -> None:
    A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    stored = client.store("r = matmul(A, w) - 1\nreturn 0.5 * sum(r * r)", {"A": A})
    ws = np.array([[0.5, -0.5], [1.0, 0.0]])
    res = client.grad(stored, {"w": ws}, batch="w")
    np.testing.assert_allclose(res.gradients["w"], (ws @ A.T - 1) @ A, rtol=1e-12)


def test_batch_in_the_async_client(url: str, points: tuple[np.ndarray, np.ndarray]) -> None:
    xs, y = points

    async def run() -> Result:
        async with AsyncClient(url, retries=0) as ad:
            return await ad.grad(SCALAR, {"x": xs, "y": y}, batch="x")

    res = asyncio.run(run())
    with Client(url, retries=0) as c:
        one = stacked([c.grad(SCALAR, {"x": x, "y": y}) for x in xs], lambda r: r.gradients["x"])
    np.testing.assert_allclose(res.gradients["x"], one, rtol=1e-12)


def test_batch_as_a_job(client: Client, points: tuple[np.ndarray, np.ndarray]) -> None:
    xs, y = points
    sync = client.jacobian(FN, {"x": xs, "y": y}, batch="x")
    job = client.jacobian(FN, {"x": xs, "y": y}, batch="x", background=True)
    submitted = client.submit("hessian", SCALAR, {"x": xs, "y": y}, batch="x").result(timeout=60)
    np.testing.assert_allclose(job.jacobian["x"], sync.jacobian["x"], rtol=1e-12)
    assert submitted.hessian["x"]["x"].shape == (B, 2, 2)


def test_sizes_that_disagree_are_a_clear_problem(client: Client) -> None:
    with pytest.raises(AutodiffHTTPError) as err:
        client.grad("sum(x * y)", {"x": np.ones((3, 2)), "y": np.ones((4, 2))}, batch=["x", "y"])
    assert err.value.status == 422 and "batch" in err.value.detail


# --------------------------------------------------------------------------- CLI


def test_cli_batch_remote_and_local(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["grad", "sum(w * x ** 2)", "-i", "w=[1, 2]", "-i", "x=[[1, 0], [0, 1], [2, 2]]"]
    answers = []
    for where in ([], ["--url", url]):
        assert cli.main([*args, "--batch", "x", "--json", *where]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    local, remote = answers
    assert remote["value"] == local["value"] == [1.0, 2.0, 12.0]
    assert remote["gradients"]["w"] == local["gradients"]["w"] == [[1, 0], [0, 1], [4, 4]]
    assert remote["gradients"]["x"] == [[2, 0], [0, 4], [4, 8]]
    # several names, by commas or repeated
    two = ["grad", "sum(w * x)", "-i", "w=[[1, 2], [3, 4]]", "-i", "x=[[1, 0], [0, 1]]"]
    for batch in (["--batch", "w,x"], ["--batch", "w", "--batch", "x"]):
        assert cli.main([*two, *batch, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["value"] == [1.0, 4.0]


def test_cli_batch_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["grad", "sum(x)", "-i", "x=[[1], [2]]"]
    assert cli.main([*base, "--batch", "x,,"]) == 2
    assert "--batch takes input names" in capsys.readouterr().err
    assert cli.main([*base, "--batch", "x,x"]) == 2
    assert "names an input twice" in capsys.readouterr().err


def test_readme_batch_example_runs(client: Client) -> None:
    """The README's (and client/README.md's) per-sample example, as written."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for readme in (root / "README.md", root / "client" / "README.md"):
        section = readme.read_text().split("**Batches of points.**", 1)[1]
        code = section.split("```python\n", 1)[1].split("```", 1)[0]
        rng = np.random.default_rng(3)
        namespace: dict[str, Any] = {
            "ad": client,
            "w": rng.normal(size=3),
            "b": 0.3,
            "X": rng.normal(size=(256, 3)),
            "T": rng.normal(size=256),
        }
        exec(compile(code, str(readme), "exec"), namespace)
        res = namespace["res"]
        assert res.gradients["w"].shape == (256, 3) and res.gradients["b"].shape == (256,)
        r = namespace["X"] @ namespace["w"] + 0.3 - namespace["T"]
        np.testing.assert_allclose(res.gradients["w"], 2 * r[:, None] * namespace["X"], rtol=1e-12)
