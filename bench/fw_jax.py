"""JAX (CPU, float64): jitted forward and gradients; W8's Python control flow runs unjitted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.entries import Entry
from bench.fw_numpy import args_of
from bench.workloads import W5_STEPS, Case

NAME = "jax"


def version() -> str:
    """The framework's version, or '' when it is not installed."""
    try:
        import jax
    except ImportError:
        return ""
    return str(jax.__version__)


def _functions() -> dict[str, Callable[..., Any]]:
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    def w1(x: Any) -> Any:
        return jnp.stack(
            [
                x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2],
                3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3,
                2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2,
            ]
        )

    def w4(X: Any, Y: Any, W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
        logits = jnp.tanh(X @ W1 + b1) @ W2 + b2
        return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(logits, axis=1), axis=1))

    def w5(x: Any) -> Any:
        # The idiomatic JAX loop: a traced loop body, not 1000 unrolled steps.
        return jax.lax.fori_loop(0, W5_STEPS, lambda _, x: jnp.sin(x) * 1.001 + x * 0.5, x)

    def w8(a: Any) -> Any:
        b = a * 2
        while jnp.linalg.norm(b) < 1000:
            b = b * 2
        c = b if jnp.sum(b) > 0 else 100 * b
        return jnp.sum(c)

    return {
        "W1": w1,
        "W2": lambda x: 2 * jnp.dot(x, x),
        "W3": lambda x: jnp.sum(jnp.sin(x) * jnp.exp(-(x**2)) + jnp.log(1 + x**2)),
        "W4": w4,
        "W5": w5,
        "W6": lambda W, b, x: jnp.tanh(W @ x + b),
        "W7": lambda W, x: logsumexp(W @ x) + 0.5 * jnp.sum(x**2),
        "W8": w8,
    }


def _ready(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """A no-argument call that waits for JAX's asynchronous dispatch to finish."""
    import jax

    return lambda: jax.block_until_ready(fn(*args))


def _first_call(make: Callable[[], Callable[..., Any]], *args: Any) -> Callable[[], Any]:
    """Each call jits a fresh function and runs it once: trace, compile and run, as a
    service would pay for each program it has not seen (ours: parse and run)."""
    import jax

    return lambda: jax.block_until_ready(jax.jit(make())(*args))


def entries(case: Case) -> list[Entry]:
    """jit(f) and jit of value_and_grad / vjp / jacfwd / jacrev / hessian; and the same
    jitted afresh (compile included), to show what a new function costs."""
    cold = _cold_entries(case)
    return _warm_entries(case) + cold


def _cold_entries(case: Case) -> list[Entry]:
    import jax
    import jax.numpy as jnp

    if case.workload == "W8":
        return []
    f = _functions()[case.workload]
    args = tuple(jnp.asarray(a) for a in args_of(case))
    w = case.workload
    note = "a fresh jit per call: trace + compile + run"
    if w == "W1":
        ct = jnp.asarray(case.inputs["ct"])

        def make() -> Callable[..., Any]:
            def vjp(x: Any, ct: Any) -> Any:
                y, pullback = jax.vjp(f, x)
                return y, pullback(ct)

            return vjp

        return [Entry("jax (first call)", NAME, None, _first_call(make, *args, ct), note)]
    if w == "W6":
        grad = lambda: lambda *a: (jax.jacfwd(f, 2)(*a),)  # noqa: E731
    elif w == "W7":
        grad = lambda: lambda *a: (jax.hessian(f, 1)(*a),)  # noqa: E731
    else:
        argnums = (2, 3, 4, 5) if w == "W4" else 0
        grad = lambda: jax.value_and_grad(lambda *a: f(*a), argnums)  # noqa: E731
    return [Entry("jax (first call)", NAME, None, _first_call(grad, *args), note)]


def _warm_entries(case: Case) -> list[Entry]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    f = _functions()[case.workload]
    args = tuple(jnp.asarray(a) for a in args_of(case))
    w = case.workload
    if w == "W8":  # data-dependent Python control flow cannot be jitted; grad traces it eagerly
        vg = jax.value_and_grad(f)
        return [
            Entry(
                "jax (no jit)",
                NAME,
                _ready(f, *args),
                _ready(vg, *args),
                "Python while/if: not jittable",
            )
        ]
    forward = _ready(jax.jit(f), *args)
    if w == "W1":

        def vjp(x: Any, ct: Any) -> Any:
            y, pullback = jax.vjp(f, x)
            return y, pullback(ct)

        ct = jnp.asarray(case.inputs["ct"])
        return [Entry("jax (jit)", NAME, forward, _ready(jax.jit(vjp), *args, ct))]
    if w == "W6":
        return [
            Entry(
                "jax.jacfwd (jit)",
                NAME,
                forward,
                _ready(jax.jit(lambda *a: (jax.jacfwd(f, 2)(*a),)), *args),
            ),
            Entry(
                "jax.jacrev (jit)",
                NAME,
                forward,
                _ready(jax.jit(lambda *a: (jax.jacrev(f, 2)(*a),)), *args),
            ),
        ]
    if w == "W7":
        hess = jax.jit(lambda *a: (jax.hessian(f, 1)(*a),))
        return [Entry("jax.hessian (jit)", NAME, forward, _ready(hess, *args))]
    argnums = (2, 3, 4, 5) if w == "W4" else 0
    note = "lax.fori_loop" if w == "W5" else ""
    vg = jax.jit(jax.value_and_grad(f, argnums))
    return [Entry("jax (jit)", NAME, forward, _ready(vg, *args), note)]
