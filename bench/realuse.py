"""Real use, measured (issue 16): optimisations and per-sample gradients through the service,
the old way and the new way, beside the same work in process, in one run.

    .venv/bin/python -m bench.realuse            # about a minute and a half on 2 cores
    .venv/bin/python -m bench.realuse --quick    # tiny sizes (the smoke test's run)

Tasks (seeded):
- Rosenbrock, n = 100, ``scipy.optimize.minimize``: BFGS with ``jac``, trust-exact with
  ``hess``, Newton-CG with ``hessp``;
- logistic regression on 2,000 x 20 synthetic data, L-BFGS-B with ``jac``;
- per-sample gradients of a small tanh MLP's squared loss (every parameter), 256 samples.

Ways:
- ``numpy``: in process, SciPy's ``rosen``/``rosen_der``/``rosen_hess``/``rosen_hess_prod`` and
  hand-written NumPy gradients (the per-sample ones vectorised by hand);
- ``torch.func``: in process, ``grad``, ``hessian``, ``jvp`` of ``grad`` (the HVP), ``vmap``;
- ``old``: ``autodiff_client`` (its SciPy adapter for the optimisations), the source and the data
  in every request, one point per request (per-sample gradients: one request per sample);
- ``new``: the function and its data stored once (``POST /functions``, counted), then only the
  id and the point; per-sample gradients in one request with ``batch: ["x", "y"]`` naming the
  stored samples (only the parameters travel). Newton-CG
  has a second new way, ``new, /hessian``: one ``/hessian`` per iterate (value, gradient and the
  Hessian: n directions in one pass) and the Hessian-vector products done locally from it.

Every HTTP request goes through one counting transport under the client: requests, bytes sent
and received on the wire (request line, headers and body; the body as it travelled, compressed
or not). Every optimisation must reach the in-process NumPy optimum (checked, with the
differences printed), and every per-sample gradient must match torch.func's: a disagreement
exits 1. The service is ``make serve``'s (two uvicorn processes, ``bench/server.py``) with its
embedded store in a temporary directory. A full run writes ``bench/out/realuse.json``, the
"Real use" section of ``bench/RESULTS.md`` and the README's real-use table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import scipy.optimize as so

BENCH_DIR = Path(__file__).resolve().parent
# This tree's client (the shared venv's editable install may point at another checkout).
sys.path.insert(0, str(BENCH_DIR.parent / "client" / "src"))

from autodiff_client import Client  # noqa: E402
from autodiff_client.scipy import objective  # noqa: E402
from bench.report import REALUSE_END, REALUSE_START, table  # noqa: E402

Vector = npt.NDArray[np.float64]

ROSEN = "sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)"
LOGREG = "z = matmul(X, w)\nreturn mean(softplus(z) - y * z)"
MLP = "h = tanh(matmul(W1, x) + b1)\nr = dot(w2, h) + b2 - y\nreturn r * r"
MLP_PARAMS = ("W1", "b1", "w2", "b2")
TRIVIAL = "x"
ROSEN_METHODS = ("BFGS", "trust-exact", "Newton-CG")
# The optimum each way reaches, against the in-process NumPy one: max |x - x_numpy| (relative
# to max(1, max |x_numpy|)) and |f - f_numpy| (relative to max(1, |f_numpy|)).
X_TOL, F_TOL = 1e-5, 1e-9
GRAD_TOL = 1e-10  # per-sample gradients against torch.func, relative to the largest entry


@dataclass(frozen=True)
class Sizes:
    """The problem sizes of a run (the full run's, or ``--quick``'s tiny ones)."""

    rosen_n: int = 100
    samples: int = 2000
    features: int = 20
    mlp_samples: int = 256
    mlp_in: int = 10
    mlp_hidden: int = 32
    repeats: int = 15  # timed repeats of the single calls (floor, one sample, the batch)
    rounds: int = 3  # each task is done this many times each way: the median time is reported


QUICK = Sizes(
    rosen_n=8, samples=200, features=5, mlp_samples=8, mlp_in=3, mlp_hidden=4, repeats=3, rounds=1
)


# ---------------------------------------------------------------- counting the wire


@dataclass
class Traffic:
    """HTTP requests made and bytes on the wire, both ways."""

    calls: int = 0
    sent: int = 0
    received: int = 0

    def minus(self, before: Traffic) -> Traffic:
        return Traffic(
            self.calls - before.calls, self.sent - before.sent, self.received - before.received
        )


def _header_bytes(first_line: str, headers: httpx.Headers) -> int:
    # HTTP/1.1 framing: the first line, "name: value\r\n" per header, then a blank line
    return len(first_line) + 2 + sum(len(k) + len(v) + 4 for k, v in headers.raw) + 2


class CountingTransport(httpx.BaseTransport):
    """A transport that counts what passes through ``inner`` (every request, retries too)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.traffic = Traffic()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        target = request.url.raw_path.decode("ascii")
        self.traffic.sent += _header_bytes(f"{request.method} {target} HTTP/1.1", request.headers)
        self.traffic.sent += len(body)
        response = self.inner.handle_request(request)
        response.read()  # the whole answer, so its size on the wire is known
        status = f"HTTP/1.1 {response.status_code} {response.reason_phrase}"
        self.traffic.received += _header_bytes(status, response.headers)
        # the body as it travelled (compressed, if it was); a transport that hands over a
        # body it already holds (a mock) downloads nothing
        self.traffic.received += response.num_bytes_downloaded or len(response.content)
        self.traffic.calls += 1
        return response

    def close(self) -> None:
        self.inner.close()


# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One task done one way."""

    task: str
    way: str
    seconds: float
    calls: int = 0
    sent: int = 0
    received: int = 0
    iterations: int | None = None
    x_error: float | None = None
    """max |x - x_numpy| relative to max(1, max |x_numpy|) (the optimum, or the gradients)."""
    f_error: float | None = None
    store_sent: int = 0
    """Of ``sent``, the bytes of the one ``POST /functions`` (the new way)."""
    error: str | None = None
    """Why this way failed (the service refused, or the answer disagreed)."""
    ok: bool = True


@dataclass
class Run:
    """Everything one run measured."""

    sizes: Sizes
    rows: list[Row] = field(default_factory=list)
    single_calls: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def row(self, task: str, way: str) -> Row | None:
        return next((r for r in self.rows if r.task == task and r.way == way), None)


@dataclass
class Measured:
    """Wall time and traffic of a block (``with measured(...) as m``)."""

    seconds: float = 0.0
    traffic: Traffic = field(default_factory=Traffic)


@contextmanager
def measured(counter: CountingTransport | None) -> Iterator[Measured]:
    m = Measured()
    before = Traffic(**asdict(counter.traffic)) if counter else Traffic()
    start = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - start
        m.traffic = counter.traffic.minus(before) if counter else Traffic()


# ---------------------------------------------------------------- the problems, in process


def rosen_start(n: int) -> Vector:
    """A seeded start in the global minimum's basin (from SciPy's tutorial point, spread out)."""
    rng = np.random.default_rng(16)
    return np.asarray(1.0 + 0.3 * rng.standard_normal(n), dtype=np.float64)


def logreg_data(samples: int, features: int) -> tuple[Vector, Vector]:
    """Seeded synthetic data: labels drawn from a logistic model (not separable)."""
    rng = np.random.default_rng(20)
    X = rng.standard_normal((samples, features))
    w_true = rng.standard_normal(features)
    p = 1.0 / (1.0 + np.exp(-(X @ w_true)))
    y = (rng.uniform(size=samples) < p).astype(np.float64)
    return X, y


def logreg_loss_grad(w: Vector, X: Vector, y: Vector) -> tuple[float, Vector]:
    """The mean logistic loss and its gradient, by hand."""
    z = X @ w
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    return loss, X.T @ (_sigmoid(z) - y) / len(y)


def _sigmoid(z: Vector) -> Vector:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def mlp_data(s: Sizes) -> tuple[dict[str, Vector], Vector, Vector]:
    """Seeded parameters and samples of the small MLP."""
    rng = np.random.default_rng(256)
    params = {
        "W1": rng.standard_normal((s.mlp_hidden, s.mlp_in)) / math.sqrt(s.mlp_in),
        "b1": 0.1 * rng.standard_normal(s.mlp_hidden),
        "w2": rng.standard_normal(s.mlp_hidden) / math.sqrt(s.mlp_hidden),
        "b2": np.asarray(0.1),
    }
    return (
        params,
        rng.standard_normal((s.mlp_samples, s.mlp_in)),
        rng.standard_normal(s.mlp_samples),
    )


def mlp_per_sample_numpy(p: dict[str, Vector], X: Vector, y: Vector) -> dict[str, Vector]:
    """Per-sample gradients of (w2 . tanh(W1 x + b1) + b2 - y)^2, backpropagated by hand."""
    H = np.tanh(X @ p["W1"].T + p["b1"])  # (B, hidden)
    d_out = 2.0 * (H @ p["w2"] + p["b2"] - y)  # (B,)
    d_pre = d_out[:, None] * p["w2"][None, :] * (1.0 - H * H)  # (B, hidden)
    return {
        "W1": d_pre[:, :, None] * X[:, None, :],
        "b1": d_pre,
        "w2": d_out[:, None] * H,
        "b2": d_out,
    }


# Tight enough that every way's optimum is the same to about 1e-8 (SciPy's defaults stop at 1e-5).
ROSEN_OPTIONS = {
    "BFGS": {"gtol": 1e-7},
    "trust-exact": {"gtol": 1e-10},
    "Newton-CG": {"xtol": 1e-10},
}


def _minimize(method: str, x0: Vector, fun: Callable[..., Any], **derivs: Any) -> Any:
    return so.minimize(fun, x0, method=method, options=ROSEN_OPTIONS[method], **derivs)


def _rosen_derivs_numpy(method: str) -> dict[str, Any]:
    if method == "BFGS":
        return {"jac": so.rosen_der}
    if method == "trust-exact":
        return {"jac": so.rosen_der, "hess": so.rosen_hess}
    return {"jac": so.rosen_der, "hessp": so.rosen_hess_prod}


def _lbfgs(fun: Callable[..., Any], w0: Vector, jac: Any) -> Any:
    return so.minimize(fun, w0, jac=jac, method="L-BFGS-B", options={"gtol": 1e-9, "ftol": 1e-15})


# ---------------------------------------------------------------- torch.func


class Torch:
    """The same problems with torch.func (float64, one thread as the service's workers)."""

    def __init__(self) -> None:
        import torch
        import torch.func as tf

        torch.set_num_threads(1)
        self.torch, self.tf = torch, tf

    def t(self, a: Any) -> Any:
        return self.torch.as_tensor(np.asarray(a, dtype=np.float64))

    def rosen(self, x: Any) -> Any:
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    def rosen_derivs(self, method: str) -> dict[str, Any]:
        tf = self.tf
        grad, hess = tf.grad(self.rosen), tf.hessian(self.rosen)

        def jac(x: Vector) -> Vector:
            return grad(self.t(x)).numpy()

        def hessian(x: Vector) -> Vector:
            return hess(self.t(x)).numpy()

        def hessp(x: Vector, p: Vector) -> Vector:
            return tf.jvp(grad, (self.t(x),), (self.t(p),))[1].numpy()

        if method == "BFGS":
            return {"jac": jac}
        if method == "trust-exact":
            return {"jac": jac, "hess": hessian}
        return {"jac": jac, "hessp": hessp}

    def rosen_fun(self, x: Vector) -> float:
        return float(self.rosen(self.t(x)))

    def logreg(self, X: Vector, y: Vector) -> Callable[[Vector], tuple[float, Vector]]:
        torch, Xt, yt = self.torch, self.t(X), self.t(y)

        def loss(w: Any) -> Any:
            z = Xt @ w
            return (torch.nn.functional.softplus(z) - yt * z).mean()

        value_and_grad = self.tf.grad_and_value(loss)

        def fun(w: Vector) -> tuple[float, Vector]:
            g, v = value_and_grad(self.t(w))
            return float(v), g.numpy()

        return fun

    def mlp_per_sample(self, p: dict[str, Vector], X: Vector, y: Vector) -> dict[str, Vector]:
        torch, tf = self.torch, self.tf

        def loss(W1: Any, b1: Any, w2: Any, b2: Any, x: Any, t: Any) -> Any:
            h = torch.tanh(W1 @ x + b1)
            r = w2 @ h + b2 - t
            return r * r

        per_sample = tf.vmap(tf.grad(loss, argnums=(0, 1, 2, 3)), in_dims=(None,) * 4 + (0, 0))
        grads = per_sample(*(self.t(p[k]) for k in MLP_PARAMS), self.t(X), self.t(y))
        return {k: g.numpy() for k, g in zip(MLP_PARAMS, grads, strict=True)}


# ---------------------------------------------------------------- checking


def _rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b), initial=0.0) / max(1.0, float(np.max(np.abs(b), initial=0))))


def check_optimum(row: Row, res: Any, ref: Any) -> None:
    """Mark ``row`` with its distance to the NumPy optimum ``ref``; not ok past the tolerance."""
    row.iterations = int(getattr(res, "nit", 0) or 0)
    row.x_error = _rel(res.x, ref.x)
    row.f_error = abs(float(res.fun) - float(ref.fun)) / max(1.0, abs(float(ref.fun)))
    if not (row.x_error <= X_TOL and row.f_error <= F_TOL):
        row.ok = False
        row.error = (
            f"another optimum: max|x - x_numpy| = {row.x_error:.2e} (tolerance {X_TOL:.0e}), "
            f"|f - f_numpy| = {row.f_error:.2e} (tolerance {F_TOL:.0e})"
        )


def check_gradients(row: Row, got: dict[str, Any], ref: dict[str, Vector]) -> None:
    """Mark ``row`` with its largest relative difference from the reference gradients."""
    row.x_error = max(_rel(np.asarray(got[k]).reshape(ref[k].shape), ref[k]) for k in ref)
    if row.x_error > GRAD_TOL:
        row.ok = False
        row.error = f"per-sample gradients differ: {row.x_error:.2e} (tolerance {GRAD_TOL:.0e})"


# ---------------------------------------------------------------- the tasks


class Bench:
    """One run: the service, a counting client, and the rows as they come."""

    def __init__(self, url: str, sizes: Sizes) -> None:
        self.counter = CountingTransport(httpx.HTTPTransport())
        self.client = Client(url, retries=0, transport=self.counter)
        self.sizes = sizes
        self.run = Run(sizes)
        self.torch = Torch()

    def add(self, row: Row) -> Row:
        self.run.rows.append(row)
        mark = "" if row.ok else f"   FAILED: {row.error}"
        print(
            f"  {row.task:<28} {row.way:<16} {row.seconds:8.3f} s {row.calls:6d} calls "
            f"{row.sent:>12,} B sent{mark}",
            flush=True,
        )
        return row

    def store(self, row: Row, function: str, constants: dict[str, Any] | None = None) -> Any:
        """``Client.store``, its bytes noted on ``row``."""
        before = self.counter.traffic.sent
        stored = self.client.store(function, constants)
        row.store_sent = self.counter.traffic.sent - before
        return stored

    def http_row(self, task: str, way: str, work: Callable[[Row], Any]) -> Row:
        """Run ``work`` (HTTP) ``rounds`` times, counting: the median time, the last round's
        calls and bytes (the same every round); a service error becomes a failed row."""
        row, times = Row(task, way, 0.0), []
        for _ in range(self.sizes.rounds):
            with measured(self.counter) as m:
                try:
                    work(row)
                except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
                    row.ok, row.error = False, f"{type(exc).__name__}: {exc}"[:300]
                    traceback.print_exc(limit=2)
            times.append(m.seconds)
            if not row.ok:
                break
        row.seconds, row.calls = statistics.median(times), m.traffic.calls
        row.sent, row.received = m.traffic.sent, m.traffic.received
        return self.add(row)

    def local(self, task: str, way: str, work: Callable[[], Any]) -> tuple[Row, Any]:
        """Run ``work`` in process ``rounds`` times: its row (the median time) and answer."""
        times = []
        for _ in range(self.sizes.rounds):
            with measured(None) as m:
                answer = work()
            times.append(m.seconds)
        return Row(task, way, statistics.median(times)), answer

    # ------------------------------------------------------------ Rosenbrock

    def rosenbrock(self) -> None:
        for method in ROSEN_METHODS:
            self.rosenbrock_with(method, rosen_start(self.sizes.rosen_n))

    def rosenbrock_with(self, method: str, x0: Vector) -> None:
        task = f"Rosenbrock n={self.sizes.rosen_n}, {method}"
        row, ref = self.local(
            task, "numpy", lambda: _minimize(method, x0, so.rosen, **_rosen_derivs_numpy(method))
        )
        check_optimum(self.add(row), ref, ref)
        derivs = self.torch.rosen_derivs(method)
        _warm(derivs, x0)
        row, got = self.local(
            task, "torch.func", lambda: _minimize(method, x0, self.torch.rosen_fun, **derivs)
        )
        check_optimum(self.add(row), got, ref)

        def old(row: Row) -> None:
            obj = objective(self.client, ROSEN, wrt="x")
            check_optimum(row, _minimize(method, x0, obj.fun, **_adapter(obj, method)), ref)

        def new(row: Row, whole: bool = False) -> None:
            stored = self.store(row, ROSEN)
            obj = objective(self.client, stored, wrt="x", hessian=whole)
            check_optimum(row, _minimize(method, x0, obj.fun, **_adapter(obj, method)), ref)

        self.http_row(task, "old", old)
        self.http_row(task, "new", new)
        if method == "Newton-CG":  # n directions in one pass: the Hessian, once per iterate
            self.http_row(task, "new, /hessian", lambda row: new(row, whole=True))

    # ------------------------------------------------------------ logistic regression

    def logistic(self) -> None:
        s = self.sizes
        X, y = logreg_data(s.samples, s.features)
        w0 = np.zeros(s.features)
        task = f"logistic regression {s.samples} x {s.features}, L-BFGS-B"
        row, ref = self.local(
            task, "numpy", lambda: _lbfgs(lambda w: logreg_loss_grad(w, X, y), w0, True)
        )
        check_optimum(self.add(row), ref, ref)
        torch_fun = self.torch.logreg(X, y)
        torch_fun(w0)  # warm
        row, got = self.local(task, "torch.func", lambda: _lbfgs(torch_fun, w0, True))
        check_optimum(self.add(row), got, ref)

        def old(row: Row) -> None:
            obj = objective(self.client, LOGREG, wrt="w", X=X, y=y)
            check_optimum(row, _lbfgs(obj.fun, w0, obj.jac), ref)

        def new(row: Row) -> None:
            stored = self.store(row, LOGREG, {"X": X, "y": y})
            obj = objective(self.client, stored, wrt="w")
            check_optimum(row, _lbfgs(obj.fun, w0, obj.jac), ref)

        self.http_row(task, "old", old)
        self.http_row(task, "new", new)

    # ------------------------------------------------------------ per-sample gradients

    def per_sample(self) -> None:
        s = self.sizes
        params, X, y = mlp_data(s)
        task = f"per-sample grads, MLP {s.mlp_in}-{s.mlp_hidden}-1, {s.mlp_samples} samples"
        self.torch.mlp_per_sample(params, X, y)  # warm
        torch_row, ref = self.local(
            task, "torch.func", lambda: self.torch.mlp_per_sample(params, X, y)
        )
        row, mine = self.local(task, "numpy", lambda: mlp_per_sample_numpy(params, X, y))
        check_gradients(self.add(row), mine, ref)
        self.add(torch_row)
        wrt = list(MLP_PARAMS)

        def old(row: Row) -> None:
            got: dict[str, list[Any]] = {k: [] for k in MLP_PARAMS}
            for xi, yi in zip(X, y, strict=True):
                res = self.client.grad(MLP, {**params, "x": xi, "y": yi}, wrt=wrt)
                for k in MLP_PARAMS:
                    got[k].append(res.gradients[k])
            check_gradients(row, {k: np.stack(v) for k, v in got.items()}, ref)

        def new(row: Row) -> None:  # the samples stored with the function, batched by name
            stored = self.store(row, MLP, {"x": X, "y": y})
            res = self.client.grad(stored, params, wrt=wrt, batch=["x", "y"])
            check_gradients(row, res.gradients, ref)

        self.http_row(task, "old", old)
        self.http_row(task, "new", new)
        self.single_calls(params, X, y)

    def single_calls(self, params: dict[str, Vector], X: Vector, y: Vector) -> None:
        """Medians of the HTTP floor, one single-sample call, and the whole batch in one call:
        wall time, the service's own ``timing_ms`` (median of each phase) and bytes received."""
        wrt, n = list(MLP_PARAMS), self.sizes.repeats
        stored, with_data = self.client.store(MLP), self.client.store(MLP, {"x": X, "y": y})

        def timed(call: Callable[[], Any]) -> dict[str, Any]:
            walls, timings, before = [], [], self.counter.traffic.received
            for _ in range(n):
                start = time.perf_counter()
                res = call()
                walls.append(time.perf_counter() - start)
                timings.append(res.timing_ms or {})
            phases = {k: statistics.median(t.get(k, 0.0) for t in timings) for k in timings[0]}
            return {
                "wall_s": statistics.median(walls),
                "compute_s": phases.get("total", 0.0) / 1000,
                "timing_ms": phases,
                "received": (self.counter.traffic.received - before) // n,
            }

        out: dict[str, Any] = {"repeats": n}
        out["floor"] = timed(lambda: self.client.grad(TRIVIAL, {"x": 1.0}))
        out["single"] = timed(
            lambda: self.client.grad(stored, {**params, "x": X[0], "y": y[0]}, wrt=wrt)
        )
        try:
            out["batch"] = timed(
                lambda: self.client.grad(with_data, params, wrt=wrt, batch=["x", "y"])
            )
            # the same batch with a small answer (one gradient, 256 numbers): what is left of
            # its time without the 1 MiB of per-sample gradients to move and decode
            out["batch_small_answer"] = timed(
                lambda: self.client.grad(with_data, params, wrt=["b2"], batch=["x", "y"])
            )
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            out["batch_error"] = f"{type(exc).__name__}: {exc}"[:300]
        self.run.single_calls = out


def _warm(derivs: dict[str, Any], x0: Vector) -> None:
    """Call each derivative once (torch.func's first calls set things up)."""
    for name, f in derivs.items():
        f(x0, x0) if name == "hessp" else f(x0)


def _adapter(obj: Any, method: str) -> dict[str, Any]:
    """The SciPy adapter's derivatives a method uses."""
    if method == "BFGS":
        return {"jac": obj.jac}
    if method == "trust-exact":
        return {"jac": obj.jac, "hess": obj.hess}
    return {"jac": obj.jac, "hessp": obj.hessp}


# ---------------------------------------------------------------- targets and report


def targets(run: Run) -> list[dict[str, Any]]:
    """Issue 16's targets, as ratios within this run."""
    out: list[dict[str, Any]] = []
    logreg = [r for r in run.rows if r.task.startswith("logistic")]
    old = next((r for r in logreg if r.way == "old"), None)
    new = next((r for r in logreg if r.way == "new"), None)
    if old and new and new.ok and new.sent:
        ratio = old.sent / new.sent
        per_call = (old.sent / old.calls) / ((new.sent - new.store_sent) / max(new.calls - 1, 1))
        out.append(
            {
                "target": "logistic regression: the new way sends >= 10x fewer bytes",
                "measured": f"{ratio:,.0f}x fewer in all ({old.sent:,} B against {new.sent:,} B, "
                f"the store's {new.store_sent:,} B included); {per_call:,.0f}x fewer per "
                "gradient call",
                "met": ratio >= 10,
            }
        )
    sc = run.single_calls
    per_sample_new = next(
        (r for r in run.rows if r.task.startswith("per-sample") and r.way == "new"), None
    )
    if "batch" in sc and per_sample_new is not None:
        single_compute, floor, batch = sc["single"]["compute_s"], sc["floor"]["wall_s"], sc["batch"]
        budget = 2 * (single_compute + floor)
        out.append(
            {
                "target": f"per-sample gradients, {run.sizes.mlp_samples} samples: one call, "
                "<= 2 x (one single-sample call's compute + the HTTP floor)",
                "measured": f"{per_sample_new.calls - 1} compute call (+1 store); "
                f"{batch['wall_s'] * 1e3:.1f} ms against 2 x ({single_compute * 1e3:.2f} + "
                f"{floor * 1e3:.2f}) = {budget * 1e3:.1f} ms",
                "met": per_sample_new.calls - 1 == 1 and batch["wall_s"] <= budget,
            }
        )
    else:
        out.append(
            {
                "target": "per-sample gradients in one call, <= 2 x (single call + floor)",
                "measured": f"not run: {sc.get('batch_error', 'no batch')}",
                "met": False,
            }
        )
    opt = [r for r in run.rows if r.x_error is not None]
    out.append(
        {
            "target": "every optimisation reaches the in-process optimum "
            "(and every per-sample gradient matches torch.func)",
            "measured": f"largest relative difference {max(r.x_error or 0 for r in opt):.1e}"
            + ("" if all(r.ok for r in run.rows) else "; FAILED: " + _failures(run)),
            "met": all(r.ok for r in run.rows),
        }
    )
    return out


def _failures(run: Run) -> str:
    return "; ".join(f"{r.task} ({r.way}): {r.error}" for r in run.rows if not r.ok)


def _kib(n: int) -> str:
    return "-" if n == 0 else f"{n / 1024:,.1f} KiB" if n < 1024**2 else f"{n / 1024**2:,.2f} MiB"


def _secs(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def table_rows(run: Run) -> list[list[str]]:
    """One line per task and way: time, calls, bytes, against in process and the old way."""
    lines = []
    for r in run.rows:
        base = run.row(r.task, "numpy")
        old = run.row(r.task, "old")
        vs_numpy = f"{r.seconds / base.seconds:,.0f}x" if base and base.seconds else "-"
        vs_old = "-"
        if r.way.startswith("new") and old and r.ok:
            vs_old = (
                f"{old.seconds / r.seconds:.1f}x time, {old.calls / max(r.calls, 1):.1f}x calls, "
                f"{old.sent / max(r.sent, 1):,.0f}x bytes"
            )
        err = "-" if r.x_error is None else f"{r.x_error:.0e}"
        if not r.ok:
            err = f"FAILED: {r.error}"
        lines.append(
            [
                r.task,
                r.way,
                _secs(r.seconds),
                str(r.calls) if r.calls else "-",
                _kib(r.sent),
                _kib(r.received),
                vs_numpy if r.way != "numpy" else "1x",
                vs_old,
                err,
            ]
        )
    return lines


HEADER = [
    "task",
    "way",
    "wall time",
    "HTTP calls",
    "sent",
    "received",
    "time / NumPy's",
    "new against old",
    "vs NumPy optimum",
]


def markdown(run: Run) -> str:
    """The "Real use" section: the table, the single-call medians and the targets."""
    sc = run.single_calls
    lines = [
        "## Real use (issue 16)",
        "",
        f"`python -m bench.realuse`, run {run.meta.get('date', '?')} at "
        f"{run.meta.get('commit', '?')} ({run.meta.get('cores', '?')} cores, shared: load "
        f"average {run.meta.get('load_average_at_end', '?')} at the end; one run, all ways in "
        "turn, each task 3 times each way, the median time). "
        "`old`: source and data in every request, one point per request; `new`: function and "
        "data stored once (the store request counted), per-sample gradients in one `batch` "
        "request over the stored samples. Bytes are on the wire (request line, headers, "
        "body). The last column is the "
        "optimum's (or the gradients') largest difference from in-process NumPy's "
        "(torch.func's for the per-sample gradients), relative to max(1, its largest entry).",
        "",
        table(HEADER, table_rows(run)),
    ]
    if sc:
        lines += [
            "",
            f"Medians of {sc['repeats']} calls (the service's phases from its `timing_ms`):",
            "",
        ]
        lines += [f"- {line}" for line in _single_call_lines(run)]
    lines += [
        "",
        table(
            ["target", "measured", "met"],
            [[t["target"], t["measured"], "yes" if t["met"] else "NO"] for t in run.targets],
        ),
    ]
    return "\n".join(lines)


def _phases(call: dict[str, Any]) -> str:
    ms = call["timing_ms"]
    known = ("queue", "decode", "forward", "backward", "encode")
    shown = ", ".join(f"{k} {ms[k]:.2f}" for k in known if k in ms)
    return f"service {ms.get('total', 0):.2f} ms ({shown})"


def _single_call_lines(run: Run) -> list[str]:
    sc = run.single_calls
    floor, single = sc["floor"], sc["single"]
    lines = [
        f"HTTP floor, a trivial `/grad` (`x` at 1.0): {_secs(floor['wall_s'])} ({_phases(floor)})",
        f"one single-sample MLP call: {_secs(single['wall_s'])} ({_phases(single)}; "
        f"{_kib(single['received'])} received)",
    ]
    if "batch" in sc:
        batch = sc["batch"]
        lines.append(
            f"all {run.sizes.mlp_samples} samples in one `batch` call: {_secs(batch['wall_s'])} "
            f"({_phases(batch)}; {_kib(batch['received'])} received: the per-sample gradients, "
            "b64)"
        )
        small = sc["batch_small_answer"]
        lines.append(
            f"the same batch asking only for `b2`'s per-sample gradient (a small answer): "
            f"{_secs(small['wall_s'])} ({_phases(small)}; {_kib(small['received'])} received)"
        )
    return lines


def readme_table(run: Run) -> str:
    """The README's short table: per task, old against new and in process."""
    rows = []
    tasks = list(dict.fromkeys(r.task for r in run.rows))
    for task in tasks:
        numpy_row, old, new = run.row(task, "numpy"), run.row(task, "old"), run.row(task, "new")
        if not (numpy_row and old and new):
            continue
        best = new
        alt = run.row(task, "new, /hessian")
        if alt and alt.ok and alt.seconds < new.seconds:
            best = alt
        rows.append(
            [
                task,
                f"{_secs(old.seconds)}, {old.calls} calls, {_kib(old.sent)}",
                f"{_secs(best.seconds)}, {best.calls} calls, {_kib(best.sent)}"
                + (" (`/hessian`)" if best is alt else "")
                + ("" if best.ok else " FAILED"),
                _secs(numpy_row.seconds),
            ]
        )
    header = ["task", "old way (source + data each call)", "new way (stored, batch)"]
    targets = "\n".join(
        f"- {t['target']}: {t['measured']} ({'met' if t['met'] else 'NOT met'})"
        for t in run.targets
    )
    meta = run.meta
    return (
        f"`python -m bench.realuse`, {meta.get('date', '?')}, {meta.get('cores', '?')} shared "
        f"cores (load average {meta.get('load_average_at_end', '?')} at the end; the old and "
        "new Rosenbrock BFGS and trust-exact make the same requests, so their times differ by "
        "the machine's noise):\n\n"
        + table([*header, "in process (NumPy)"], rows)
        + f"\n\nIssue 16's targets:\n\n{targets}"
    )


README_START, README_END = "<!-- realuse:start -->", "<!-- realuse:end -->"


def replace_block(text: str, start: str, end: str, block: str) -> str:
    """``text`` with what lies between the markers replaced (appended when they are absent)."""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        return f"{head}{start}\n{block}\n{end}{tail}"
    return f"{text.rstrip()}\n\n{start}\n{block}\n{end}\n"


def write_reports(run: Run, bench_dir: Path, readme: Path) -> None:
    """RESULTS.md's "Real use" section and the README's table (the rest of each file kept)."""
    results = bench_dir / "RESULTS.md"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    results.write_text(replace_block(text, REALUSE_START, REALUSE_END, markdown(run)))
    if readme.exists():
        text = readme.read_text()
        if README_START in text:
            readme.write_text(replace_block(text, README_START, README_END, readme_table(run)))


# ---------------------------------------------------------------- main


def _meta(sizes: Sizes, quick: bool) -> dict[str, Any]:
    from bench.machine import git_commit

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "quick": quick,
        "sizes": asdict(sizes),
    }


def load_run(path: Path) -> Run:
    """A run as ``main`` saved it (``realuse.json``)."""
    saved = json.loads(path.read_text())
    return Run(
        Sizes(**saved["sizes"]),
        rows=[Row(**row) for row in saved["rows"]],
        single_calls=saved["single_calls"],
        targets=saved["targets"],
        meta=saved["meta"],
    )


def measure(url: str, sizes: Sizes) -> Run:
    """Every task, every way, against the service at ``url``."""
    bench = Bench(url, sizes)
    try:
        # warm the service's workers and this client once, outside every measurement
        bench.client.grad(ROSEN, {"x": rosen_start(sizes.rosen_n)})
        bench.rosenbrock()
        bench.logistic()
        bench.per_sample()
    finally:
        bench.client.close()
    bench.run.targets = targets(bench.run)
    return bench.run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test's)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="where the JSON goes")
    parser.add_argument(
        "--no-write", action="store_true", help="leave RESULTS.md and README.md alone"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md and README.md from the last run's realuse.json, measuring nothing",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        write_reports(
            load_run(args.out / "realuse.json"), BENCH_DIR, BENCH_DIR.parent / "README.md"
        )
        return 0
    sizes = QUICK if args.quick else Sizes()
    from bench.server import Server

    with tempfile.TemporaryDirectory(prefix="realuse-store-") as store:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
        env.update(AUTODIFF_STORE_DIR=store, AUTODIFF_LOG_LEVEL="warning")
        args.out.mkdir(parents=True, exist_ok=True)
        with Server(args.out / "realuse-server.log", env=env) as server:
            print(f"service at {server.url} ({'quick' if args.quick else 'full'} sizes)")
            run = measure(server.url, sizes)
    run.meta = _meta(sizes, args.quick)
    (args.out / "realuse.json").write_text(json.dumps(asdict(run), indent=1))
    text = markdown(run)
    print("\n" + text)
    if not args.quick and not args.no_write:
        write_reports(run, BENCH_DIR, BENCH_DIR.parent / "README.md")
    return 0 if all(t["met"] for t in run.targets if "optimum" in t["target"]) else 1


if __name__ == "__main__":
    sys.exit(main())
