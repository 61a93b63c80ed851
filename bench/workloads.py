"""Issue 6's workloads W1..W8: inputs (float64, fixed seeds) and what each answer holds.

Every framework's entries for a case return the same flat tuple of arrays (see ``Case.answer``),
so one check compares them all against ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SEED = 20261123
W5_STEPS = 1000
W5_OPS_PER_STEP = 4  # sin, *1.001, *0.5, + : the ops each framework records per step
W8_START = np.array([0.3, -0.2, 0.5, 0.1])


@dataclass(frozen=True)
class Case:
    """One workload at one size."""

    key: str  # unique, e.g. "W6 n=256"
    workload: str  # "W6"
    title: str
    answer: str  # what the gradient entries return, in order
    n: int = 0
    inputs: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def size_label(n: int) -> str:
    """``4``, ``256`` or ``10^6``: powers of ten past 1000 written as such."""
    k = len(str(n)) - 1
    return f"10^{k}" if n >= 10_000 and n == 10**k else str(n)


def _rng(tag: int) -> np.random.Generator:
    return np.random.default_rng([SEED, tag])


def _w1() -> Case:
    return Case(
        "W1",
        "W1",
        "tutorial VJP at [1,2,3], cotangent [3,2,1]",
        "(y, vjp)",
        3,
        {"x": np.array([1.0, 2.0, 3.0]), "ct": np.array([3.0, 2.0, 1.0])},
    )


def _w2(n: int) -> Case:
    x = _rng(2).standard_normal(n) if n > 4 else np.array([0.0, 1.0, 2.0, 3.0])
    return Case(f"W2 n={size_label(n)}", "W2", "2*dot(x,x)", "(value, grad)", n, {"x": x})


def _w3(n: int) -> Case:
    x = _rng(3).standard_normal(n)
    title = "sum(sin(x)*exp(-x**2) + log(1+x**2))"
    return Case(f"W3 n={size_label(n)}", "W3", title, "(value, grad)", n, {"x": x})


def _w4() -> Case:
    rng = _rng(4)
    batch, d_in, d_hid, d_out = 256, 784, 256, 10
    labels = rng.integers(0, d_out, batch)
    inputs = {
        "X": rng.standard_normal((batch, d_in)),
        "Y": np.eye(d_out)[labels],
        "W1": rng.standard_normal((d_in, d_hid)) / np.sqrt(d_in),
        "b1": 0.1 * rng.standard_normal(d_hid),
        "W2": rng.standard_normal((d_hid, d_out)) / np.sqrt(d_hid),
        "b2": 0.1 * rng.standard_normal(d_out),
    }
    title = "784-256-10 tanh MLP, mean softmax cross-entropy, batch 256"
    return Case("W4", "W4", title, "(loss, dW1, db1, dW2, db2)", batch, inputs)


def _w5() -> Case:
    title = f"scalar chain: {W5_STEPS} x (x = sin(x)*1.001 + x*0.5)"
    return Case("W5", "W5", title, "(value, grad)", W5_STEPS, {"x": np.float64(0.5)})


def _w6(n: int) -> Case:
    rng = _rng(6)
    inputs = {
        "W": rng.standard_normal((n, n)) / np.sqrt(n),
        "b": 0.1 * rng.standard_normal(n),
        "x": rng.standard_normal(n),
    }
    return Case(f"W6 n={n}", "W6", "Jacobian of tanh(W@x+b) w.r.t. x", "(jacobian,)", n, inputs)


def _w7() -> Case:
    n = 128
    rng = _rng(7)
    inputs = {"W": rng.standard_normal((n, n)) / np.sqrt(n), "x": rng.standard_normal(n)}
    title = "Hessian of logsumexp(W@x) + 0.5*sum(x**2)"
    return Case("W7", "W7", title, "(hessian,)", n, inputs)


def _w8(n: int) -> Case:
    a = W8_START.copy() if n == 4 else _rng(8).standard_normal(n)
    title = "tutorial control flow (while norm(b) < 1000, if sum(b) > 0)"
    return Case(f"W8 n={size_label(n)}", "W8", title, "(value, grad)", n, {"a": a})


def all_cases() -> list[Case]:
    """Every case of issue 6, in report order."""
    return [
        _w1(),
        _w2(4),
        _w2(10**6),
        _w3(10**6),
        _w4(),
        _w5(),
        _w6(64),
        _w6(256),
        _w6(1024),
        _w7(),
        _w8(4),
        _w8(10**4),
    ]


def select(only: str | None) -> list[Case]:
    """The cases whose workload (``W4``) or key (``W6 n=256``) is listed in ``only`` (commas)."""
    cases = all_cases()
    if not only:
        return cases
    wanted = {w.strip().upper() for w in only.split(",") if w.strip()}
    chosen = [c for c in cases if c.workload in wanted or c.key.upper() in wanted]
    unknown = wanted - {c.workload for c in chosen} - {c.key.upper() for c in chosen}
    if unknown:
        raise SystemExit(f"--only: unknown workload(s) {sorted(unknown)}")
    return chosen
