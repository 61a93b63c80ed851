"""Every differentiable op called with its arguments as keywords gives the value and the
derivatives (VJP, JVP, both Jacobian modes, Hessian) of the positional call. The rules take
array arguments positionally, so ``clip(x, a_min=..., a_max=...)`` once computed its value
and then crashed in its derivative."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError
from engine.registry import ARRAY, ARRAYS, OPS, VARARGS

# op -> (the arrays it differentiates, as shapes or builders; its static arguments)
_SPD = np.array([[2.0, 0.3, 0.1], [0.3, 1.5, -0.2], [0.1, -0.2, 1.8]])
SAMPLES: dict[str, tuple[list[Any], dict[str, Any]]] = {
    "reshape": ([(2, 3)], {"shape": (3, 2)}),
    "astype": ([(2, 3)], {"dtype": "float64"}),
    "angle": ([(3,)], {"deg": True}),
    "eigvals": ([lambda: np.diag([1.0, 2.0, 3.5]) + 0.1], {}),
    "fft": ([(2, 4)], {"n": 5, "axis": 0, "norm": "ortho"}),
    "ifft": ([(2, 4)], {"n": 3, "axis": -1, "norm": "forward"}),
    "rfft": ([(2, 4)], {"n": 6, "axis": 0, "norm": "ortho"}),
    "irfft": ([(2, 4)], {"n": 5, "axis": -1, "norm": "backward"}),
    "fft2": ([(2, 4)], {"s": (3, 3), "axes": (0, 1), "norm": "ortho"}),
    "ifft2": ([(2, 4)], {"s": (3, 5), "axes": (1, 0), "norm": "forward"}),
    "rfft2": ([(2, 4)], {"s": (3, 4), "axes": (0, 1), "norm": "ortho"}),
    "irfft2": ([(2, 4)], {"s": (3, 5), "axes": (0, 1), "norm": "ortho"}),
    "fftn": ([(2, 4)], {"s": (3,), "axes": (0,), "norm": "ortho"}),
    "ifftn": ([(2, 4)], {"s": (2, 2), "axes": (1, 0), "norm": "backward"}),
    "rfftn": ([(2, 4)], {"s": (3, 2), "axes": (1, 0), "norm": "forward"}),
    "irfftn": ([(2, 4)], {"s": (2, 6), "axes": (0, 1), "norm": "ortho"}),
    "fftshift": ([(2, 3)], {"axes": (0,)}),
    "ifftshift": ([(2, 3)], {"axes": 1}),
    "transpose": ([(2, 3, 2)], {"axes": (1, 2, 0)}),
    "swapaxes": ([(2, 3)], {"axis1": 0, "axis2": 1}),
    "flip": ([(2, 3)], {"axis": 1}),
    "expand_dims": ([(2, 3)], {"axis": 1}),
    "squeeze": ([(1, 3)], {"axis": 0}),
    "broadcast_to": ([(3,)], {"shape": (2, 3)}),
    "tile": ([(3,)], {"reps": (2,)}),
    "repeat": ([(3,)], {"repeats": 2, "axis": 0}),
    "concatenate": ([[(2, 3), (1, 3)]], {"axis": 0}),
    "stack": ([[(3,), (3,)]], {"axis": 1}),
    "getitem": ([(3, 4)], {"index": ([2, 0], slice(None, None, -1))}),
    "clip": ([(2, 3), lambda: -0.4 * np.ones(3), lambda: np.full((2, 3), 0.5)], {}),
    "where": ([lambda: np.array([True, False, True]), (3,), (2, 3)], {}),
    "matmul": ([(2, 3), (3,)], {}),
    "dot": ([(2, 3), (3, 2)], {}),
    "inner": ([(3,), (2, 3)], {}),
    "outer": ([(3,), (2,)], {}),
    "tensordot": ([(2, 3), (3, 2)], {"axes": 1}),
    "einsum": ([[(2, 3), (3,)]], {"subscripts": "ij,j->i"}),
    "trace": ([(3, 3)], {"offset": 1, "axis1": 1, "axis2": 0}),
    "diag": ([(3,)], {"k": 1}),
    "tril": ([(3, 4)], {"k": 1}),
    "triu": ([(2, 3, 3)], {"k": -1}),
    "inv": ([lambda: _SPD], {}),
    "det": ([lambda: _SPD], {}),
    "slogdet": ([lambda: _SPD], {}),
    "solve": ([lambda: _SPD, (3,)], {}),
    "cholesky": ([lambda: _SPD], {}),
    "sum": ([(2, 3)], {"axis": 1, "keepdims": True}),
    "mean": ([(2, 3)], {"axis": 0, "keepdims": False}),
    "prod": ([(2, 3)], {"axis": 1, "keepdims": True}),
    "max": ([(2, 3)], {"axis": 1, "keepdims": True}),
    "min": ([(2, 3)], {"axis": 0, "keepdims": False}),
    "var": ([(2, 3)], {"axis": 1, "keepdims": True, "ddof": 1}),
    "std": ([(2, 3)], {"axis": 1, "keepdims": False, "ddof": 1}),
    "logsumexp": ([(2, 3), lambda: np.array([0.5, 2.0, 1.5])], {"axis": 1, "keepdims": True}),
    "norm": ([(2, 3)], {"ord": 3, "axis": 1, "keepdims": True}),
    "softmax": ([(2, 3)], {"axis": 0}),
    "full": ([()], {"shape": (2, 3)}),
    "linspace": ([(), ()], {"num": 5}),
    "log_softmax": ([(2, 3)], {"axis": 0}),
    # the ordering family: index arguments and q are float arrays here (selections, and q
    # is differentiated)
    "cumsum": ([(2, 3)], {"axis": 1}),
    "cumprod": ([(2, 3)], {"axis": 0}),
    "diff": ([(2, 3), (2, 1), ()], {"n": 2, "axis": 1}),
    "sort": ([(2, 3)], {"axis": 0, "kind": "stable"}),
    "take": ([(2, 3), lambda: np.array([2.0, 0.0, 2.0])], {"axis": 1, "mode": "raise"}),
    "take_along_axis": ([(2, 3), lambda: np.array([[2.0, 0.0], [1.0, 1.0]])], {"axis": 1}),
    "average": (
        [(2, 3), lambda: np.array([0.5, 1.0, 2.0])],
        {"axis": 1, "returned": True, "keepdims": True},
    ),
    "median": ([(2, 3)], {"axis": 1, "out": None, "overwrite_input": False, "keepdims": True}),
    "quantile": (
        [(2, 3), lambda: np.array([0.25, 0.5])],
        {"axis": 1, "out": None, "overwrite_input": False, "method": "linear", "keepdims": True},
    ),
    "percentile": (
        [(2, 3), lambda: np.array([25.0, 60.0])],
        {"axis": 0, "out": None, "overwrite_input": False, "method": "linear", "keepdims": False},
    ),
    "nansum": ([(2, 3)], {"axis": 0, "keepdims": True}),
    "nanmean": ([(2, 3)], {"axis": 1, "keepdims": False}),
    # issue 15's linear algebra
    "eigh": ([lambda: _SPD], {"UPLO": "U"}),
    "eigvalsh": ([lambda: _SPD], {"UPLO": "L"}),
    "svd": ([lambda: _SPD[:, :2]], {"full_matrices": True, "compute_uv": True}),
    "qr": ([lambda: _SPD[:, :2]], {"mode": "complete"}),
    "pinv": ([lambda: _SPD[:2]], {"rcond": 1e-10}),
    "lstsq": ([lambda: _SPD[:, :2], (3,)], {"rcond": None}),
    "matrix_power": ([lambda: _SPD], {"n": 3}),
    "expm": ([lambda: _SPD / 4], {}),
    "kron": ([(2,), (2, 2)], {}),
    "cross": ([(2, 3), (3, 1)], {"axisa": -1, "axisb": 0, "axisc": 0}),
    # the special helper's ops (ufuncs, scipy.special): integer arrays stay constants
    "round": ([(2, 3)], {"decimals": 1}),
    "nan_to_num": ([(2, 3)], {"nan": 1.0, "posinf": 2.0, "neginf": -2.0}),
    "multigammaln": ([lambda: np.array([[4.2, 4.5, 5.0]])], {"d": 3}),
    "arccosh": ([lambda: np.array([1.2, 1.5, 2.5])], {}),
    "polygamma": ([lambda: np.array([0, 1, 2]), (2, 3)], {}),
    **{
        name: ([lambda: np.array([1, 2, 3]), (2, 3)], {})
        for name in ("gammainc", "gammaincc", "iv", "ive", "jv", "yv")
    },
    "betainc": ([lambda: np.array([1, 2, 3]), lambda: np.array([2]), (2, 3)], {}),
    # building and reshaping (engine/ops/building.py)
    "array": ([[(3,), (3,)]], {"dtype": "float64", "copy": True, "ndmin": 3}),
    "asarray": ([(2, 3)], {"dtype": "float64"}),
    "ravel": ([(2, 3)], {"order": "F"}),
    "moveaxis": ([(2, 3, 4)], {"source": 0, "destination": -1}),
    "rollaxis": ([(2, 3, 4)], {"axis": 2, "start": 1}),
    "roll": ([(2, 3)], {"shift": (1, 2), "axis": (0, 1)}),
    "pad": ([(2, 3)], {"pad_width": ((1, 2), (0, 1)), "mode": "reflect"}),
    "atleast_1d": ([[(2,), (1, 2)]], {}),
    "atleast_2d": ([[(2,), (1, 2)]], {}),
    "atleast_3d": ([[(2,), (1, 2)]], {}),
    "vstack": ([[(3,), (3,)]], {}),
    "row_stack": ([[(3,), (3,)]], {}),
    "hstack": ([[(3,), (2,)]], {}),
    "dstack": ([[(2, 3), (2, 3)]], {}),
    "column_stack": ([[(3,), (3, 2)]], {}),
    "append": ([(2, 3), (1, 3)], {"axis": 0}),
    "split": ([(4, 2)], {"indices_or_sections": 2, "axis": 0}),
    "array_split": ([(2, 6)], {"indices_or_sections": 3, "axis": 1}),
    "hsplit": ([(2, 4)], {"indices_or_sections": 2}),
    "vsplit": ([(4, 2)], {"indices_or_sections": [2]}),
    "dsplit": ([(1, 2, 4)], {"indices_or_sections": 2}),
    "meshgrid": ([[(2,), (3,)]], {"copy": True, "sparse": False, "indexing": "ij"}),
    "rot90": ([(2, 3, 2)], {"k": 3, "axes": (2, 1)}),
    "diagonal": ([(2, 3, 4)], {"offset": -1, "axis1": 2, "axis2": 1}),
}
POSITIVE = {"sqrt", "log", "log1p", "log2", "log10", "power", "divide", "arcsin", "arccos"}
POSITIVE |= {"gamma", "gammaln", "rgamma", "digamma", "beta", "betaln", "logit", "erfcinv"}
POSITIVE |= {"ndtri", "polygamma", "gammainc", "gammaincc", "betainc", "y0", "y1", "yv"}
POSITIVE |= {"float_power", "xlogy", "cbrt", "reciprocal", "fmod", "mod", "i0e", "i1e", "ive"}


def _elementwise(name: str) -> tuple[list[Any], dict[str, Any]]:
    n = sum(p.kind == ARRAY for p in OPS[name].params)
    return [(2, 3)] * n, {}


def _sample(name: str) -> tuple[list[Any], dict[str, Any]]:
    return SAMPLES[name] if name in SAMPLES else _elementwise(name)


def _ops() -> list[str]:
    names = {op.name for op in OPS.values() if op.differentiable and not op.name.startswith("_")}
    # eig's eigenvectors have no derivative (its eigenvalues are eigvals, tested here)
    names.discard("eig")
    return sorted(names)


def _inputs(name: str, rng: np.random.Generator) -> list[Any]:
    """The op's array arguments (a list of arrays for a sequence argument)."""
    lo, hi = (0.3, 0.9) if name in POSITIVE else (-1.0, 1.0)

    def make(spec: Any) -> Any:
        if callable(spec):
            return spec()
        if isinstance(spec, list):
            return [make(s) for s in spec]
        return rng.uniform(lo, hi, size=spec)

    return [make(s) for s in _sample(name)[0]]


def _calls(name: str) -> tuple[Any, Any]:
    """``(positional(*arrays), by_keyword(*arrays))`` for op ``name``."""
    op = OPS[name]
    statics = _sample(name)[1]
    params = op.params

    def positional(*arrays: Any) -> Any:
        args: list[Any] = []
        keyword_only: dict[str, Any] = {}  # statics after *varargs (meshgrid's indexing)
        it = iter(arrays)
        for p in params:
            if p.kind == VARARGS:
                args.extend(next(it))
            elif p.kind in (ARRAY, ARRAYS):
                args.append(next(it))
            elif p.name in statics and any(q.kind == VARARGS for q in params[: params.index(p)]):
                keyword_only[p.name] = statics[p.name]
            elif p.name in statics:
                args.append(statics[p.name])
            else:
                break
        return op(*args, **keyword_only)

    def by_keyword(*arrays: Any) -> Any:
        it = iter(arrays)
        kwargs = {p.name: next(it) for p in params if p.kind != "static"}
        kwargs.update(statics)
        return op(**kwargs)

    return positional, by_keyword


def _flat(out: Any) -> Any:
    """One real array of an op's output (slogdet, svd... answer several, of different shapes;
    a complex output is its real and imaginary parts, so that every transform, Hessians too,
    applies)."""
    if isinstance(out, tuple):
        out = anp.concatenate([anp.reshape(o, (-1,)) for o in out])
    if np.iscomplexobj(out):
        return anp.stack([anp.real(out), anp.imag(out)])
    return out


def _differentiated(name: str, rng: np.random.Generator) -> tuple[list[np.ndarray], Any]:
    """Flat float inputs (a sequence argument spread out) and a rebuilder of the call's
    arguments from them; ``where``'s condition stays a constant."""
    xs = _inputs(name, rng)
    flat: list[np.ndarray] = []
    layout: list[Any] = []
    for x in xs:
        if isinstance(x, list):
            layout.append(len(x))
            flat.extend(x)
        elif x.dtype.kind in "bi":  # a condition, an integer order: constants
            layout.append(x)
        else:
            layout.append(None)
            flat.append(x)

    def rebuild(*vals: Any) -> list[Any]:
        it = iter(vals)
        out: list[Any] = []
        for item in layout:
            if item is None:
                out.append(next(it))
            elif isinstance(item, int):
                out.append([next(it) for _ in range(item)])
            else:
                out.append(item)
        return out

    return flat, rebuild


def test_every_differentiable_op_has_a_sample() -> None:
    """The table below covers every public differentiable op (a new op needs a row)."""
    missing = [
        n for n in _ops() if n not in SAMPLES and any(p.kind != ARRAY for p in OPS[n].params)
    ]
    assert not missing


@pytest.mark.parametrize("name", _ops())
def test_keywords_give_the_positional_derivatives(name: str) -> None:
    rng = np.random.default_rng(len(name))
    xs, rebuild = _differentiated(name, rng)
    positional, by_keyword = _calls(name)
    f_pos = lambda *v: _flat(positional(*rebuild(*v)))  # noqa: E731
    f_kw = lambda *v: _flat(by_keyword(*rebuild(*v)))  # noqa: E731
    nums = tuple(range(len(xs)))
    value = np.asarray(f_pos(*xs))
    np.testing.assert_array_equal(f_kw(*xs), value)
    u = rng.normal(size=value.shape)
    vs = [rng.normal(size=x.shape) for x in xs]
    _close(ad.vjp(f_kw, *xs)[1](u), ad.vjp(f_pos, *xs)[1](u))
    _close(ad.jvp(f_kw, xs, vs)[1], ad.jvp(f_pos, xs, vs)[1])
    for mode in ("forward", "reverse"):
        _close(ad.jacobian(f_kw, nums, mode=mode)(*xs), ad.jacobian(f_pos, nums, mode=mode)(*xs))

    def scalar(f: Any) -> Any:
        return lambda *v: anp.sum(anp.sin(f(*v)) * u)

    _close(ad.hessian(scalar(f_kw), nums)(*xs), ad.hessian(scalar(f_pos), nums)(*xs))


def _close(a: Any, b: Any) -> None:
    """Equal up to rounding, blocks of tuples compared one by one."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y)
        return
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_clip_with_keywords_differentiates() -> None:
    """The issue's case: the gradient passes inside [a_min, a_max]."""
    x = np.array([0.1, 1.0, -1.0, 0.5])
    g = ad.grad(lambda v: anp.sum(anp.clip(v, a_min=-0.5, a_max=0.5)))(x)
    np.testing.assert_array_equal(g, [1.0, 0.0, 0.0, 1.0])


def test_a_missing_array_argument_is_a_typed_error() -> None:
    with pytest.raises(AutodiffError, match="a_min"):
        anp.clip(np.ones(3), a_max=0.5)
