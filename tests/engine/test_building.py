"""The building and reshaping ops beyond the op table: their shape functions (which the
size limit trusts) against the results, the forms autodiff users write (HIPS autograd's
tests), dtypes, and refusals that name the op the user called."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError, ShapeError, SizeLimitError, ValueDomainError
from engine.lang import compile_source
from engine.registry import OPS
from engine.shapes import check_size

R = np.random.default_rng(0).normal

# (op, args, kwargs): the shape function must give each result's shape (several results:
# their total size) without computing it
SHAPE_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("array", ([R(size=3), R(size=3)],), {"ndmin": 4}),
    ("asarray", ([[1.0, 2.0], [3.0, 4.0]],), {}),
    ("ravel", (R(size=(2, 0, 3)),), {"order": "F"}),
    ("moveaxis", (R(size=(2, 3, 4, 5)),), {"source": (0, -1), "destination": (2, 0)}),
    ("rollaxis", (R(size=(2, 3, 4)), -1, 0), {}),
    ("roll", (R(size=(2, 3)), (1, 2), (0, 0)), {}),
    ("pad", (R(size=(2, 3)), {1: (3, 4)}), {"mode": "wrap"}),
    ("pad", (R(size=(0, 3)), ((2, 1), (0, 0))), {}),
    ("atleast_3d", (R(size=(4,)), R(size=(2, 2)), 1.0), {}),
    ("vstack", (R(size=(3, 2, 2)),), {}),
    ("hstack", ([R(size=(2,)), R(size=(0,))],), {}),
    ("dstack", ([R(size=(2, 3)), R(size=(2, 3, 4))],), {}),
    ("column_stack", (R(size=(4, 3)),), {}),
    ("append", (R(size=(2, 2)), 1.0), {}),
    ("split", (R(size=(4, 6)), [1, 5, 2]), {"axis": 1}),
    ("array_split", (R(size=(5,)), 7), {}),
    ("hsplit", (R(size=(2, 4)), [3]), {}),
    ("meshgrid", (R(size=3), R(size=(2, 2)), R(size=1)), {"sparse": True}),
    ("meshgrid", (R(size=3), R(size=2)), {}),
    ("tril_indices", (5, 2, 3), {}),
    ("triu_indices", (6, -2), {}),
    ("diag_indices_from", (R(size=(3, 3, 3)),), {}),
]


def _total(out: Any) -> int:
    if isinstance(out, tuple):
        return sum(np.size(o) for o in out)
    return int(np.size(out))


@pytest.mark.parametrize(("name", "args", "kwargs"), SHAPE_CALLS, ids=[c[0] for c in SHAPE_CALLS])
def test_shape_functions_match_the_results(name: str, args: Any, kwargs: Any) -> None:
    out = OPS[name](*args, **kwargs)
    shape = OPS[name].shape(*args, **kwargs)
    if isinstance(out, tuple) and name not in ("tril_indices", "triu_indices"):
        assert int(np.prod(shape)) == _total(out)
    elif isinstance(out, tuple):  # index arrays: (how many arrays, their length)
        assert shape == (len(out), np.size(out[0]))
    else:
        assert shape == np.shape(out)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("pad", (np.ones((3, 3)), 10**5)),
        ("pad", (np.ones((3, 0)), ((0, 0), (10**12, 0)))),  # huge, and empty: no work
        ("meshgrid", (np.ones(1000), np.ones(1000), np.ones(1000))),
        ("tril_indices", (10**6,)),
        ("diag_indices", (10**9,)),
        ("append", (np.ones(3), np.broadcast_to(np.ones(1), (10**8,)))),
        ("vstack", ([np.broadcast_to(np.ones(1), (10**8,))] * 2,)),
        ("array", ([np.broadcast_to(np.ones(1), (10**7,))] * 3,)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_size_limit_holds_from_shapes(name: str, args: Any) -> None:
    """A result over the limit is refused by the shape function; the one that is empty
    is computed without touching its huge axis."""
    op = OPS[name]
    try:
        shape = check_size(op, args, {}, 10_000_000)
    except SizeLimitError as err:
        assert name in str(err)
        return
    assert int(np.prod(shape)) == 0
    assert _total(op(*args)) == 0


def test_a_huge_pad_is_refused_by_the_language_before_memory() -> None:
    program = compile_source("sum(pad(x, 10**7, mode='reflect'))")
    with pytest.raises(SizeLimitError, match="pad: the result would have shape"):
        program.run({"x": np.ones(3)}, max_elements=1_000_000)


# --- the forms of HIPS autograd's tests --------------------------------------------------


def _check(fn: Any, *xs: Any) -> None:
    """Reverse and forward mode against central differences, and a second order."""
    xs = [np.asarray(x, float) for x in xs]
    nums = tuple(range(len(xs)))
    jac_r = ad.jacobian(fn, nums, mode="reverse")(*xs)
    jac_f = ad.jacobian(fn, nums, mode="forward")(*xs)
    for k, x in enumerate(xs):
        eps = 1e-6
        cols = []
        for j in range(x.size):
            e = np.zeros(x.size)
            e[j] = eps
            plus = [*xs[:k], x + e.reshape(x.shape), *xs[k + 1 :]]
            minus = [*xs[:k], x - e.reshape(x.shape), *xs[k + 1 :]]
            cols.append((np.asarray(fn(*plus)) - np.asarray(fn(*minus))) / (2 * eps))
        fd = np.stack(cols, axis=-1).reshape(np.shape(jac_r[k]))
        np.testing.assert_allclose(jac_r[k], fd, atol=1e-7)
        np.testing.assert_allclose(jac_f[k], fd, atol=1e-7)
    ad.hessian(lambda *a: anp.sum(anp.sin(fn(*a))), nums)(*xs)  # runs to second order


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: anp.array([x, x * 1.0, x + 2.5]),
        lambda x: anp.array([[x, x * 1.0, x + 2.5], [x**2, x, x / 2.0]]),
        lambda x: anp.array(x),
        lambda x: anp.max(anp.array([[x, x], [x, 0.5]]), axis=1),
        lambda x: anp.append(anp.array([1.0, 2.0, 3.0]), x),
        lambda x: anp.append([1.0, x, 3.0], 4.0),
        lambda x: anp.atleast_3d(x),
    ],
)
def test_autograd_forms_of_a_scalar(fn: Any) -> None:
    _check(fn, 3.0)


@pytest.mark.parametrize(
    ("fn", "shape"),
    [
        (lambda x: anp.array([x, x]), (3, 2)),
        (lambda x: anp.array([[2 * x, x + 1], [x, x]]), (3, 2)),
        (lambda x: anp.split(x, 2)[0], (10,)),
        (lambda x: anp.roll(x, 2, axis=1), (4, 5)),
        (lambda x: anp.ravel(x), (5, 6, 4)),
        (lambda x: anp.vstack(x), (2, 3, 4)),
        (lambda x: anp.hstack((x, x)), (3, 2)),
        (lambda x: anp.column_stack(x), (2,)),
        (lambda x: anp.rollaxis(x, 1, 3), (2, 3, 4)),
        (lambda x: anp.concatenate(anp.array_split(x, [3, 5], axis=1)[::-1], axis=1), (7, 7)),
        (lambda x: anp.dsplit(x, [1, 2])[2], (4, 4, 4)),
        (lambda x: anp.expand_dims(x, 2), (5, 1, 4)),
        (lambda x: anp.squeeze(x), (5, 1, 4)),
    ],
)
def test_autograd_forms_of_an_array(fn: Any, shape: tuple[int, ...]) -> None:
    _check(fn, np.random.default_rng(1).normal(size=shape))


# --- dtypes and errors ---------------------------------------------------------------------


def test_array_dtype_casts_differentiably() -> None:
    x = np.arange(3.0)
    value, vjp = ad.vjp(lambda v: anp.array(v, dtype="float32") * 2, x)
    assert value.dtype == np.float32
    (g,) = vjp(np.ones(3, np.float32))
    assert g.dtype == np.float64  # a gradient has its input's dtype
    np.testing.assert_array_equal(g, [2.0, 2.0, 2.0])
    x32 = x.astype(np.float32)
    out = ad.grad(lambda v: anp.sum(anp.pad(v, 2, mode="reflect")))(x32)
    assert out.dtype == np.float32


def test_integer_sequences_become_float64() -> None:
    assert anp.array([1, 2, 3]).dtype == np.float64
    assert anp.asarray([[True, False]]).dtype == np.float64


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda: anp.vstack([np.ones(2), np.ones(3)]), ShapeError, "vstack: the arrays' shapes"),
        (lambda: anp.array([np.ones(2), np.ones(3)]), ShapeError, "array: the sequence is not"),
        (lambda: anp.split(np.ones(5), 2), ValueDomainError, "split: an axis of length 5"),
        (lambda: anp.pad(np.ones(2), 1, mode="mean"), ValueDomainError, "pad: mode must be"),
        (lambda: anp.pad(np.ones(2), ((1, 2, 3),)), ValueDomainError, "pad: pad_width of shape"),
        (lambda: anp.meshgrid(np.ones(2), indexing="yx"), ValueDomainError, "meshgrid: indexing"),
        (lambda: anp.moveaxis(np.ones((2, 2)), 0, (0, 1)), ValueDomainError, "same number"),
        (lambda: anp.append(np.ones((2, 2)), np.ones(2), axis=0), ShapeError, "append:"),
        (lambda: anp.tril_indices_from(np.ones(3)), ValueDomainError, "must be 2-D"),
        (lambda: anp.array("abc"), ValueDomainError, "array: expected an array"),
        (lambda: anp.ravel(np.ones(2), order="K"), ValueDomainError, "ravel: order"),
    ],
)
def test_errors_name_the_op_called(call: Any, error: type[AutodiffError], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        call()


def test_language_forms() -> None:
    x = np.arange(9.0).reshape(3, 3)
    run = lambda src: compile_source(src).run({"x": x})  # noqa: E731
    np.testing.assert_array_equal(run("x[triu_indices(3, 1)]"), x[np.triu_indices(3, 1)])
    np.testing.assert_array_equal(run("x[diag_indices_from(x)] * 2"), 2 * np.diag(x))
    np.testing.assert_array_equal(run("a, b = split(x, [1])\nreturn b"), x[1:])
    pieces = run("split(ravel(x), 3)[1:]")
    assert isinstance(pieces, tuple) and len(pieces) == 2
    np.testing.assert_array_equal(pieces[1], [6.0, 7.0, 8.0])
    np.testing.assert_array_equal(
        run("pad(x, ((0, 0), (1, 0)), mode='wrap')"), np.pad(x, ((0, 0), (1, 0)), mode="wrap")
    )
    grid = run("meshgrid(x[0], x[1], indexing='ij', sparse=True)")
    assert [g.shape for g in grid] == [(3, 1), (1, 3)]
    assert run("array(x, dtype='float32')").dtype == np.float32
