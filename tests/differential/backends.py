"""The programs' ops on three backends: NumPy (the generator's model, with margin checks),
torch and JAX (the float64 references, each op written with that library's own functions).

``MODEL`` runs in float64 and refuses (``Reject``) any op whose operands sit within
``MARGIN`` of a kink, a discontinuity or a domain edge (``abs`` at 0, a ``max`` tie, a
comparison that is nearly equal, ``log`` near 0, ``arcsin`` near 1, ...): the generator
only keeps programs that run through it, so every derivative compared is well defined and
float32 rounding of the inputs cannot take a different branch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.differential.programs import Slice

MARGIN = 0.05
# Values the generator keeps: beyond this, float32 and float64 part ways too much to compare.
MAX_ABS = 1e3


class Reject(Exception):
    """The model refuses an op at these values (near a kink, an edge, or too large)."""


def np_index(entries: tuple[Any, ...]) -> tuple[Any, ...]:
    """Our index entries as a NumPy index."""
    out: list[Any] = []
    for e in entries:
        if isinstance(e, Slice):
            out.append(slice(e.start, e.stop, e.step))
        elif isinstance(e, list):
            out.append(np.asarray(e, dtype=np.int64))
        else:
            out.append(e)
    return tuple(out)


def all_axes(ndim: int, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple | list) else (axis,)
    return tuple(sorted(a % ndim for a in axes))


# --------------------------------------------------------------------------- NumPy model


def _softmax(x: Any, axis: int = -1) -> Any:
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def _logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=all_axes(np.ndim(x), axis))


NP_OPS: dict[str, Callable[..., Any]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "softmax": _softmax,
    "log_softmax": lambda x, axis=-1: np.log(_softmax(x, axis)),
    "logsumexp": _logsumexp,
    "detach": lambda x: x,
    "norm": np.linalg.norm,
    "inv": np.linalg.inv,
    "det": np.linalg.det,
    "slogdet": lambda a: tuple(np.linalg.slogdet(a)),
    "solve": np.linalg.solve,
    "cholesky": np.linalg.cholesky,
    "max": np.max,
    "min": np.min,
    "clip": lambda x, a_min=None, a_max=None: np.clip(x, a_min, a_max),
    # NumPy's own dtypes: a float32 end point (or fill value) with a literal stays float32
    "linspace": lambda start, stop, num=50: np.linspace(start, stop, num),
    "full": lambda shape, fill_value: np.full(
        shape, fill_value, dtype=np.result_type(fill_value, 1.0)
    ),
    "arange": lambda start, stop=None, step=None: np.arange(start, stop, step, dtype=float),
    "eye": lambda N, M=None, k=0: np.eye(N, M, k),
    "zeros": lambda shape: np.zeros(shape),
    "ones": lambda shape: np.ones(shape),
}


def _near_kink(x: Any, at: float = 0.0) -> bool:
    x = np.asarray(x, float)
    return x.size > 0 and bool(np.any(np.abs(x - at) < MARGIN * np.maximum(1.0, abs(at))))


def _gap(a: Any, b: Any) -> bool:
    """a and b nowhere within the margin of each other (exact equality is fine)."""
    d = np.abs(np.asarray(a, float) - np.asarray(b, float))
    scale = np.maximum(1.0, np.abs(np.asarray(b, float)))
    return not bool(np.any((d > 0) & (d < MARGIN * scale)))


def _unique_extreme(x: Any, axis: Any, largest: bool) -> bool:
    x = np.asarray(x, float)
    if x.ndim == 0:
        return True
    axes = all_axes(x.ndim, axis)
    keep = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, keep + list(axes)).reshape([x.shape[a] for a in keep] + [-1])
    if moved.shape[-1] < 2:
        return True
    s = np.sort(moved, axis=-1)
    top = (s[..., -1] - s[..., -2]) if largest else (s[..., 1] - s[..., 0])
    return bool(np.all(top > MARGIN))


def _near_integer(q: Any) -> bool:
    q = np.asarray(q, float)
    return bool(np.any(np.abs(q - np.round(q)) < MARGIN))


def check(op: str, args: list[Any], kw: dict[str, Any]) -> None:  # noqa: C901
    """Refuse an op whose derivative is not well defined (with margin) at these operands."""
    a = args[0] if args else None
    positive = {"sqrt", "log", "log2", "log10"}
    if op in positive and np.any(np.asarray(a) < MARGIN * 4):
        raise Reject
    if op == "log1p" and np.any(np.asarray(a) < -1 + MARGIN * 4):
        raise Reject
    if op in ("arcsin", "arccos") and np.any(np.abs(a) > 1 - MARGIN * 2):
        raise Reject
    if op == "tan" and np.any(np.abs(np.cos(a)) < 0.2):
        raise Reject
    if op in ("exp", "expm1", "sinh", "cosh") and np.any(np.abs(a) > 6):
        raise Reject
    if op in ("abs", "sign", "relu") and _near_kink(a):
        raise Reject
    if op in ("maximum", "minimum") and not _gap(args[0], args[1]):
        raise Reject
    comparisons = ("less", "less_equal", "greater", "greater_equal", "equal", "not_equal")
    if op in comparisons and not _gap(args[0], args[1]):
        raise Reject
    if op == "clip":
        lo, hi = (
            kw.get("a_min", args[1] if len(args) > 1 else None),
            kw.get("a_max", args[2] if len(args) > 2 else None),
        )
        if not (_gap(a, lo) and _gap(a, hi)) or not np.all(np.asarray(lo) < np.asarray(hi)):
            raise Reject
    if op == "divide" and np.any(np.abs(args[1]) < 0.2):
        raise Reject
    if op in ("floor_divide", "remainder") and (
        np.any(np.abs(args[1]) < 0.2) or _near_integer(np.asarray(args[0]) / args[1])
    ):
        raise Reject
    if op == "power":
        base, exponent = np.asarray(args[0], float), np.asarray(args[1], float)
        integral = exponent.ndim == 0 and float(exponent).is_integer()
        if not integral and np.any(base < MARGIN * 4):
            raise Reject
        if integral and float(exponent) < 0 and _near_kink(base, 0.0):
            raise Reject
    if op == "arctan2" and (
        np.any(np.hypot(args[0], args[1]) < 0.2)
        or np.any((np.asarray(args[1]) < 0) & (np.abs(args[0]) < MARGIN))
    ):
        raise Reject
    if op in ("max", "min") and not _unique_extreme(a, kw.get("axis"), op == "max"):
        raise Reject
    if op == "prod" and _near_kink(a):
        raise Reject
    if op in ("var", "std"):
        x = np.asarray(a)
        count = math.prod(x.shape[i] for i in all_axes(x.ndim, kw.get("axis")))
        if count <= kw.get("ddof", 0):
            raise Reject
        if op == "std" and np.any(np.var(x, axis=kw.get("axis"), ddof=kw.get("ddof", 0)) < 0.01):
            raise Reject
    if op == "norm":
        _check_norm(np.asarray(a, float), kw)


def _check_norm(x: Any, kw: dict[str, Any]) -> None:
    ord_, axis = kw.get("ord"), kw.get("axis")
    matrix = (axis is None and x.ndim == 2 and ord_ is not None) or (
        isinstance(axis, tuple) and len(axis) == 2
    )
    if matrix:
        m = x if axis is None else np.moveaxis(x, axis, (-2, -1))
        if ord_ in (2, -2):
            s = np.linalg.svd(m, compute_uv=False)
            if s.shape[-1] > 1 and np.any(np.abs(np.diff(s, axis=-1)) < MARGIN * 4):
                raise Reject
            if ord_ == -2 and np.any(s[..., -1] < MARGIN * 4):
                raise Reject
        if ord_ in (1, -1, math.inf, -math.inf):
            sums = np.sum(np.abs(m), axis=-2 if ord_ in (1, -1) else -1)
            if not _unique_extreme(sums, -1, ord_ in (1, math.inf)):
                raise Reject
        if _near_kink(m):
            raise Reject
        return
    if _near_kink(x):  # every vector norm but the 2-norm has a kink at a zero entry
        raise Reject
    if ord_ in (math.inf, -math.inf) and not _unique_extreme(np.abs(x), axis, ord_ == math.inf):
        raise Reject


class NumpyModel:
    """float64 NumPy with margin checks; records the decisions of conditions."""

    def __init__(self, checked: bool = True) -> None:
        self.decisions: list[bool] = []
        self.checked = checked

    def call(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.checked:
            check(op, args, kwargs)
        fn = NP_OPS.get(op) or getattr(np, op)
        with np.errstate(all="raise"):
            try:
                out = fn(*args, **kwargs)
            except (FloatingPointError, ValueError, np.linalg.LinAlgError) as err:
                raise Reject from err
        if self.checked:
            for part in out if isinstance(out, tuple) else (out,):
                if np.any(np.abs(part) > MAX_ABS):
                    raise Reject
        return out

    def literal(self, value: Any) -> Any:
        return np.asarray(value, dtype=float) if isinstance(value, list) else value

    def index(self, x: Any, entries: tuple[Any, ...]) -> Any:
        if isinstance(x, tuple):
            return x[entries[0]]
        return np.asarray(x)[np_index(entries)]

    def stack(self, items: list[Any]) -> Any:
        return np.stack([np.asarray(i) for i in items])

    def decide(self, cond: Any) -> bool:
        value = bool(np.asarray(cond))
        self.decisions.append(value)
        return value


# --------------------------------------------------------------------------- references


class Replay:
    """Conditions answered from the model's recorded decisions (define-by-run)."""

    def __init__(self, decisions: list[bool]) -> None:
        self.decisions = list(decisions)

    def decide(self, cond: Any) -> bool:
        return self.decisions.pop(0)


@functools.cache
def torch_module() -> Any:
    import torch

    torch.set_default_dtype(torch.float64)
    return torch


@functools.cache
def jax_modules() -> tuple[Any, Any]:
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp

    return jax, jnp


class TorchBackend(Replay):
    """The ops with torch's own functions, float64."""

    def __init__(self, decisions: list[bool]) -> None:
        super().__init__(decisions)
        self.t = torch_module()

    def tensor(self, v: Any) -> Any:
        t = self.t
        return v if isinstance(v, t.Tensor) else t.as_tensor(np.array(v, dtype=float))

    def literal(self, value: Any) -> Any:
        return self.tensor(value) if isinstance(value, list) else value

    def stack(self, items: list[Any]) -> Any:
        return self.t.stack([self.tensor(i) for i in items])

    def index(self, x: Any, entries: tuple[Any, ...]) -> Any:
        if isinstance(x, tuple):
            return x[entries[0]]
        # A gather through the flat index map NumPy computes: torch's own indexing has no
        # negative steps, and the map gives NumPy's placement of advanced axes exactly.
        x = self.tensor(x)
        flat = np.arange(x.numel()).reshape(tuple(x.shape))[np_index(entries)]
        return x.reshape(-1)[self.t.as_tensor(np.array(flat, dtype=np.int64))]

    def call(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        fn = getattr(self, "op_" + op, None)
        if fn is not None:
            return fn(*args, **kwargs)
        name = TORCH_NAMES.get(op, op)
        return getattr(self.t, name)(*[self.tensor(a) for a in args], **kwargs)

    # reductions: NumPy's axis=None / tuple / keepdims on torch's dim lists
    def _reduce(self, fn: Callable[..., Any], x: Any, axis: Any, keepdims: bool, **kw: Any) -> Any:
        x = self.tensor(x)
        axes = all_axes(x.dim(), axis)
        if not axes:  # a 0-d operand: torch reads dim=() as "every axis"; same thing here
            return fn(x, **kw) if kw else x
        return fn(x, dim=axes, keepdim=keepdims, **kw)

    def op_sum(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return self._reduce(self.t.sum, x, axis, keepdims)

    def op_mean(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return self._reduce(self.t.mean, x, axis, keepdims)

    def op_max(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return self._reduce(self.t.amax, x, axis, keepdims)

    def op_min(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return self._reduce(self.t.amin, x, axis, keepdims)

    def op_logsumexp(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return self._reduce(self.t.logsumexp, x, axis, keepdims)

    def op_var(self, x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
        return self._reduce(self.t.var, x, axis, keepdims, correction=ddof)

    def op_std(self, x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
        return self._reduce(self.t.std, x, axis, keepdims, correction=ddof)

    def op_prod(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = self.tensor(x)
        for a in reversed(all_axes(x.dim(), axis)):
            x = self.t.prod(x, dim=a, keepdim=keepdims)
        return x

    def op_norm(self, x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
        x, la = self.tensor(x), self.t.linalg
        if axis is None and ord is None:
            return la.vector_norm(x, 2, dim=tuple(range(x.dim())) or None, keepdim=keepdims)
        if (axis is None and x.dim() == 2) or (isinstance(axis, tuple) and len(axis) == 2):
            dims = (0, 1) if axis is None else axis
            return la.matrix_norm(x, "fro" if ord is None else ord, dim=dims, keepdim=keepdims)
        dim = axis if axis is not None else tuple(range(x.dim()))
        return la.vector_norm(x, 2 if ord is None else ord, dim=dim, keepdim=keepdims)

    def op_relu(self, x: Any) -> Any:
        return self.t.relu(self.tensor(x))

    def op_softplus(self, x: Any) -> Any:
        return self.t.nn.functional.softplus(self.tensor(x))

    def op_softmax(self, x: Any, axis: int = -1) -> Any:
        return self.t.softmax(self.tensor(x), dim=axis)

    def op_log_softmax(self, x: Any, axis: int = -1) -> Any:
        return self.t.log_softmax(self.tensor(x), dim=axis)

    def op_detach(self, x: Any) -> Any:
        return self.tensor(x).detach()

    def op_clip(self, x: Any, a_min: Any = None, a_max: Any = None) -> Any:
        return self.t.clamp(self.tensor(x), self.tensor(a_min), self.tensor(a_max))

    def op_floor_divide(self, a: Any, b: Any) -> Any:
        return self.t.floor(self.tensor(a) / self.tensor(b))  # gradient 0, as the contract says

    def op_where(self, c: Any, x: Any, y: Any) -> Any:
        return self.t.where(self.tensor(c).bool(), self.tensor(x), self.tensor(y))

    def op_logical_not(self, x: Any) -> Any:
        return self.t.logical_not(self.tensor(x).bool())

    def op_dot(self, a: Any, b: Any) -> Any:
        a, b = self.tensor(a), self.tensor(b)
        return a * b if a.dim() == 0 or b.dim() == 0 else self.t.matmul(a, b)

    def op_outer(self, a: Any, b: Any) -> Any:
        return self.t.outer(self.tensor(a).reshape(-1), self.tensor(b).reshape(-1))

    def op_tensordot(self, a: Any, b: Any, axes: Any = 2) -> Any:
        dims = axes if isinstance(axes, int) else [list(axes[0]), list(axes[1])]
        return self.t.tensordot(self.tensor(a), self.tensor(b), dims=dims)

    def op_einsum(self, subscripts: str, *operands: Any) -> Any:
        return self.t.einsum(subscripts, *[self.tensor(o) for o in operands])

    def op_trace(self, a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
        return self.t.diagonal(self.tensor(a), offset, axis1, axis2).sum(-1)

    def op_diag(self, v: Any, k: int = 0) -> Any:
        return self.t.diag(self.tensor(v), k)

    def op_tril(self, x: Any, k: int = 0) -> Any:
        return self.t.tril(self.tensor(x), diagonal=k)

    def op_triu(self, x: Any, k: int = 0) -> Any:
        return self.t.triu(self.tensor(x), diagonal=k)

    def op_inv(self, a: Any) -> Any:
        return self.t.linalg.inv(self.tensor(a))

    def op_det(self, a: Any) -> Any:
        return self.t.linalg.det(self.tensor(a))

    def op_slogdet(self, a: Any) -> Any:
        sign, logabs = self.t.linalg.slogdet(self.tensor(a))
        return sign, logabs

    def op_solve(self, a: Any, b: Any) -> Any:
        return self.t.linalg.solve(self.tensor(a), self.tensor(b))

    def op_cholesky(self, a: Any) -> Any:
        return self.t.linalg.cholesky(self.tensor(a))

    def op_reshape(self, x: Any, shape: Any) -> Any:
        return self.t.reshape(self.tensor(x), tuple(shape) if isinstance(shape, tuple) else shape)

    def op_transpose(self, x: Any, axes: Any = None) -> Any:
        x = self.tensor(x)
        return x.permute(*(axes if axes is not None else reversed(range(x.dim()))))

    def op_swapaxes(self, x: Any, axis1: int, axis2: int) -> Any:
        return self.t.swapaxes(self.tensor(x), axis1, axis2)

    def op_expand_dims(self, x: Any, axis: int) -> Any:
        return self.t.unsqueeze(self.tensor(x), axis)

    def op_squeeze(self, x: Any, axis: Any = None) -> Any:
        x = self.tensor(x)
        return self.t.squeeze(x) if axis is None else self.t.squeeze(x, axis)

    def op_concatenate(self, arrays: list[Any], axis: int = 0) -> Any:
        return self.t.cat([self.tensor(a) for a in arrays], dim=axis)

    def op_stack(self, arrays: list[Any], axis: int = 0) -> Any:
        return self.t.stack([self.tensor(a) for a in arrays], dim=axis)

    def op_broadcast_to(self, x: Any, shape: Any) -> Any:
        return self.t.broadcast_to(self.tensor(x), tuple(shape))

    def op_flip(self, x: Any, axis: Any = None) -> Any:
        x = self.tensor(x)
        return self.t.flip(x, dims=all_axes(x.dim(), axis))

    def op_tile(self, x: Any, reps: Any) -> Any:
        return self.t.tile(self.tensor(x), tuple(reps) if isinstance(reps, tuple) else (reps,))

    def op_repeat(self, x: Any, repeats: int, axis: Any = None) -> Any:
        x = self.tensor(x)
        if axis is None:
            return self.t.repeat_interleave(x.reshape(-1), repeats)
        return self.t.repeat_interleave(x, repeats, dim=axis)

    # constructors: constants, except a traced fill value or end point, which stays traced
    def op_zeros(self, shape: Any) -> Any:
        return self.t.zeros(shape)

    def op_ones(self, shape: Any) -> Any:
        return self.t.ones(shape)

    def op_full(self, shape: Any, fill_value: Any) -> Any:
        return self.t.zeros(shape) + self.tensor(fill_value)

    def op_zeros_like(self, x: Any) -> Any:
        return self.t.zeros_like(self.tensor(x))

    def op_ones_like(self, x: Any) -> Any:
        return self.t.ones_like(self.tensor(x))

    def op_eye(self, N: int, M: Any = None, k: int = 0) -> Any:
        return self.tensor(np.eye(N, M, k))

    def op_arange(self, start: Any, stop: Any = None, step: Any = None) -> Any:
        return self.tensor(np.arange(start, stop, step, dtype=float))

    def op_linspace(self, start: Any, stop: Any, num: int = 50) -> Any:
        start, stop = self.tensor(start), self.tensor(stop)
        if num == 1:
            return start.reshape(1)
        steps = self.t.arange(num, dtype=self.t.float64) / (num - 1)
        out = start + (stop - start) * steps
        return self.t.cat([out[:-1], stop.reshape(1)])


TORCH_NAMES = {
    "power": "pow",
    "arctan2": "atan2",
    "less": "lt",
    "less_equal": "le",
    "greater": "gt",
    "greater_equal": "ge",
    "equal": "eq",
    "not_equal": "ne",
}


class JaxBackend(Replay):
    """The ops with jax.numpy, float64 (NumPy's own semantics, so few special cases)."""

    def __init__(self, decisions: list[bool]) -> None:
        super().__init__(decisions)
        self.jax, self.jnp = jax_modules()

    def literal(self, value: Any) -> Any:
        return self.jnp.asarray(value, dtype=float) if isinstance(value, list) else value

    def stack(self, items: list[Any]) -> Any:
        return self.jnp.stack([self.jnp.asarray(i, dtype=float) for i in items])

    def index(self, x: Any, entries: tuple[Any, ...]) -> Any:
        if isinstance(x, tuple):
            return x[entries[0]]
        return self.jnp.asarray(x)[np_index(entries)]

    def call(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        jax, jnp = self.jax, self.jnp
        special: dict[str, Callable[..., Any]] = {
            "relu": jax.nn.relu,
            "sigmoid": jax.nn.sigmoid,
            "softplus": jax.nn.softplus,
            "softmax": jax.nn.softmax,
            "log_softmax": jax.nn.log_softmax,
            "logsumexp": jax.scipy.special.logsumexp,
            "detach": jax.lax.stop_gradient,
            "norm": jnp.linalg.norm,
            "inv": jnp.linalg.inv,
            "det": jnp.linalg.det,
            "slogdet": lambda a: tuple(jnp.linalg.slogdet(a)),
            "solve": jnp.linalg.solve,
            "cholesky": jnp.linalg.cholesky,
            "floor_divide": lambda a, b: jnp.floor(jnp.divide(a, b)),
            "remainder": lambda a, b: a - b * jax.lax.stop_gradient(jnp.floor(jnp.divide(a, b))),
            "linspace": lambda start, stop, num=50: jnp.linspace(start, stop, num),
            "clip": lambda x, a_min=None, a_max=None: jnp.clip(x, a_min, a_max),
            "full": lambda shape, fill_value: jnp.full(shape, fill_value, dtype=float),
            "arange": lambda start, stop=None, step=None: jnp.arange(
                start, stop, step, dtype=float
            ),
            "eye": lambda N, M=None, k=0: jnp.eye(N, M, k),
            "zeros": lambda shape: jnp.zeros(shape),
            "ones": lambda shape: jnp.ones(shape),
        }
        fn = special.get(op) or getattr(jnp, op)
        return fn(*args, **kwargs)
