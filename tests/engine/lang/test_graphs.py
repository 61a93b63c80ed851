"""JSON graphs: validation naming the node, indexing, and identity with the same text."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import engine
from engine.errors import (
    AutodiffError,
    LanguageError,
    SizeLimitError,
    UnknownOpError,
    ValueDomainError,
)
from engine.graph import Recorder
from engine.lang import Limits, compile_graph, compile_source

X = np.arange(4.0)
M = np.arange(6.0).reshape(2, 3)


def graph(*nodes: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Any]:
    return {"nodes": list(nodes), "outputs": outputs or [nodes[-1]["id"]]}


def node(nid: str, op: str, *inputs: Any, **attrs: Any) -> dict[str, Any]:
    return {"id": nid, "op": op, "inputs": list(inputs), "attrs": attrs}


def test_contract_example() -> None:
    g = {
        "nodes": [
            {"id": "xx", "op": "dot", "inputs": ["x", "x"]},
            {"id": "y", "op": "multiply", "inputs": ["xx", 2.0]},
        ],
        "outputs": ["y"],
    }
    program = compile_graph(g)
    assert program.free_names == ("x",) and program.num_ops == 2 and program.kind == "graph"
    assert program.run({"x": X}) == 28.0
    np.testing.assert_allclose(engine.grad(lambda x: program.run({"x": x}))(X), 4 * X)


# graph, error type, fragment, node id named in loc
CHAIN = [node("a", "exp", "c"), node("b", "exp", "a"), node("c", "exp", "b"), node("d", "exp", "c")]
INVALID = [
    (graph(node("y", "sum", "x"), node("y", "exp", "x")), LanguageError, "duplicate node id", "y"),
    (graph(node("a", "exp", "b"), node("b", "exp", "a")), LanguageError, "cycle: 'a' -> 'b' -> 'a'",
     "a"),
    (graph(*CHAIN), LanguageError, "cycle: 'a' -> 'b' -> 'c' -> 'a'", "a"),
    (graph(node("y", "exp", "y")), LanguageError, "node 'y' takes itself as an input", "y"),
    (graph(node("y", "foo", "x")), UnknownOpError, "unknown op 'foo' at node 'y'", "y"),
    (graph(node("y", "_scatter", "x")), UnknownOpError, "unknown op '_scatter'", "y"),
    (graph(node("y", "exp", "x", "x")), LanguageError, "too many; signature: exp(x)", "y"),
    (graph(node("y", "add", "x")), LanguageError, "missing argument 'x2'", "y"),
    (graph(node("y", "sum", "x", axes=0)), LanguageError, "unexpected keyword 'axes'", "y"),
    (graph(node("y", "reshape", "x")), LanguageError, "missing argument 'shape'", "y"),
    (graph(node("y", "exp", "no such")), LanguageError, "neither a node id nor a valid input", "y"),
    (graph(node("y", "exp", "_x")), LanguageError, "neither a node id nor a valid input", "y"),
    (graph(node("y", "exp", True)), LanguageError, "True is not allowed here", "y"),
    (graph(node("y", "exp", {"a": 1})), LanguageError, "is not allowed here", "y"),
    (graph(node("y", "sum", "x", axis="0")), LanguageError, "'0' is not allowed here", "y"),
    (graph(node("y", "getitem", "x")), LanguageError, "getitem takes one input", "y"),
    (graph(node("y", "getitem", "x", index=[{"slice": 1}])), LanguageError, "a slice is", "y"),
    (graph(node("y", "getitem", "x", index=[{"range": [1]}])), LanguageError, "a slice is", "y"),
    ({"nodes": [{"id": "y", "op": "exp", "inputs": ["x"], "attr": {}}], "outputs": ["y"]},
     LanguageError, "unknown field(s) ['attr']", "y"),
    ({"nodes": [{"id": "y", "op": 3}], "outputs": ["y"]}, LanguageError, "'op' must be a string",
     "y"),
    ({"nodes": [{"id": "y", "op": "exp", "inputs": "x"}], "outputs": ["y"]},
     LanguageError, "'inputs' must be a list", "y"),
    ({"nodes": [{"id": "y", "op": "exp", "attrs": []}], "outputs": ["y"]},
     LanguageError, "'attrs' must be an object", "y"),
]  # fmt: skip


@pytest.mark.parametrize(("g", "kind", "fragment", "nid"), INVALID)
def test_invalid_graphs_name_the_node(
    g: dict[str, Any], kind: type, fragment: str, nid: str
) -> None:
    with pytest.raises(AutodiffError) as info:
        compile_graph(g)
    assert type(info.value) is kind, info.value
    assert fragment in info.value.message
    assert info.value.loc == {"node": nid}


@pytest.mark.parametrize(
    ("g", "fragment"),
    [
        ([], "a graph is an object"),
        ({"nodes": {}, "outputs": ["y"]}, "'nodes' must be a list"),
        ({"nodes": [], "outputs": []}, "'outputs' must be a non-empty list"),
        ({"nodes": [], "outputs": [1]}, "'outputs' must be a non-empty list"),
        ({"nodes": [], "outputs": ["x"], "extra": 1}, "unknown graph field"),
        ({"nodes": [1], "outputs": ["x"]}, "node #0 is not an object"),
        ({"nodes": [{"id": "", "op": "exp"}], "outputs": ["x"]}, "node #0: 'id' must be"),
        ({"nodes": [{"id": 3, "op": "exp"}], "outputs": ["x"]}, "node #0: 'id' must be"),
    ],
)
def test_malformed_graphs(g: Any, fragment: str) -> None:
    with pytest.raises(LanguageError, match=None) as info:
        compile_graph(g)
    assert fragment in info.value.message


def test_node_count_limit_is_checked_first_and_fast() -> None:
    nodes = [{"id": "same", "op": "nonsense"}] * 1_000_000
    with pytest.raises(SizeLimitError, match="1000000 nodes, over the limit of 10000"):
        compile_graph({"nodes": nodes, "outputs": ["0"]})


def test_deeply_nested_literal_is_refused_without_recursion() -> None:
    deep: Any = 1.0
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(LanguageError, match="nested deeper than 200"):
        compile_graph(graph(node("y", "add", "x", deep)))


def test_long_chain_is_iterative() -> None:
    n = 5000
    nodes = [node("n0", "add", "x", 1.0)] + [
        node(f"n{i}", "add", f"n{i - 1}", 1.0) for i in range(1, n)
    ]
    program = compile_graph(graph(*nodes), Limits(max_graph_nodes=n))
    assert program.run({"x": X})[0] == n


def test_indexing_encoding() -> None:
    cases = [
        ([1], M[1]),
        ([-1, 0], M[-1, 0]),
        ([{"slice": [None, None, -1]}], M[::-1]),
        ([{"slice": [1]}, {"slice": [0, 3, 2]}], M[1:, 0:3:2]),
        (["...", 1], M[..., 1]),
        ([None, 0], M[None, 0]),
        ([0, [2, 0]], M[0, [2, 0]]),
        ([0, "idx"], M[0, [1, 2]]),
    ]
    for index, expected in cases:
        g = graph(node("y", "getitem", "m", index=index))
        out = compile_graph(g).run({"m": M, "idx": np.array([1, 2])})
        np.testing.assert_array_equal(out, expected)


def test_index_reference_is_an_input() -> None:
    program = compile_graph(graph(node("y", "getitem", "m", index=[0, "idx"])))
    assert program.free_names == ("m", "idx")


def test_sequences_varargs_and_attrs() -> None:
    g = graph(
        node("c", "concatenate", "x", "x", [1, 2]),
        node("s", "stack", "x", "x", axis=1),
        node("y", "einsum", "c", "c", subscripts="i,i->"),
        outputs=["y", "s"],
    )
    y, s = compile_graph(g).run({"x": X})
    c = np.concatenate([X, X, [1.0, 2.0]])
    assert y == c @ c
    np.testing.assert_array_equal(s, np.stack([X, X], axis=1))


def test_constants_outputs_and_dead_nodes() -> None:
    g = graph(node("y", "multiply", "x", "pi"), node("dead", "exp", "z"), outputs=["y", "x"])
    program = compile_graph(g)
    assert program.free_names == ("x",)  # z feeds only a node no output needs
    y, x = program.run({"x": X})
    np.testing.assert_allclose(y, np.pi * X)
    assert x is X


def test_node_ids_never_clash_with_inputs() -> None:
    g = graph(node("x", "multiply", "x2", 2.0), node("y", "add", "x", 1.0))
    program = compile_graph(g)
    assert program.free_names == ("x2",)
    np.testing.assert_array_equal(program.run({"x2": X}), 2 * X + 1)


def test_graph_program_pickles() -> None:
    program = compile_graph(graph(node("y", "sum", "x", axis=0)))
    assert pickle.loads(pickle.dumps(program)) == program


# --- the same function as text and as a graph ----------------------------------------------

PAIRS = [
    (
        "2 * dot(x, x)",
        graph(node("xx", "dot", "x", "x"), node("y", "multiply", 2, "xx")),
    ),
    (
        "sum(exp(x[1:]) * w, axis=0, keepdims=True)",
        graph(
            node("a", "getitem", "x", index=[{"slice": [1, None]}]),
            node("b", "exp", "a"),
            node("c", "multiply", "b", "w"),
            node("y", "sum", "c", axis=0, keepdims=True),
        ),
    ),
    (
        "einsum('i,i->', x, concatenate([w, [1]]))",
        graph(
            node("c", "concatenate", "w", [1]),
            node("y", "einsum", "x", "c", subscripts="i,i->"),
        ),
    ),
]


@pytest.mark.parametrize(("source", "g"), PAIRS)
def test_text_and_graph_compile_to_the_same_ir(source: str, g: dict[str, Any]) -> None:
    text, graphed = compile_source(source), compile_graph(g)
    assert _strip(text.body[-1].values) == _strip(_inline(graphed))


@pytest.mark.parametrize(("source", "g"), PAIRS)
def test_text_and_graph_give_identical_values_gradients_and_metadata(
    source: str, g: dict[str, Any]
) -> None:
    env = {"x": np.array([0.5, -1.0, 2.0, 0.25]), "w": np.array([1.0, 2.0, 3.0])}
    results = []
    for program in (compile_source(source), compile_graph(g)):
        with Recorder() as rec:
            value, grads = engine.value_and_grad(
                lambda x, w, p=program: engine.numpy.sum(p.run({"x": x, "w": w})), argnums=(0, 1)
            )(env["x"], env["w"])
        results.append((value, grads, rec.metadata([])))
    (v1, g1, m1), (v2, g2, m2) = results
    assert v1 == v2
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert m1 == m2


def _inline(program: Any) -> Any:
    """The graph's return expression with each node variable replaced by its definition."""
    from engine.lang.ir import Name

    defs = {s.targets[0]: s.value for s in program.body[:-1]}

    def sub(x: Any) -> Any:
        if isinstance(x, Name) and x.id in defs:
            return sub(defs[x.id])
        if isinstance(x, tuple):
            return (
                type(x)(*(sub(v) for v in x)) if hasattr(x, "_fields") else tuple(sub(v) for v in x)
            )
        return x

    return sub(program.body[-1].values)


def _strip(x: Any) -> Any:
    """IR without locations (text has line/column, graphs node ids) and literal spelling."""
    from engine.lang.ir import Num

    if isinstance(x, Num):
        return ("num", x.value)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (type(x).__name__,) + tuple(_strip(getattr(x, f)) for f in x._fields if f != "loc")
    if isinstance(x, tuple):
        return tuple(_strip(v) for v in x)
    return x


def test_static_parameter_given_as_input_gets_a_hint() -> None:
    with pytest.raises(LanguageError) as info:
        compile_graph(graph(node("y", "reshape", "x", [2, 2])))
    assert "too many (static parameters go in attrs: shape)" in info.value.message


def test_array_parameters_may_be_literal_attrs() -> None:
    program = compile_graph(graph(node("y", "clip", "x", a_min=1, a_max=2.5)))
    np.testing.assert_array_equal(program.run({"x": X}), np.clip(X, 1, 2.5))


# --- non-finite numbers (issue 13, B11) -----------------------------------------------------

V = np.array([-3.0, 0.5, 2.0])


@pytest.mark.parametrize(
    ("nodes", "text"),
    [
        ([node("y", "norm", "x", ord="inf")], "norm(x, ord=inf)"),
        ([node("y", "norm", "x", ord="-inf")], "norm(x, ord=-inf)"),
        ([node("y", "clip", "x", a_min="-inf", a_max=1.0)], "clip(x, -inf, 1.0)"),
        ([node("y", "clip", "x", a_min=0.0, a_max="inf")], "clip(x, 0.0, inf)"),
        ([node("y", "maximum", "x", "-inf")], "maximum(x, -inf)"),
        ([node("y", "add", "x", [1.0, "nan", "-inf"])], "x + [1.0, nan_, -inf]"),
        ([node("y", "minimum", "x", [["inf"], [0.0]])], "minimum(x, [[inf], [0.0]])"),
        ([node("y", "add", "x", "nan")], "x + nan_"),
    ],
)
def test_non_finite_numbers_in_graphs(nodes: list[dict[str, Any]], text: str) -> None:
    program = compile_graph(graph(*nodes, outputs=["y"]))
    assert program.free_names == ("x",)
    with np.errstate(invalid="ignore"):  # 0 * inf: the text form's nan
        expected = compile_source(text.replace("nan_", "0 * inf")).run({"x": V})
    np.testing.assert_array_equal(program.run({"x": V}), expected)


@pytest.mark.parametrize("word", ["Infinity", "NaN", "INF", "+inf", " inf", "1.5", "-nan", ""])
def test_other_strings_are_not_numbers(word: str) -> None:
    # norm's ord may be a word ('fro', 'nuc'): any other word is refused by norm itself
    with pytest.raises(ValueDomainError, match="norm order"):
        compile_graph(graph(node("y", "norm", "x", ord=word))).run({"x": V})
    for g in (
        graph(node("y", "clip", "x", a_min=word, a_max=1.0)),
        graph(node("y", "add", "x", [1.0, word])),
    ):
        with pytest.raises(LanguageError) as info:
            compile_graph(g)
        assert info.value.loc == {"node": "y"}
    if word and not word.isidentifier():  # a whole input: neither a number nor a name
        with pytest.raises(LanguageError):
            compile_graph(graph(node("y", "add", "x", word)))


def test_einsum_subscripts_stay_strings() -> None:
    program = compile_graph(graph(node("y", "einsum", "x", "x", subscripts="i,i->")))
    assert program.run({"x": V}) == pytest.approx(float(V @ V))


def test_a_node_with_many_inputs_is_checked_in_linear_time() -> None:
    """A node's references were deduplicated by a list scan: k inputs took k^2 steps
    (20,000 inputs: seconds; linear: milliseconds)."""
    import time

    from engine.lang import graph as graph_module

    ids = [f"n{i}" for i in range(20_000)]
    by_id = {nid: {"id": nid} for nid in ids}
    wide = {"id": "s", "op": "stack", "inputs": ids + ids[:10]}
    start = time.perf_counter()
    refs = graph_module._refs(wide, by_id)
    elapsed = time.perf_counter() - start
    assert refs == ids
    assert elapsed < 1.0, f"{elapsed:.2f} s"
