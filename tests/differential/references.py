"""Float64 references of a generated program: torch.func and JAX transforms of its translation.

Each library computes every derivative with its own transforms (torch.func: grad, vjp, jvp,
jacrev, jacfwd, hessian; JAX: the same names), on the program run by the interpreter over
that library's ops, with the conditions replayed from the model's decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.differential import programs as P
from tests.differential.backends import JaxBackend, TorchBackend, jax_modules, torch_module
from tests.differential.generate import Spec


@dataclass
class Directions:
    """The cotangents, tangents and Hessian vectors a check sends (seeded)."""

    cotangents: list[np.ndarray]  # one per output
    tangents: dict[str, np.ndarray]  # one per differentiated input
    vectors: dict[str, np.ndarray]


def directions(spec: Spec) -> Directions:
    rng = np.random.default_rng(spec.seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        v = np.round(rng.uniform(-1, 1, size=shape), 3)
        return v.astype(np.float32).astype(np.float64) if spec.dtype == "float32" else v

    cts = [draw(np.shape(o)) for o in spec.outputs]
    shapes = dict(spec.program.inputs)
    return Directions(
        cts,
        {n: draw(shapes[n]) for n in spec.diff},
        {n: draw(shapes[n]) for n in spec.diff},
    )


@dataclass
class Reference:
    """One library's answers. ``jac[o][i]``: d output o / d input i; ``hess[i][j]``."""

    library: str
    value: list[np.ndarray] = field(default_factory=list)
    jac: list[list[np.ndarray]] = field(default_factory=list)
    jac_other_mode: list[list[np.ndarray]] = field(default_factory=list)
    vjp: list[np.ndarray] = field(default_factory=list)  # per diff input
    jvp: list[np.ndarray] = field(default_factory=list)  # per output
    grad: list[np.ndarray] | None = None
    hess: list[list[np.ndarray]] | None = None
    hvp: list[np.ndarray] | None = None
    error: str | None = None


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach()
        # torch.func answers an unused input's derivative as a ZeroTensor
        x = np.zeros(tuple(x.shape)) if x._is_zerotensor() else x.cpu().numpy()
    elif hasattr(x, "reshape"):
        x = np.array(x)
    return np.asarray(x, dtype=np.float64)


def _float_outputs(outs: tuple[Any, ...]) -> tuple[Any, ...]:
    return outs


def torch_reference(spec: Spec, d: Directions) -> Reference:
    torch = torch_module()
    from torch import func

    ref = Reference("torch")
    consts = {n: torch.as_tensor(v.copy()) for n, v in spec.inputs.items() if n not in spec.diff}
    names = spec.diff

    def f(*xs: Any) -> tuple[Any, ...]:
        env: dict[str, Any] = {**consts, **dict(zip(names, xs, strict=True))}
        outs = P.run(spec.program, TorchBackend(spec.decisions), env)
        return tuple(o if isinstance(o, torch.Tensor) else torch.as_tensor(o * 1.0) for o in outs)

    xs = tuple(torch.as_tensor(spec.inputs[n].copy()) for n in names)
    try:
        ref.value = [_np(o) for o in f(*xs)]
        if not names:
            return ref
        argnums = tuple(range(len(names)))
        rev = func.jacrev(f, argnums=argnums)(*xs)
        fwd = func.jacfwd(f, argnums=argnums)(*xs)
        ref.jac = [[_np(b) for b in row] for row in rev]
        ref.jac_other_mode = [[_np(b) for b in row] for row in fwd]
        _, pull = func.vjp(f, *xs)
        ref.vjp = [_np(g) for g in pull(tuple(torch.as_tensor(c) for c in d.cotangents))]
        ts = tuple(torch.as_tensor(d.tangents[n]) for n in names)
        ref.jvp = [_np(t) for t in func.jvp(f, xs, ts)[1]]
        if spec.scalar:

            def scalar(*a: Any) -> Any:
                return f(*a)[0].reshape(())

            ref.grad = [_np(g) for g in func.grad(scalar, argnums=argnums)(*xs)]
            hess = func.hessian(scalar, argnums=argnums)(*xs)
            ref.hess = [[_np(b) for b in row] for row in hess]
            vs = tuple(torch.as_tensor(d.vectors[n]) for n in names)
            ref.hvp = [_np(h) for h in func.jvp(func.grad(scalar, argnums=argnums), xs, vs)[1]]
    except Exception as err:  # a reference that cannot run is reported, not compared
        ref.error = f"{type(err).__name__}: {err}"[:300]
    return ref


def jax_reference(spec: Spec, d: Directions) -> Reference:
    jax, jnp = jax_modules()
    ref = Reference("jax")
    consts = {n: jnp.asarray(v) for n, v in spec.inputs.items() if n not in spec.diff}
    names = spec.diff

    def f(*xs: Any) -> tuple[Any, ...]:
        env: dict[str, Any] = {**consts, **dict(zip(names, xs, strict=True))}
        outs = P.run(spec.program, JaxBackend(spec.decisions), env)
        return tuple(jnp.asarray(o, dtype=jnp.float64) for o in outs)

    xs = tuple(jnp.asarray(spec.inputs[n]) for n in names)
    argnums = tuple(range(len(names)))
    cts = tuple(jnp.asarray(c) for c in d.cotangents)
    ts = tuple(jnp.asarray(d.tangents[n]) for n in names)
    vs = tuple(jnp.asarray(d.vectors[n]) for n in names)

    def scalar(*a: Any) -> Any:
        return f(*a)[0].reshape(())

    def everything(*xs: Any) -> dict[str, Any]:
        # One jit of all the transforms: JAX's op-by-op dispatch compiles every primitive
        # (10-40 s a program here), one compilation of the whole costs a second or two.
        out: dict[str, Any] = {"value": f(*xs)}
        if not names:
            return out
        out["jac"] = jax.jacfwd(f, argnums=argnums)(*xs)
        out["jac_other_mode"] = jax.jacrev(f, argnums=argnums)(*xs)
        out["vjp"] = jax.vjp(f, *xs)[1](cts)
        out["jvp"] = jax.jvp(f, xs, ts)[1]
        if spec.scalar:
            out["grad"] = jax.grad(scalar, argnums=argnums)(*xs)
            out["hess"] = jax.hessian(scalar, argnums=argnums)(*xs)
            out["hvp"] = jax.jvp(jax.grad(scalar, argnums=argnums), xs, vs)[1]
        return out

    try:
        got = jax.jit(everything)(*xs)
        ref.value = [_np(o) for o in got["value"]]
        if not names:
            return ref
        ref.jac = [[_np(b) for b in row] for row in got["jac"]]
        ref.jac_other_mode = [[_np(b) for b in row] for row in got["jac_other_mode"]]
        ref.vjp = [_np(g) for g in got["vjp"]]
        ref.jvp = [_np(t) for t in got["jvp"]]
        if spec.scalar:
            ref.grad = [_np(g) for g in got["grad"]]
            ref.hess = [[_np(b) for b in row] for row in got["hess"]]
            ref.hvp = [_np(h) for h in got["hvp"]]
    except Exception as err:
        ref.error = f"{type(err).__name__}: {err}"[:300]
    return ref
