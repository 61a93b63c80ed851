"""PyTorch (CPU): eager autograd for every workload, torch.func for Jacobians and Hessian."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.entries import Entry
from bench.fw_numpy import args_of
from bench.workloads import W5_STEPS, Case

NAME = "torch"


def version() -> str:
    """The framework's version, or '' when it is not installed."""
    try:
        import torch
    except ImportError:
        return ""
    return str(torch.__version__)


def _functions() -> dict[str, Callable[..., Any]]:
    import torch

    def w1(x: Any) -> Any:
        return torch.stack(
            [
                x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2],
                3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3,
                2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2,
            ]
        )

    def w4(X: Any, Y: Any, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
        logits = torch.tanh(X @ W1 + b1) @ W2 + b2
        return -torch.mean(torch.sum(Y * torch.log_softmax(logits, dim=1), dim=1))

    def w5(x: Any) -> Any:
        for _ in range(W5_STEPS):
            x = torch.sin(x) * 1.001 + x * 0.5
        return x

    def w8(a: Any) -> Any:
        b = a * 2
        while torch.linalg.norm(b) < 1000:
            b = b * 2
        c = b if torch.sum(b) > 0 else 100 * b
        return torch.sum(c)

    return {
        "W1": w1,
        "W2": lambda x: 2 * torch.dot(x, x),
        "W3": lambda x: torch.sum(torch.sin(x) * torch.exp(-(x**2)) + torch.log(1 + x**2)),
        "W4": w4,
        "W5": w5,
        "W6": lambda W, b, x: torch.tanh(W @ x + b),
        "W7": lambda W, x: torch.logsumexp(W @ x, dim=0) + 0.5 * torch.sum(x**2),
        "W8": w8,
    }


def _tensors(case: Case) -> tuple[Any, ...]:
    import numpy as np
    import torch

    return tuple(torch.from_numpy(np.array(a, dtype=np.float64)) for a in args_of(case))


def _eager_gradient(case: Case, f: Callable[..., Any], args: tuple[Any, ...]) -> Callable[[], Any]:
    """A reverse pass with torch.autograd.grad (no .grad accumulates between calls)."""
    import torch

    w = case.workload
    wrt_index = {"W4": (2, 3, 4, 5)}.get(w, (len(args) - 1,))
    leaves = list(args)
    for i in wrt_index:
        leaves[i] = args[i].clone().requires_grad_(True)
    wrt = [leaves[i] for i in wrt_index]
    if w == "W1":
        ct = torch.from_numpy(case.inputs["ct"])

        def vjp() -> Any:
            y = f(*leaves)
            return y.detach(), torch.autograd.grad(y, wrt, ct)

        return vjp

    def value_and_grad() -> Any:
        y = f(*leaves)
        return y.detach(), torch.autograd.grad(y, wrt)

    return value_and_grad


def entries(case: Case) -> list[Entry]:
    """Eager autograd, plus torch.func's jacfwd/jacrev (W6) and hessian (W7)."""
    import torch.autograd.functional as taf
    from torch import func

    f = _functions()[case.workload]
    args = _tensors(case)
    forward = lambda: f(*args)  # noqa: E731
    w = case.workload
    if w == "W6":
        W, b, x = args
        fx = lambda x: f(W, b, x)  # noqa: E731
        jf, jr = func.jacfwd(fx), func.jacrev(fx)
        return [
            Entry(
                "torch (eager)",
                NAME,
                forward,
                lambda: (taf.jacobian(fx, x),),
                "autograd.functional.jacobian: one backward per row",
            ),
            Entry("torch.func.jacfwd", NAME, forward, lambda: (jf(x),)),
            Entry("torch.func.jacrev", NAME, forward, lambda: (jr(x),)),
        ]
    if w == "W7":
        W, x = args
        fx = lambda x: f(W, x)  # noqa: E731
        hess = func.hessian(fx)
        return [
            Entry(
                "torch (eager)",
                NAME,
                forward,
                lambda: (taf.hessian(fx, x),),
                "autograd.functional.hessian",
            ),
            Entry("torch.func.hessian", NAME, forward, lambda: (hess(x),)),
        ]
    return [Entry(NAME, NAME, forward, _eager_gradient(case, f, args))]
