"""Plain NumPy: every workload's forward (the floor) and the hand-written gradients of W2-W4."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.entries import Entry
from bench.workloads import W5_STEPS, Case

NAME = "numpy"


def version() -> str:
    """The framework's version, or '' when it is not installed."""
    return np.__version__


# ---- forwards: the floor ---------------------------------------------------------------------


def w1(x: np.ndarray) -> np.ndarray:
    """The tutorial's three polynomials."""
    return np.stack(
        [
            x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2],
            3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3,
            2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2,
        ]
    )


def w2(x: np.ndarray) -> Any:
    """2*dot(x,x)."""
    return 2 * np.dot(x, x)


def w3(x: np.ndarray) -> Any:
    """sum(sin(x)*exp(-x**2) + log(1+x**2))."""
    return np.sum(np.sin(x) * np.exp(-(x**2)) + np.log(1 + x**2))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def w4(
    X: np.ndarray, Y: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray
) -> Any:
    """Mean softmax cross-entropy of the tanh MLP."""
    logits = np.tanh(X @ W1 + b1) @ W2 + b2
    return -np.mean(np.sum(Y * _log_softmax(logits), axis=1))


def w5(x: Any) -> Any:
    """The scalar chain."""
    for _ in range(W5_STEPS):
        x = np.sin(x) * 1.001 + x * 0.5
    return x


def w6(W: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """tanh(W@x+b)."""
    return np.tanh(W @ x + b)


def w7(W: np.ndarray, x: np.ndarray) -> Any:
    """logsumexp(W@x) + 0.5*sum(x**2)."""
    z = W @ x
    m = z.max()
    return m + np.log(np.sum(np.exp(z - m))) + 0.5 * np.sum(x**2)


def w8(a: np.ndarray) -> Any:
    """The tutorial's control-flow function."""
    b = a * 2
    while np.linalg.norm(b) < 1000:
        b = b * 2
    c = b if np.sum(b) > 0 else 100 * b
    return np.sum(c)


# ---- hand-written gradients -------------------------------------------------------------------


def w2_grad(x: np.ndarray) -> tuple[Any, np.ndarray]:
    """Value and gradient of 2*dot(x,x)."""
    return 2 * np.dot(x, x), 4 * x


def w3_grad(x: np.ndarray) -> tuple[Any, np.ndarray]:
    """Value and gradient of W3, sharing sin and exp between them."""
    s = np.sin(x)
    sq = x * x
    e = np.exp(-sq)
    q = 1 + sq
    value = np.sum(s * e + np.log(q))
    return value, e * (np.cos(x) - 2 * x * s) + 2 * x / q


def w4_grad(
    X: np.ndarray, Y: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray
) -> tuple[Any, ...]:
    """Loss and backprop by hand through the MLP."""
    H = np.tanh(X @ W1 + b1)
    logp = _log_softmax(H @ W2 + b2)
    batch = X.shape[0]
    loss = -np.sum(Y * logp) / batch
    dZ2 = (np.exp(logp) - Y) / batch
    dZ1 = (dZ2 @ W2.T) * (1 - H * H)
    return loss, X.T @ dZ1, dZ1.sum(axis=0), H.T @ dZ2, dZ2.sum(axis=0)


FORWARDS: dict[str, Callable[..., Any]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W6": w6,
    "W7": w7,
    "W8": w8,
}
GRADIENTS: dict[str, Callable[..., Any]] = {"W2": w2_grad, "W3": w3_grad, "W4": w4_grad}
W4_ARGS = ("X", "Y", "W1", "b1", "W2", "b2")


def args_of(case: Case) -> tuple[Any, ...]:
    """The case's inputs in the order the workload functions take them."""
    order = {"W1": ("x",), "W4": W4_ARGS, "W6": ("W", "b", "x"), "W7": ("W", "x"), "W8": ("a",)}
    return tuple(case.inputs[k] for k in order.get(case.workload, ("x",)))


def entries(case: Case) -> list[Entry]:
    """The floor, and the hand-written gradient where issue 6 names one."""
    args = args_of(case)
    fwd = FORWARDS[case.workload]
    hand = GRADIENTS.get(case.workload)
    gradient = (lambda: hand(*args)) if hand else None
    name = "numpy (hand)" if hand else "numpy"
    return [Entry(name, NAME, lambda: fwd(*args), gradient)]
