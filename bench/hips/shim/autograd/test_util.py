"""autograd.test_util over the engine: ``check_grads`` by central finite differences.

As autograd's own: for a random direction ``v`` the engine's forward-mode JVP must match the
numerical one ``(f(x + v eps/2) - f(x - v eps/2)) / eps`` (fwd), and for a random cotangent
``u`` the pairing of the engine's VJP with ``v`` must match the pairing of ``u`` with the
numerical JVP (rev); to ``order`` by recursing on the engine's JVP/VJP as a function of
(x, v) / (x, u). Same tolerances (1e-6 absolute or relative) and step (1e-6).

Complex values: the engine follows JAX (its VJP is the transpose under the bilinear pairing
``Re(sum(a * b))``; autograd's is under ``Re(vdot(a, b))``, the conjugate), so the pairing here
is the bilinear one: the check is the same check in the engine's convention.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

import engine as _ad
from autograd._shim import ShimUnsupported
from autograd.wrap_util import get_name, unary_to_nary

TOL = 1e-6
RTOL = 1e-6
EPS = 1e-6


def scalar_close(a: Any, b: Any) -> bool:
    return abs(a - b) < TOL or abs(a - b) / abs(a + b) < RTOL


def _flatten(x: Any) -> tuple[list[np.ndarray], Any]:
    """The leaves (float/complex arrays) of nested tuples and lists, and a function that
    rebuilds the structure from new leaves (autograd differentiates such containers)."""
    if isinstance(x, dict):
        raise ShimUnsupported("check_grads over a dict argument")
    if isinstance(x, (tuple, list)):
        parts = [_flatten(xi) for xi in x]
        leaves = [leaf for part in parts for leaf in part[0]]
        kind = type(x)

        def rebuild(new: list[Any]) -> Any:
            out, at = [], 0
            for part_leaves, part_rebuild in parts:
                out.append(part_rebuild(new[at : at + len(part_leaves)]))
                at += len(part_leaves)
            return kind(out)

        return leaves, rebuild
    return [_leaf(x)], lambda new: new[0]


def _is_leaf_list(x: Any) -> bool:
    return isinstance(x, list) and all(np.isscalar(xi) for xi in x)


def _leaf(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    return a


def _outputs(y: Any) -> list[np.ndarray]:
    if isinstance(y, dict) or (isinstance(y, list) and not _is_leaf_list(y)):
        raise ShimUnsupported("a function returning a container")
    if isinstance(y, tuple):
        return [np.asarray(_ad.transforms.as_array(o)) for o in y]
    return [np.asarray(_ad.transforms.as_array(y))]


def _randn(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    r = np.asarray(np.random.randn(*a.shape))
    if a.dtype.kind == "c":
        r = r + 1j * np.asarray(np.random.randn(*a.shape))
    return r.astype(a.dtype) if a.dtype.kind in "fc" else r


def _pair(a: list[Any], b: list[Any]) -> float:
    """The bilinear real pairing of two lists of arrays (see the module docstring)."""
    return float(
        sum(np.real(np.sum(np.asarray(x) * np.asarray(y))) for x, y in zip(a, b, strict=True))
    )


def _numerical_jvp(F: Any, xs: list[np.ndarray], vs: list[np.ndarray]) -> list[np.ndarray]:
    plus = _outputs(F(*[x + v * (EPS / 2) for x, v in zip(xs, vs, strict=True)]))
    minus = _outputs(F(*[x - v * (EPS / 2) for x, v in zip(xs, vs, strict=True)]))
    return [(p - m) / EPS for p, m in zip(plus, minus, strict=True)]


def _as_list(t: Any, n: int) -> list[Any]:
    return list(t) if n > 1 or isinstance(t, tuple) else [t]


def _check_jvp(F: Any, xs: list[np.ndarray]) -> None:
    vs = [_randn(x) for x in xs]
    value, tangent = _ad.jvp(F, xs, vs)
    exact = _outputs(tangent) if isinstance(tangent, tuple) else [np.asarray(tangent)]
    numeric = _numerical_jvp(F, xs, vs)
    probe = [_randn(n) for n in numeric]
    a, b = _pair(probe, exact), _pair(probe, numeric)
    assert scalar_close(a, b), (
        f"Derivative (JVP) check of {get_name(F)} failed:\nanalytic: {a}\nnumeric:  {b}"
    )


def _check_vjp(F: Any, xs: list[np.ndarray]) -> None:
    value, pull = _ad.vjp(F, *xs)
    ys = _outputs(value)
    us = [_randn(y) for y in ys]
    vs = [_randn(x) for x in xs]
    cts = pull(tuple(us) if isinstance(value, tuple) else us[0])
    exact = _pair(list(cts), vs)
    numeric = _pair(us, _numerical_jvp(F, xs, vs))
    assert scalar_close(numeric, exact), (
        f"Derivative (VJP) check of {get_name(F)} failed:\nanalytic: {exact}\nnumeric:  {numeric}"
    )


def _check(F: Any, xs: list[np.ndarray], modes: Any, order: int) -> None:
    n = len(xs)
    if "fwd" in modes:
        _check_jvp(F, xs)
        if order > 1:
            vs = [_randn(x) for x in xs]

            def jvp_of(*a: Any) -> Any:
                return _ad.jvp(F, list(a[:n]), list(a[n:]))[1]

            jvp_of.__name__ = f"jvp_{get_name(F)}"
            _check(jvp_of, xs + vs, modes, order - 1)
    if "rev" in modes:
        _check_vjp(F, xs)
        if order > 1:
            value = F(*xs)
            is_tuple = isinstance(value, tuple)
            us = [_randn(y) for y in _outputs(value)]

            def vjp_of(*a: Any) -> Any:
                pull = _ad.vjp(F, *a[:n])[1]
                cts = pull(tuple(a[n:]) if is_tuple else a[n])
                return cts if n > 1 else cts[0]

            vjp_of.__name__ = f"vjp_{get_name(F)}"
            _check(vjp_of, xs + us, modes, order - 1)


@unary_to_nary
def check_grads(f: Any, x: Any, modes: Any = ("fwd", "rev"), order: int = 2) -> None:
    assert all(m in ("fwd", "rev") for m in modes)
    xs, rebuild = _flatten(x)
    F = lambda *a: f(rebuild(list(a)))  # noqa: E731
    F.__name__ = get_name(f)
    _check(F, xs, modes, order)


def _leaves(y: Any) -> list[np.ndarray]:
    if isinstance(y, (tuple, list)) and not _is_leaf_list(y):
        return [np.asarray(_ad.transforms.as_array(o)) for o in y]
    if isinstance(y, (tuple, list)):  # a list of scalars: as autograd's vspace, one per entry
        return [np.asarray(o) for o in y]
    return _outputs(y)


def check_equivalent(x: Any, y: Any) -> None:
    xs, ys = _leaves(x), _leaves(y)
    assert [a.shape for a in xs] == [b.shape for b in ys], f"shape mismatch:\nx: {x}\ny: {y}"
    v = [_randn(a) for a in xs]
    assert scalar_close(_pair(v, xs), _pair(v, ys)), f"Value mismatch:\nx: {x}\ny: {y}"


def combo_check(fun: Any, *args: Any, **kwargs: Any) -> Any:
    """Every combination of the given args and kwargs, as autograd's."""
    _check_grads = lambda f: check_grads(f, *args, **kwargs)  # noqa: E731

    def _combo_check(*args: Any, **kwargs: Any) -> None:
        kwarg_key_vals = [[(k, x) for x in xs] for k, xs in kwargs.items()]
        for _args in product(*args):
            for _kwargs in product(*kwarg_key_vals):
                _check_grads(fun)(*_args, **dict(_kwargs))

    return _combo_check
