"""Graph metadata, non-finite detection and size checks before allocation."""

from __future__ import annotations

import numpy as np
import pytest

import engine.numpy as anp
from engine.errors import ShapeError, SizeLimitError
from engine.graph import Recorder
from engine.registry import OPS
from engine.shapes import check_size
from engine.transforms import Trace


def _record(f, inputs, requires_grad, **kw):  # type: ignore[no-untyped-def]
    names = list(inputs)
    with Recorder(**kw) as rec:

        def wrapped(*xs):  # type: ignore[no-untyped-def]
            for name, x in zip(names, xs, strict=True):
                rec.leaf(name, x, requires_grad[name])
            return f(*xs)

        nums = [i for i, n in enumerate(names) if requires_grad[n]]
        trace = Trace(wrapped, [inputs[n] for n in names], nums)
    return rec, trace


def test_metadata_nodes_and_counts() -> None:
    x = np.arange(4.0)
    c = np.ones(4)
    rec, trace = _record(
        lambda x, c: 2 * anp.dot(x, x) + anp.sum(anp.exp(c)),
        {"x": x, "c": c},
        {"x": True, "c": False},
    )
    meta = rec.metadata(trace.outputs)
    nodes = {n["id"]: n for n in meta["nodes"]}
    assert nodes["x"] == {
        "id": "x",
        "op": "input",
        "inputs": [],
        "shape": [4],
        "dtype": "float64",
        "requires_grad": True,
        "is_leaf": True,
        "grad_fn": None,
    }
    assert nodes["c"]["requires_grad"] is False and nodes["c"]["is_leaf"] is True
    dot = next(n for n in meta["nodes"] if n["op"] == "dot")
    assert dot["inputs"] == ["x", "x"] and dot["requires_grad"] and dot["grad_fn"] == "dot_backward"
    exp = next(n for n in meta["nodes"] if n["op"] == "exp")
    assert exp["requires_grad"] is False and exp["grad_fn"] is None  # constants stay constants
    assert meta["num_nodes"] == len(meta["nodes"]) == 7
    assert meta["num_edges"] == sum(len(n["inputs"]) for n in meta["nodes"])
    assert meta["depth"] == 3  # x -> dot -> multiply -> add
    assert meta["outputs"] == [meta["nodes"][-1]["id"]] and meta["truncated"] is False


def test_rules_applied_inside_ops_are_not_nodes() -> None:
    rec, trace = _record(lambda x: anp.sum(x * x), {"x": np.arange(3.0)}, {"x": True})
    trace.pullback([np.ones(())])
    assert [n["op"] for n in rec.nodes] == ["input", "multiply", "sum"]


def test_node_list_is_cut_but_counts_stay_exact() -> None:
    def chain(x):  # type: ignore[no-untyped-def]
        for _ in range(50):
            x = x + 1.0
        return x

    rec, trace = _record(chain, {"x": np.zeros(2)}, {"x": True}, max_nodes=10)
    meta = rec.metadata(trace.outputs)
    assert len(meta["nodes"]) == 10 and meta["num_nodes"] == 51 and meta["truncated"] is True
    assert meta["depth"] == 50


def test_first_non_finite_node_is_named() -> None:
    rec, _ = _record(
        lambda x: anp.sum(anp.exp(anp.log(x) * 1000.0)),
        {"x": np.array([0.0, 2.0])},
        {"x": True},
        check_finite=True,
    )
    assert rec.nonfinite[0]["op"] == "log"


@pytest.mark.parametrize(
    ("op", "args", "kwargs"),
    [
        ("outer", (np.empty(0), np.empty(0)), {}),
        ("zeros", ((10**12,),), {}),
        ("tile", (np.zeros(3), (10**6, 10**6)), {}),
        ("broadcast_to", (np.zeros(1), (10**7, 10**7)), {}),
        ("reshape", (np.zeros(6), (10**9, -1)), {}),
    ],
)
def test_huge_results_refused_from_shapes_alone(op, args, kwargs) -> None:  # type: ignore[no-untyped-def]
    if op == "outer":  # two 10^6-vectors that take no memory: zero-stride views
        v = np.lib.stride_tricks.as_strided(np.zeros(1), (10**6,), (0,))
        args = (v, v)
    with pytest.raises((SizeLimitError, ShapeError)) as info:
        check_size(OPS[op], args, kwargs, max_elements=10**7)
    assert info.value.op == op


def test_incompatible_broadcast_names_op_and_shapes() -> None:
    with pytest.raises(ShapeError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        check_size(OPS["add"], (np.zeros((2, 3)), np.zeros(4)), {}, 100)
    with pytest.raises(ShapeError, match="add"):
        anp.add(np.zeros((2, 3)), np.zeros(4))
