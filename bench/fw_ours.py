"""Our engine through its Python API (``import engine as ad; import engine.numpy as anp``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.entries import Entry
from bench.fw_numpy import args_of
from bench.workloads import W5_STEPS, Case

NAME = "ours"


def version() -> str:
    """The engine's version (the project's), or '' when the engine is not importable yet."""
    try:
        import engine.numpy  # noqa: F401
        import engine.transforms  # noqa: F401
    except ImportError:
        return ""
    try:
        from importlib.metadata import version as dist_version

        return dist_version("autodiff-service")
    except Exception:  # not pip-installed: the working tree
        return "working tree"


def _functions() -> dict[str, Callable[..., Any]]:
    import engine.numpy as anp

    def w1(x: Any) -> Any:
        return anp.stack(
            [
                x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2],
                3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3,
                2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2,
            ]
        )

    def w4(X: Any, Y: Any, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
        logits = anp.tanh(X @ W1 + b1) @ W2 + b2
        return -anp.mean(anp.sum(Y * anp.log_softmax(logits, axis=1), axis=1))

    def w5(x: Any) -> Any:
        for _ in range(W5_STEPS):
            x = anp.sin(x) * 1.001 + x * 0.5
        return x

    def w8(a: Any) -> Any:
        b = a * 2
        while anp.norm(b) < 1000:
            b = b * 2
        c = b if anp.sum(b) > 0 else 100 * b
        return anp.sum(c)

    return {
        "W1": w1,
        "W2": lambda x: 2 * anp.dot(x, x),
        "W3": lambda x: anp.sum(anp.sin(x) * anp.exp(-(x**2)) + anp.log(1 + x**2)),
        "W4": w4,
        "W5": w5,
        "W6": lambda W, b, x: anp.tanh(W @ x + b),
        "W7": lambda W, x: anp.logsumexp(W @ x) + 0.5 * anp.sum(x**2),
        "W8": w8,
    }


def _bind(fn: Callable[[Any], Any], x: Any) -> Callable[[], Any]:
    return lambda: (fn(x),)


def entries(case: Case) -> list[Entry]:
    """Forward on plain arrays (records nothing); vjp, value_and_grad, jacobian or hessian."""
    import engine as ad

    f = _functions()[case.workload]
    args = args_of(case)
    forward = lambda: f(*args)  # noqa: E731
    w = case.workload
    if w == "W1":
        ct = case.inputs["ct"]

        def vjp() -> Any:
            out, pullback = ad.vjp(f, *args)
            return out, pullback(ct)

        return [Entry(NAME, NAME, forward, vjp)]
    if w == "W6":
        W, b, x = args
        fx = lambda x: f(W, b, x)  # noqa: E731
        jac = {m: ad.jacobian(fx, mode=m) for m in ("auto", "forward", "reverse")}
        return [Entry(f"ours ({m})", NAME, forward, _bind(j, x)) for m, j in jac.items()]
    if w == "W7":
        W, x = args
        hess = ad.hessian(lambda x: f(W, x))
        return [Entry(NAME, NAME, forward, lambda: (hess(x),))]
    argnums: int | tuple[int, ...] = (2, 3, 4, 5) if w == "W4" else len(args) - 1
    vg = ad.value_and_grad(f, argnums=argnums)
    return [Entry(NAME, NAME, forward, lambda: vg(*args))]
