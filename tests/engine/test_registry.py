"""The registry as the single source of what each op is: its cost class, its kind of rule."""

from __future__ import annotations

import pytest

from engine.ops.ufuncs import REGISTERED
from engine.registry import COSTS, KINDS, NONDIFF, OPS, names_of_cost

# the service's hand list before the cost class existed (app/compute.py at c5d3e8a):
# the registry must give the same lane to every op a program can name
_HAND_LINEAR_TEXT = """
abs add arccos arcsin arctan arctan2 clip cos cosh divide equal exp expm1 floor_divide
greater greater_equal less less_equal log log10 log1p log2 logical_and logical_not
logical_or maximum minimum multiply negative not_equal power remainder sign sin sinh sqrt
square subtract tan tanh where relu sigmoid softplus sum mean prod max min var std
logsumexp softmax log_softmax broadcast_to concatenate detach stop_gradient expand_dims
flip getitem repeat reshape squeeze stack swapaxes tile transpose outer trace diag arange
eye full linspace ones ones_like zeros zeros_like
"""
_HAND_LINEAR = frozenset(_HAND_LINEAR_TEXT.split())
# issue 15's building and reshaping ops (engine/ops/building.py): all linear in their sizes
_BUILDING_LINEAR_TEXT = """
array asarray ravel moveaxis rollaxis roll pad atleast_1d atleast_2d atleast_3d vstack
row_stack hstack dstack column_stack append split array_split hsplit vsplit dsplit meshgrid
tril_indices tril_indices_from triu_indices triu_indices_from diag_indices diag_indices_from
flipud fliplr rot90 diagonal
"""
_BUILDING_LINEAR = frozenset(_BUILDING_LINEAR_TEXT.split())


def test_every_op_declares_a_known_cost() -> None:
    for name, op in OPS.items():
        assert op.cost in COSTS, name


LINALG_LINEAR = {"kron", "cross"}  # issue 15: work linear in the result's size


def test_cost_classes() -> None:
    public = {n for n in names_of_cost("linear") if not n.startswith("_")}
    ordering = {  # issue 15's ordering family (sorting counts as linear: n log n)
        "argmax", "argmin", "argsort", "average", "cumprod", "cumsum", "diff", "median",
        "nanmean", "nansum", "percentile", "quantile", "searchsorted", "sort", "take",
        "take_along_axis",
    }  # fmt: skip
    complex_parts = {"real", "imag", "conj", "conjugate", "angle", "absolute"}  # issue 15
    complex_parts |= {"fftshift", "ifftshift"}
    # issue 15's elementwise and scipy.special ops (and logsumexp, now SciPy's) are linear
    special = {n for n in [*REGISTERED, "logsumexp"] if not n.startswith("_")}
    assert special <= public and {"erf", "round", "polygamma", "logsumexp"} <= special
    added = {"tril", "triu", "argwhere", "flatnonzero", "nonzero", "astype"}  # since then
    families = LINALG_LINEAR | ordering | complex_parts | special | _BUILDING_LINEAR
    assert public == _HAND_LINEAR | added | families
    contractions = {"dot", "einsum", "inner", "matmul", "tensordot", "matrix_power"}
    assert names_of_cost("contraction") == contractions
    assert {"inv", "det", "slogdet", "solve", "cholesky", "norm"} <= names_of_cost("decomposition")
    assert not names_of_cost("linear") & names_of_cost("decomposition")


def test_an_op_with_an_unknown_cost_is_refused() -> None:
    from engine.ops.kinds import def_nondiff

    with pytest.raises(ValueError, match="cost must be one of"):
        def_nondiff("_test_cost", abs, "x", "test", lambda x: x.shape, cost="cheap")
    assert "_test_cost" not in OPS


def test_the_non_differentiable_ops_are_exactly_the_listed_ones() -> None:
    unlisted = {n for n, op in OPS.items() if not op.differentiable}
    assert unlisted == NONDIFF


def test_an_op_without_rules_must_be_listed() -> None:
    from engine.ops.kinds import def_nondiff

    with pytest.raises(ValueError, match="is not listed in NONDIFF"):
        def_nondiff("_test_no_rules", abs, "x", "test", lambda x: x.shape, cost="linear")
    assert "_test_no_rules" not in OPS


def test_every_op_is_declared_through_a_rule_kind() -> None:
    undeclared = {name for name, op in OPS.items() if op.kind not in KINDS}
    assert not undeclared
    kinds = {kind: {n for n, op in OPS.items() if op.kind == kind} for kind in KINDS}
    assert kinds["bilinear"] == {"matmul", "dot", "inner", "outer", "tensordot", "kron", "cross"}
    assert {"svd", "eigh", "qr", "lstsq", "matrix_power"} <= kinds["composite"]
    assert kinds["nondiff"] == NONDIFF
    assert {"sum", "mean", "max", "logsumexp", "norm"} <= kinds["reduction"]
    assert {"tril", "triu", "swapaxes", "flip"} <= kinds["linear"]
    assert {"exp", "multiply", "power"} <= kinds["elementwise"]


def test_an_op_without_a_kind_is_refused() -> None:
    from engine.ops._util import defop

    with pytest.raises(ValueError, match="kind must be one of"):
        defop("_test_no_kind", abs, "x", "test", lambda x: x.shape, [None], None, kind="")
    assert "_test_no_kind" not in OPS


def test_the_nondiff_kind_is_exactly_the_ops_without_rules() -> None:
    from engine.ops._util import defop

    with pytest.raises(ValueError, match="kind 'nondiff' but differentiable=True"):
        defop("_test_rules", abs, "x", "test", lambda x: x.shape, [None], None, kind="nondiff")
    with pytest.raises(ValueError, match="kind 'custom' but differentiable=False"):
        defop("_test_no_rules2", abs, "x", "test", lambda x: x.shape, kind="custom")
    assert not {"_test_rules", "_test_no_rules2"} & OPS.keys()
