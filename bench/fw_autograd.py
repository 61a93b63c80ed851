"""HIPS autograd: the same workloads written with autograd.numpy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.entries import Entry
from bench.fw_numpy import args_of
from bench.workloads import W5_STEPS, Case

NAME = "autograd"


def version() -> str:
    """The framework's version, or '' when it is not installed."""
    try:
        from importlib.metadata import version as dist_version

        import autograd  # noqa: F401
    except ImportError:
        return ""
    return dist_version("autograd")


def _functions() -> dict[str, Callable[..., Any]]:
    import autograd.numpy as np
    from autograd.scipy.special import logsumexp

    def w1(x: Any) -> Any:
        return np.stack(
            [
                x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2],
                3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3,
                2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2,
            ]
        )

    def w4(X: Any, Y: Any, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
        logits = np.tanh(np.dot(X, W1) + b1) @ W2 + b2
        logp = logits - logsumexp(logits, axis=1, keepdims=True)
        return -np.mean(np.sum(Y * logp, axis=1))

    def w5(x: Any) -> Any:
        for _ in range(W5_STEPS):
            x = np.sin(x) * 1.001 + x * 0.5
        return x

    def w8(a: Any) -> Any:
        b = a * 2
        while np.linalg.norm(b) < 1000:
            b = b * 2
        c = b if np.sum(b) > 0 else 100 * b
        return np.sum(c)

    return {
        "W1": w1,
        "W2": lambda x: 2 * np.dot(x, x),
        "W3": lambda x: np.sum(np.sin(x) * np.exp(-(x**2)) + np.log(1 + x**2)),
        "W4": w4,
        "W5": w5,
        "W6": lambda W, b, x: np.tanh(W @ x + b),
        "W7": lambda W, x: logsumexp(W @ x) + 0.5 * np.sum(x**2),
        "W8": w8,
    }


def entries(case: Case) -> list[Entry]:
    """Forward on plain arrays; value_and_grad, make_vjp, jacobian or hessian for the gradient."""
    import autograd

    f = _functions()[case.workload]
    args = args_of(case)
    w = case.workload
    if w == "W1":
        ct = case.inputs["ct"]

        def gradient() -> Any:
            vjp, ans = autograd.make_vjp(f)(*args)
            return ans, vjp(ct)

    elif w == "W4":
        vg = autograd.value_and_grad(f, (2, 3, 4, 5))
        gradient = lambda: vg(*args)  # noqa: E731
    elif w == "W6":
        jac = autograd.jacobian(f, 2)
        gradient = lambda: (jac(*args),)  # noqa: E731
    elif w == "W7":
        hess = autograd.hessian(f, 1)
        gradient = lambda: (hess(*args),)  # noqa: E731
    else:
        vg = autograd.value_and_grad(f, len(args) - 1)
        gradient = lambda: vg(*args)  # noqa: E731
    note = "jacobian: one reverse pass per row" if w == "W6" else ""
    return [Entry(NAME, NAME, lambda: f(*args), gradient, note)]
