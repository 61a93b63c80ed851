"""Trace state per context: computations in several threads share no tape and no recorder.

Each thread runs long, scalar-heavy traces (the GIL switches between them many times
mid-trace) and checks its answers against the same computation run alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.core import trace
from engine.graph import Recorder

STEPS = 300


def _chain(x: Any, scale: float) -> Any:
    """Many small ops on the elements of x: a long trace, each step a few nodes."""
    total = x[0] * 0.0
    for i in range(STEPS):
        total = total + anp.sin(x[i % 3] * scale) * x[(i + 1) % 3]
    return total


def _graph_nodes(scale: float) -> int:
    """Nodes recorded for this thread's function alone (a shared recorder would see more)."""
    with Recorder(max_nodes=100_000) as rec:
        x = np.array([0.1, 0.2, 0.3])
        rec.leaf("x", x, True)
        trace_ = ad.transforms.Trace(lambda x: _chain(x, scale), [x], (0,))
        return int(rec.metadata(trace_.outputs)["num_nodes"])


def _work(k: int) -> dict[str, Any]:
    scale = 1.0 + 0.1 * k
    x = np.array([0.3, -0.7, 1.1]) * scale
    return {
        "grad": ad.grad(lambda x: _chain(x, scale))(x),
        "jac": ad.jacobian(lambda x: anp.sin(x * scale) * x[0], mode="forward")(x),
        "hess": ad.hessian(lambda x: _chain(x, scale))(x),
        "nodes": _graph_nodes(scale),
    }


def _in_threads(fn: Callable[[int], Any], n: int) -> list[Any]:
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(k: int) -> None:
        try:
            start.wait()
            results[k] = fn(k)
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


@pytest.mark.usefixtures("fast_switch")
def test_computations_in_threads_get_their_own_answers() -> None:
    n = 4
    alone = [_work(k) for k in range(n)]
    together = _in_threads(_work, n)
    for a, b in zip(alone, together, strict=True):
        assert a["nodes"] == b["nodes"]
        for key in ("grad", "jac", "hess"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-13, atol=1e-14)


def test_a_thread_sees_neither_the_tapes_nor_the_recorder_of_another() -> None:
    seen: dict[str, Any] = {}
    inside = threading.Event()
    done = threading.Event()

    def traced(x: Any) -> Any:
        inside.set()
        done.wait(timeout=30)  # hold the tape and recorder open while the other thread looks
        return anp.sum(x * x)

    def owner() -> None:
        with Recorder():
            ad.grad(traced)(np.ones(2))

    t = threading.Thread(target=owner)
    t.start()
    assert inside.wait(timeout=30)
    seen["tapes"] = dict(trace.open_tapes())
    seen["recorder"] = trace.current_recorder()
    done.set()
    t.join(timeout=30)
    assert seen == {"tapes": {}, "recorder": None}
