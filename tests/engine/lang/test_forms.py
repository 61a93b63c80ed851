"""The NumPy spellings of issue 15: array attributes, methods that mirror ops, module
prefixes, ``a if c else b``, ``len``, ``range`` with traced bounds, the builtins ``abs``,
``min``/``max``, ``round`` and ``sum`` of a list, boolean masks, ``where(c)`` and the
nonzero family, checked for the value against NumPy written the same way, and for the
gradient against central finite differences in float64, in reverse and forward mode and
to second order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine as ad
import engine.numpy as anp
from engine.errors import AutodiffError, LanguageError, UnknownOpError
from engine.lang import compile_graph, compile_source
from engine.lang.interp import Interpreter

RNG = np.random.default_rng(15)
X = RNG.normal(size=(3, 4))
V = RNG.normal(size=4)

# source, the same function in NumPy, inputs (x a 3x4 matrix and v a 4-vector)
FORMS: list[tuple[str, Callable[..., Any]]] = [
    ("x.T", lambda x, v: x.T),
    ("x.T @ x", lambda x, v: x.T @ x),
    ("x.sum(axis=0)", lambda x, v: x.sum(axis=0)),
    ("x.sum(1, keepdims=True)", lambda x, v: x.sum(1, keepdims=True)),
    ("x.mean()", lambda x, v: x.mean()),
    ("x.prod(axis=1)", lambda x, v: x.prod(axis=1)),
    ("x.max(axis=0)", lambda x, v: x.max(axis=0)),
    ("x.min()", lambda x, v: x.min()),
    ("x.var(ddof=1)", lambda x, v: x.var(ddof=1)),
    ("x.std(axis=0)", lambda x, v: x.std(axis=0)),
    ("x.reshape(4, 3)", lambda x, v: x.reshape(4, 3)),
    ("x.reshape((2, -1))", lambda x, v: x.reshape((2, -1))),
    ("x.reshape(x.shape[1], x.shape[0])", lambda x, v: x.reshape(x.shape[1], x.shape[0])),
    ("x.reshape(-1)", lambda x, v: x.reshape(-1)),
    ("x.transpose()", lambda x, v: x.transpose()),
    ("x.transpose(1, 0)", lambda x, v: x.transpose(1, 0)),
    ("x.transpose((1, 0))", lambda x, v: x.transpose((1, 0))),
    ("x.dot(v)", lambda x, v: x.dot(v)),
    ("v.dot(v)", lambda x, v: v.dot(v)),
    ("x.clip(-0.5, 0.5)", lambda x, v: x.clip(-0.5, 0.5)),
    ("x.clip(min=-0.5, max=0.5)", lambda x, v: x.clip(min=-0.5, max=0.5)),
    ("np.clip(x, min=-0.5, max=0.5)", lambda x, v: np.clip(x, -0.5, 0.5)),
    ("x.flatten()", lambda x, v: x.flatten()),
    ("x.ravel()", lambda x, v: x.ravel()),
    ("x.sum().item() * x", lambda x, v: x.sum().item() * x),
    ("x if x[0, 0].item() > 0 else -x", lambda x, v: x if x[0, 0].item() > 0 else -x),
    ("x[None].squeeze()", lambda x, v: x[None].squeeze()),
    ("x.swapaxes(0, 1)", lambda x, v: x.swapaxes(0, 1)),
    ("x.repeat(2, axis=0)", lambda x, v: x.repeat(2, axis=0)),
    ("x.trace()", lambda x, v: x.trace()),
    ("x.astype(float)", lambda x, v: x.astype(float)),
    ("x.astype(x.dtype) * 2", lambda x, v: x.astype(x.dtype) * 2),
    ("x.T.sum(axis=0).dot(v[:3])", lambda x, v: x.T.sum(axis=0).dot(v[:3])),
    ("(x * 2).T.T", lambda x, v: (x * 2).T.T),
    ("zeros(x.shape) + x", lambda x, v: np.zeros(x.shape) + x),
    ("x * x.ndim + x.size", lambda x, v: x * x.ndim + x.size),
    ("reshape(v, x.shape[1:])", lambda x, v: np.reshape(v, x.shape[1:])),
    ("x / len(x)", lambda x, v: x / len(x)),
    ("np.sin(x)", lambda x, v: np.sin(x)),
    ("numpy.exp(x) + jnp.cos(x)", lambda x, v: np.exp(x) + np.cos(x)),
    ("jax.numpy.tanh(v)", lambda x, v: np.tanh(v)),
    ("np.linalg.norm(v)", lambda x, v: np.linalg.norm(v)),
    ("numpy.linalg.norm(x, ord='fro')", lambda x, v: np.linalg.norm(x, ord="fro")),
    ("linalg.norm(x, 'fro')", lambda x, v: np.linalg.norm(x, "fro")),
    ("np.pi * v + np.e", lambda x, v: np.pi * v + np.e),
    ("np.absolute(x) + np.amax(x, axis=0)", lambda x, v: np.absolute(x) + np.amax(x, axis=0)),
    ("np.pow(np.fabs(x), 3)", lambda x, v: np.pow(np.fabs(x), 3)),
    ("x[np.newaxis, :, 1]", lambda x, v: x[np.newaxis, :, 1]),
    ("abs(x)", lambda x, v: abs(x)),
    ("max(v[0], v[1])", lambda x, v: max(v[0], v[1])),
    ("min(v[0], v[1], v[2])", lambda x, v: min(v[0], v[1], v[2])),
    ("max(x, 0)", lambda x, v: np.max(x, 0)),
    ("min(x, axis=1)", lambda x, v: np.min(x, axis=1)),
    ("np.max(v)", lambda x, v: np.max(v)),
    ("sum([x, 2 * x])", lambda x, v: sum([x, 2 * x])),
    ("np.sum([x, 2 * x])", lambda x, v: np.sum([x, 2 * x])),
    ("v[0] if v[1] > 0 else v[2]", lambda x, v: v[0] if v[1] > 0 else v[2]),
    ("x if sum(x) > 100 else -x", lambda x, v: x if np.sum(x) > 100 else -x),
    ("sin(x) if x.ndim == 2 else x", lambda x, v: np.sin(x) if x.ndim == 2 else x),
    ("x[x > 0]", lambda x, v: x[x > 0]),
    ("x[x > 0] ** 2", lambda x, v: x[x > 0] ** 2),
    ("x[:, v > 0]", lambda x, v: x[:, v > 0]),
    ("x[v[:3] > 0, 1:]", lambda x, v: x[v[:3] > 0, 1:]),
    ("x[where(x > 0)]", lambda x, v: x[np.where(x > 0)]),
    ("x[nonzero(x < 0)]", lambda x, v: x[np.nonzero(x < 0)]),
    ("v[flatnonzero(v > 0)]", lambda x, v: v[np.flatnonzero(v > 0)]),
    ("x[argwhere(x > 0)[:, 0], 0]", lambda x, v: x[np.argwhere(x > 0)[:, 0], 0]),
    ("x[[0, 2], [1, 3]]", lambda x, v: x[[0, 2], [1, 3]]),
    ("x[[[0], [2]], [1, 3]]", lambda x, v: x[[[0], [2]], [1, 3]]),
    ("x[[0, -1], :][:, [-1, 0, 0]]", lambda x, v: x[[0, -1], :][:, [-1, 0, 0]]),
    ("x[None, [0, 2], ..., [1, 3]]", lambda x, v: x[None, [0, 2], ..., [1, 3]]),
    ("x[1:, None, [0, 3]]", lambda x, v: x[1:, None, [0, 3]]),
    ("x[[2, 0]][..., None]", lambda x, v: x[[2, 0]][..., None]),
    ("x[arange(3), arange(3)]", lambda x, v: x[np.arange(3), np.arange(3)]),
]


def _run(source: str) -> Callable[..., Any]:
    program = compile_source(source)
    return lambda x, v: program.run({"x": x, "v": v})


@pytest.mark.parametrize(("source", "reference"), FORMS, ids=[f[0] for f in FORMS])
def test_value_is_numpys(source: str, reference: Callable[..., Any]) -> None:
    got = np.asarray(_run(source)(X, V))
    want = np.asarray(reference(X, V))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _central_jacobian(f: Callable[[np.ndarray], Any], x: np.ndarray, h: float = 1e-6) -> Any:
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        plus = np.asarray(f(x + e.reshape(x.shape)), dtype=float)
        minus = np.asarray(f(x - e.reshape(x.shape)), dtype=float)
        cols.append(((plus - minus) / (2 * h)).ravel())
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize(("source", "reference"), FORMS, ids=[f[0] for f in FORMS])
def test_jacobian_both_modes_match_finite_differences(
    source: str, reference: Callable[..., Any]
) -> None:
    """Float64 central differences against the reverse- and forward-mode Jacobians (the
    masks and where-forms select by sign, far from zero here, so the selection is fixed
    within the step)."""
    f = _run(source)
    fx = lambda x: f(x, V)  # noqa: E731
    expected = _central_jacobian(fx, X)
    out_size = int(np.size(reference(X, V)))
    for mode in ("reverse", "forward"):
        jac = np.asarray(ad.jacobian(fx, mode=mode)(X)).reshape(out_size, X.size)
        np.testing.assert_allclose(jac, expected, rtol=1e-6, atol=1e-6, err_msg=mode)


SECOND_ORDER = [
    "sum(x.T @ x)",
    "(x ** 3).sum(axis=0).dot(v)",
    "sum(x[x > 0] ** 3)",
    "sum(x[[0, 2], [1, 3]] ** 3)",
    "sum(x[None, [0, 2], ..., [1, 3]] ** 2 * x[[1, 1], [0, 0]])",
    "sum(x ** 3 if sum(x) < 100 else x)",
    "np.sum(np.sin(x).reshape(4, 3).T ** 2)",
    "max(sum(x ** 2), -1.0) * x.size",
    "sum([x ** 2, x ** 3]).sum()",
]


@pytest.mark.parametrize("source", SECOND_ORDER)
def test_hessian_matches_finite_differences_of_the_gradient(source: str) -> None:
    program = compile_source(source)
    f = lambda x: program.run({"x": x, "v": V})  # noqa: E731
    expected = _central_jacobian(lambda x: np.asarray(ad.grad(f)(x)), X, h=1e-5)
    got = np.asarray(ad.hessian(f)(X)).reshape(X.size, X.size)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_methods_follow_the_op_registry() -> None:
    """A method whose op is not registered is the usual unknown-op error."""
    with pytest.raises(UnknownOpError, match="unknown op 'no_such_op'"):
        compile_source("np.no_such_op(x)")
    with pytest.raises(LanguageError, match=r"the method \.view\(\)"):
        compile_source("x.view()")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x.__class__", "attribute access (.__class__)"),
        ("x.T.__dict__", "attribute access (.__dict__)"),
        ("np.__dict__", "attribute access (.__dict__)"),
        ("np.sum.__globals__", "attribute access (.__globals__)"),
        ("os.system(x)", "the method .system()"),
        ("np.os.system(x)", "np.os is not a module prefix"),
        ("numpy.linalg.os.path(x)", "numpy.linalg.os is not a module prefix"),
        ("np.sum", "is not a value: call it"),
        ("x.sum", "the method .sum without a call"),
        ("x.flat", "attribute access (.flat)"),
        ("(1).sum()", "the attribute .sum of a literal"),
        ("[x, x].sum()", "the attribute .sum of a literal"),
        ("(2.0).T", "the attribute .T of a literal"),
        ("x.shape.sum()", "read from a tuple"),
        ("len(x).sum()", "read from an integer"),
        ("x.dtype.T", "read from a string"),
        ("np.float32 + x", "the dtype float32 here"),
        ("x + np.newaxis", "np.newaxis here"),
        ("sum(x, axis='0')", "a string at line 1, column 13"),
        ("x + 'a'", "a string at line 1, column 5"),
        ("reshape(x, 'ab')", "a string"),
        ("getattr(x, 'T')", "is not an op"),
        ("len(x, x)", "len() with other than one argument"),
        ("len(x[0, 0])", "len() of a 0-d value"),
        ("max(x, v)", "expected a number"),
        ("max(x[0, 0], v)", "compares scalars"),
        ("max(x, 0, 1)", "needs scalars"),
        ("nonzero(x[0, 0])", "0-d array"),
        ("x[x[0] > 0]", "boolean index did not match"),
        ("x[[0, 3]]", "out of bounds"),
        ("x.astype('int32')", "dtype must be one of"),
        ("x.item()", "cannot reshape"),
        ("x.item(0)", ".item() with arguments"),
        ("x.dtype", "the output is the dtype name 'float64'"),
    ],
)
def test_refused_with_a_clear_message(source: str, fragment: str) -> None:
    with pytest.raises(AutodiffError) as info:
        compile_source(source).run({"x": X, "v": V})
    assert fragment in info.value.message


def test_range_with_traced_bounds() -> None:
    """``range(len(x))``, ``range(x.shape[1])`` and a bound read from a differentiated
    input (an integral value) select, contributing no derivative."""
    source = (
        "s = 0\nfor i in range(len(x)):\n    for j in range(n):\n        s = s + x[i, j]\nreturn s"
    )
    program = compile_source(source)
    n = np.array(2.0)
    assert np.isclose(program.run({"x": X, "n": n}), X[:, :2].sum())
    g = ad.grad(lambda x, n: program.run({"x": x, "n": n}), argnums=(0, 1))(X, n)
    np.testing.assert_allclose(g[0], np.repeat([[1.0, 1.0, 0.0, 0.0]], 3, axis=0))
    assert np.all(g[1] == 0)
    with pytest.raises(LanguageError, match="must be an integer"):
        program.run({"x": X, "n": np.array(2.5)})


def test_a_conditional_expression_runs_only_the_branch_taken() -> None:
    """The other branch would fail (a shape mismatch); it never runs."""
    program = compile_source("x if sum(x) > -100 else x @ x")
    np.testing.assert_array_equal(program.run({"x": X}), X)


class _CountingInterpreter(Interpreter):
    """What the batching interpreter does: override ``cond`` and ``shape_of``."""

    conds = 0

    def cond(self, node: Any, loc: Any) -> bool:
        type(self).conds += 1
        return super().cond(node, loc)

    def shape_of(self, value: Any) -> tuple[int, ...]:
        return tuple(super().shape_of(value)[1:])  # as if a batch axis led


def test_conditions_and_shape_reads_go_through_the_overridable_hooks() -> None:
    program = compile_source("(x.shape, x.ndim, x.size, len(x), 1.0 if x.ndim == 1 else 2.0)")
    interp = _CountingInterpreter(program, {"x": X}, 100, 10**6)
    shape, ndim, size, length, choice = interp.run()
    assert (shape, int(ndim), int(size), int(length), float(choice)) == ((4,), 1, 4, 4, 1.0)
    assert _CountingInterpreter.conds == 1


def test_max_of_two_scalars_splits_ties_as_maximum() -> None:
    """``max(a, b)`` of scalars is ``maximum``: at a tie each side gets half."""
    program = compile_source("max(x[0], x[1])")
    g = ad.grad(lambda x: program.run({"x": x}))(np.array([1.0, 1.0]))
    np.testing.assert_allclose(g, [0.5, 0.5])


def test_where_with_one_argument_is_nonzero_and_has_no_gradient() -> None:
    program = compile_source("where(x > 0)")
    rows, cols = program.run({"x": X})
    want = np.nonzero(X > 0)
    np.testing.assert_array_equal(rows, want[0])
    np.testing.assert_array_equal(cols, want[1])


def test_the_mask_result_shape_follows_the_data() -> None:
    program = compile_source("x[x > 0]")
    for x in (X, -np.abs(X), np.abs(X)):
        assert program.run({"x": x}).shape == (int(np.sum(x > 0)),)
        jac = ad.jacobian(lambda x: program.run({"x": x}))(x)
        assert np.shape(jac) == (int(np.sum(x > 0)), *x.shape)


@pytest.mark.parametrize(
    ("op", "expected"),
    [("np.sum", "sum"), ("scipy.special.expit", "expit"), ("jnp.linalg.norm", "norm")],
)
def test_graph_ops_take_the_same_prefixes(op: str, expected: str) -> None:
    graph = {"nodes": [{"id": "s", "op": op, "inputs": ["x"]}], "outputs": ["s"]}
    try:
        program = compile_graph(graph)
    except UnknownOpError as err:  # an op another branch adds: the usual unknown-op error
        assert f"unknown op {expected!r}" in err.message
        return
    assert program.body[0].value.op == expected


def test_graph_refuses_an_unknown_prefix_and_where_is_nonzero() -> None:
    bad = {"nodes": [{"id": "s", "op": "os.system", "inputs": ["x"]}], "outputs": ["s"]}
    with pytest.raises(LanguageError, match="module prefix"):
        compile_graph(bad)
    where = {"nodes": [{"id": "w", "op": "np.where", "inputs": ["x"]}], "outputs": ["w"]}
    rows, cols = compile_graph(where).run({"x": X > 0})
    np.testing.assert_array_equal(rows, np.nonzero(X > 0)[0])


def test_graph_strings_only_for_declared_options() -> None:
    ok = {
        "nodes": [{"id": "n", "op": "norm", "inputs": ["x"], "attrs": {"ord": "fro"}}],
        "outputs": ["n"],
    }
    assert np.isclose(compile_graph(ok).run({"x": X}), np.linalg.norm(X, "fro"))
    bad = {
        "nodes": [{"id": "s", "op": "sum", "inputs": ["x"], "attrs": {"axis": "0"}}],
        "outputs": ["s"],
    }
    with pytest.raises(LanguageError, match="is not allowed here"):
        compile_graph(bad)


def test_graph_indexes_by_a_mask_node_and_a_where_node() -> None:
    x = np.array([-1.0, 2.0, -3.0, 4.0])
    graph = {
        "nodes": [
            {"id": "m", "op": "greater", "inputs": ["x", 0]},
            {"id": "s", "op": "getitem", "inputs": ["x"], "attrs": {"index": ["m"]}},
            {"id": "w", "op": "np.where", "inputs": ["m"]},
            {"id": "t", "op": "getitem", "inputs": ["x"], "attrs": {"index": ["w"]}},
        ],
        "outputs": ["s", "t"],
    }
    program = compile_graph(graph)
    s, t = program.run({"x": x})
    np.testing.assert_array_equal(s, [2.0, 4.0])
    np.testing.assert_array_equal(t, [2.0, 4.0])
    g = ad.grad(lambda v: anp.sum(anp.stack(program.run({"x": v}))))(x)
    np.testing.assert_array_equal(g, [0.0, 2.0, 0.0, 2.0])


@pytest.mark.parametrize(
    ("source_dtype", "target"), [("float64", "np.float32"), ("float32", "float")]
)
def test_astype_casts_the_value_and_casts_derivatives_back(source_dtype: str, target: str) -> None:
    """The rule of a cast is the cast: the cotangent comes back in the input's dtype, the
    tangent goes forward in the result's."""
    x = X.astype(source_dtype)
    w = RNG.normal(size=X.shape)
    program = compile_source(f"x.astype({target})")
    out = program.run({"x": x})
    result_dtype = np.float32 if target == "np.float32" else np.float64
    assert out.dtype == result_dtype
    value, vjp_fn = ad.vjp(lambda v: program.run({"x": v}), x)
    (g,) = vjp_fn(w.astype(result_dtype))
    assert np.asarray(g).dtype == np.dtype(source_dtype)
    np.testing.assert_allclose(g, w.astype(result_dtype).astype(source_dtype))
    _, t_out = ad.jvp(lambda v: program.run({"x": v}), (x,), (w.astype(source_dtype),))
    assert np.asarray(t_out).dtype == result_dtype
    np.testing.assert_allclose(t_out, w.astype(source_dtype).astype(result_dtype))
