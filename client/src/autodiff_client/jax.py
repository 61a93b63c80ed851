"""A remote function inside JAX code (``pip install autodiff-client[jax]``).

    from autodiff_client import Client
    from autodiff_client.jax import remote

    f = remote(Client(url), "sum(sin(x) * y)")
    jax.grad(f)(x, y)              # reverse mode: the service's /vjp
    jax.jit(jax.grad(f))(x, y)     # under jit too (jax.pure_callback)
    g = remote(client, "sin(x) * y", mode="forward")
    jax.jvp(g, (x, y), (tx, ty))   # forward mode: the service's /jvp; jax.jacfwd too

Each call is ``jax.pure_callback``, so it works under ``jit`` and ``vmap`` (one request
per batch element, ``vmap_method="sequential"``). JAX lets a function define one rule:
``mode="reverse"`` (default) is a ``jax.custom_vjp`` (``grad``, ``vjp``, ``jacrev``;
``jvp`` raises JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp
function"); ``mode="forward"`` is a ``jax.custom_jvp`` whose rule calls ``/jvp``
(``jvp``, ``jacfwd``, ``linearize``; ``grad`` fails, since a callback cannot be
transposed). Derivatives of derivatives through JAX are not supported: ask the service
for them (``Client.hessian``, ``Client.hvp``).

Under ``jit`` the output's shape must be known before any value is: the adapter asks the
service once per input shapes, at the inputs' values when they are concrete and at ones
otherwise; pass ``out_shape=`` when the function is not defined at ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from autodiff_client.client import Client
from autodiff_client.codec import Function
from autodiff_client.remote import RemoteFunction

__all__ = ["remote"]

Mode = Literal["reverse", "forward"]
# jax.ShapeDtypeStruct's __init__ has no annotations: typed here once for mypy --strict.
_struct: Callable[[tuple[int, ...], Any], jax.ShapeDtypeStruct] = jax.ShapeDtypeStruct


def remote(
    client: Client,
    function: Function,
    *,
    names: Sequence[str] | None = None,
    mode: Mode = "reverse",
    out_shape: Sequence[int] | None = None,
) -> Callable[..., jax.Array]:
    """``function`` at the service as a JAX function of its free inputs."""
    if mode not in ("reverse", "forward"):
        raise ValueError(f"mode must be 'reverse' or 'forward', got {mode!r}")
    rf = RemoteFunction(client, function, names)
    built: dict[tuple[str, ...], Callable[..., jax.Array]] = {}

    def call(*args: Any, **kwargs: Any) -> jax.Array:
        bound = rf.bind(args, kwargs)
        order = tuple(bound)
        if order not in built:
            built[order] = _build(_Remote(rf, order, out_shape), mode)
        return built[order](*(_as_float(bound[name]) for name in order))

    return call


def _as_float(value: Any) -> jax.Array:
    arr = jnp.asarray(value)
    return arr if jnp.issubdtype(arr.dtype, jnp.floating) else arr.astype(float)


class _Remote:
    """The callbacks of one positional order of inputs: NumPy in, NumPy out."""

    def __init__(self, rf: RemoteFunction, order: tuple[str, ...], out_shape: Any) -> None:
        self.rf = rf
        self.order = order
        self.out_shape = None if out_shape is None else tuple(out_shape)
        self._shapes: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def inputs(self, xs: Sequence[Any]) -> dict[str, np.ndarray[Any, Any]]:
        return {name: np.asarray(x) for name, x in zip(self.order, xs, strict=True)}

    def out_struct(self, xs: Sequence[jax.Array]) -> jax.ShapeDtypeStruct:
        dtype = jnp.result_type(*xs) if xs else jnp.result_type(float)
        return _struct(self._out_shape(xs), dtype)

    def _out_shape(self, xs: Sequence[jax.Array]) -> tuple[int, ...]:
        if self.out_shape is not None:
            return self.out_shape
        key = tuple((x.shape, str(x.dtype)) for x in xs)
        if key not in self._shapes:
            self._shapes[key] = self.rf.value(self.inputs(_probe_values(xs))).shape
        return self._shapes[key]

    def value(self, dtype: Any) -> Callable[..., np.ndarray[Any, Any]]:
        def callback(*xs: Any) -> np.ndarray[Any, Any]:
            return np.asarray(self.rf.value(self.inputs(xs)), dtype=dtype)

        return callback

    def vjp(self, dtypes: Sequence[Any]) -> Callable[..., tuple[np.ndarray[Any, Any], ...]]:
        def callback(*xs_and_g: Any) -> tuple[np.ndarray[Any, Any], ...]:
            *xs, g = xs_and_g
            _, vjp = self.rf.vjp(self.inputs(xs), np.asarray(g), self.order)
            return tuple(
                np.asarray(vjp[name], dtype=dt) for name, dt in zip(self.order, dtypes, strict=True)
            )

        return callback

    def jvp(self, dtype: Any) -> Callable[..., np.ndarray[Any, Any]]:
        def callback(*xs_and_ts: Any) -> np.ndarray[Any, Any]:
            n = len(self.order)
            xs, ts = xs_and_ts[:n], xs_and_ts[n:]
            tangents = {name: np.asarray(t) for name, t in zip(self.order, ts, strict=True)}
            _, jvp = self.rf.jvp(self.inputs(xs), tangents)
            return np.asarray(jvp, dtype=dtype)

        return callback


def _probe_values(xs: Sequence[jax.Array]) -> list[np.ndarray[Any, Any]]:
    # The output's shape is asked at the real values when JAX has them (eager calls), and
    # at ones when it has only shapes (under jit): the shape rarely depends on the values.
    try:
        return [np.asarray(x) for x in xs]
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return [np.ones(x.shape, dtype=x.dtype) for x in xs]


def _build(r: _Remote, mode: Mode) -> Callable[..., jax.Array]:
    def primal(*xs: jax.Array) -> jax.Array:
        out = r.out_struct(xs)
        result: jax.Array = jax.pure_callback(
            r.value(out.dtype), out, *xs, vmap_method="sequential"
        )
        return result

    if mode == "reverse":
        return _with_vjp(r, primal)
    return _with_jvp(r, primal)


def _with_vjp(r: _Remote, primal: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    f = jax.custom_vjp(primal)

    def fwd(*xs: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        return primal(*xs), xs

    def bwd(xs: tuple[jax.Array, ...], g: jax.Array) -> tuple[jax.Array, ...]:
        structs = tuple(_struct(x.shape, x.dtype) for x in xs)
        dtypes = [x.dtype for x in xs]
        grads: tuple[jax.Array, ...] = jax.pure_callback(
            r.vjp(dtypes), structs, *xs, g, vmap_method="sequential"
        )
        return tuple(grads)

    f.defvjp(fwd, bwd)
    return f


def _with_jvp(r: _Remote, primal: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    f = jax.custom_jvp(primal)

    def rule(
        primals: tuple[jax.Array, ...], tangents: tuple[jax.Array, ...]
    ) -> tuple[jax.Array, jax.Array]:
        out = r.out_struct(primals)
        # The value by its own callback: under jacfwd (a vmap over tangents) it stays one
        # value, not one per direction. So jax.jvp costs two requests, jacfwd 1 + n.
        jvp: jax.Array = jax.pure_callback(
            r.jvp(out.dtype), out, *primals, *tangents, vmap_method="sequential"
        )
        return primal(*primals), jvp

    f.defjvp(rule)
    return f
