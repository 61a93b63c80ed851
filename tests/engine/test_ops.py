"""One parametrised check per op row: reverse mode against central finite
differences, forward against reverse, both Jacobian modes, second order, float32."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

import engine as ad
from engine.fast import fast_mode
from engine.ops.kinds import ComposedOp
from engine.registry import OPS
from tests.engine.cases import FAMILY_MODULES, Case
from tests.engine.conftest import case_rng

# each family's rows live with that family (tests/engine/cases_<family>.py)
CASES: list[Case] = [
    case
    for module in FAMILY_MODULES
    for case in importlib.import_module(f"tests.engine.{module}").CASES
]
DIFF = [c for c in CASES if c.diff]
SMOOTH = [c for c in DIFF if c.smooth]
EPS = 1e-6


@pytest.fixture(autouse=True)
def _both_ways(fast_switch: bool) -> None:
    """Every row runs with the fast layer on and off (``AUTODIFF_ENGINE_FAST``)."""


def _rng(case: Case) -> np.random.Generator:
    return case_rng(case.id)


def _fd(f: Any, xs: list[np.ndarray], vs: list[np.ndarray]) -> np.ndarray:
    """Central difference of f along the direction vs."""
    plus = f(*[x + EPS * v for x, v in zip(xs, vs, strict=True)])
    minus = f(*[x - EPS * v for x, v in zip(xs, vs, strict=True)])
    return (np.asarray(plus) - np.asarray(minus)) / (2 * EPS)


def _dot(a: Any, b: Any) -> float:
    return float(np.sum(np.asarray(a) * np.asarray(b)))


def _setup(case: Case) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    rng = _rng(case)
    xs = case.inputs(rng)
    out = np.asarray(case.fn(*xs))
    u = rng.normal(size=out.shape)
    vs = [rng.normal(size=x.shape) for x in xs]
    return xs, u, vs, out


@pytest.mark.parametrize("case", DIFF, ids=lambda c: c.id)
def test_reverse_matches_finite_differences(case: Case) -> None:
    xs, u, vs, out = _setup(case)
    value, vjp_fn = ad.vjp(case.fn, *xs)
    np.testing.assert_allclose(value, out, rtol=1e-12, atol=1e-12)
    cts = vjp_fn(u)
    lhs = sum(_dot(c, v) for c, v in zip(cts, vs, strict=True))
    rhs = _dot(u, _fd(case.fn, xs, vs))
    assert lhs == pytest.approx(rhs, rel=1e-6, abs=1e-7)
    for c, x in zip(cts, xs, strict=True):
        assert np.shape(c) == x.shape


@pytest.mark.parametrize("case", DIFF, ids=lambda c: c.id)
def test_forward_matches_reverse(case: Case) -> None:
    xs, u, vs, _ = _setup(case)
    _, tangent = ad.jvp(case.fn, xs, vs)
    _, vjp_fn = ad.vjp(case.fn, *xs)
    lhs = _dot(u, tangent)
    rhs = sum(_dot(c, v) for c, v in zip(vjp_fn(u), vs, strict=True))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("case", DIFF, ids=lambda c: c.id)
def test_jacobian_modes_agree_in_one_pass(case: Case) -> None:
    xs, _, _, out = _setup(case)
    argnums = tuple(range(len(xs)))
    rev = ad.jacobian(case.fn, argnums, mode="reverse")(*xs)
    fwd = ad.jacobian(case.fn, argnums, mode="forward")(*xs)
    for k, (r, f) in enumerate(zip(rev, fwd, strict=True)):
        assert np.shape(r) == out.shape + xs[k].shape
        np.testing.assert_allclose(r, f, rtol=1e-10, atol=1e-10)
        # column j of the Jacobian is the derivative along the j-th basis direction
        basis = np.eye(xs[k].size).reshape((xs[k].size,) + xs[k].shape)
        for j in range(xs[k].size):
            vs = [np.zeros_like(x) for x in xs]
            vs[k] = basis[j]
            col = np.reshape(r, out.shape + (xs[k].size,))[..., j]
            np.testing.assert_allclose(col, _fd(case.fn, xs, vs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", SMOOTH, ids=lambda c: c.id)
def test_second_order(case: Case) -> None:
    """H v, forward-over-reverse and reverse-over-reverse, against differences of the gradient."""
    xs, u, vs, _ = _setup(case)
    nums = tuple(range(len(xs)))

    def scalar(*args: Any) -> Any:
        return ad.numpy.sum(case.fn(*args) * u)

    grad = ad.grad(scalar, nums)
    expected = [_fd(lambda *a, k=k: grad(*a)[k], xs, vs) for k in nums]  # type: ignore[misc]
    _, _, hv = ad.hvp_and_grad(scalar, xs, vs)

    def directional(*args: Any) -> Any:
        return sum(ad.numpy.sum(g * v) for g, v in zip(grad(*args), vs, strict=True))

    hv_rev = ad.grad(directional, nums)(*xs)
    for e, f, r in zip(expected, hv, hv_rev, strict=True):
        np.testing.assert_allclose(f, e, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", DIFF, ids=lambda c: c.id)
def test_float32_stays_float32(case: Case) -> None:
    xs64, u, _, out64 = _setup(case)
    xs32 = [x.astype(np.float32) for x in xs64]
    value, vjp_fn = ad.vjp(case.fn, *xs32)
    assert np.asarray(value).dtype == np.float32
    np.testing.assert_allclose(value, out64, rtol=1e-4, atol=1e-4)
    _, vjp64 = ad.vjp(case.fn, *xs64)
    for c32, c64 in zip(vjp_fn(u.astype(np.float32)), vjp64(u), strict=True):
        assert np.asarray(c32).dtype == np.float32
        np.testing.assert_allclose(c32, c64, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("case", [c for c in CASES if not c.diff], ids=lambda c: c.id)
def test_constant_ops_match_numpy(case: Case) -> None:
    xs = case.inputs(_rng(case))
    assert case.reference is not None
    np.testing.assert_array_equal(case.fn(*xs), case.reference(*xs))


def test_every_op_has_rules_and_a_test_row() -> None:
    public = {name for name in OPS if not name.startswith("_")}
    missing = public - {c.op for c in CASES}
    assert not missing, f"ops with no test row: {sorted(missing)}"
    for name, op in OPS.items():
        if isinstance(op, ComposedOp):  # through its parts' rules
            assert op.compose is not None and op.kind in ("composite", "nondiff"), name
        elif op.differentiable:
            assert op.vjps is not None and op.jvp_rule is not None, name
    contract = set(  # noqa: SIM905  (the contract's list, as API.md writes it)
        [
            "add",
            "subtract",
            "multiply",
            "divide",
            "power",
            "negative",
            "abs",
            "sign",
            "sqrt",
            "square",
            "exp",
            "expm1",
            "log",
            "log1p",
            "log2",
            "log10",
            "sin",
            "cos",
            "tan",
            "arcsin",
            "arccos",
            "arctan",
            "sinh",
            "cosh",
            "tanh",
            "arctan2",
            "sigmoid",
            "relu",
            "softplus",
            "maximum",
            "minimum",
            "clip",
            "where",
            "equal",
            "not_equal",
            "less",
            "less_equal",
            "greater",
            "greater_equal",
            "sum",
            "mean",
            "prod",
            "max",
            "min",
            "var",
            "std",
            "norm",
            "logsumexp",
            "reshape",
            "transpose",
            "swapaxes",
            "expand_dims",
            "squeeze",
            "concatenate",
            "stack",
            "broadcast_to",
            "flip",
            "tile",
            "repeat",
            "dot",
            "matmul",
            "outer",
            "inner",
            "tensordot",
            "einsum",
            "trace",
            "diag",
            "inv",
            "det",
            "slogdet",
            "solve",
            "cholesky",
            "softmax",
            "log_softmax",
            "zeros",
            "ones",
            "full",
            "eye",
            "arange",
            "linspace",
            "zeros_like",
            "ones_like",
            "detach",
            "stop_gradient",
            "getitem",
        ]
    )
    assert contract <= set(OPS), f"contract ops missing: {sorted(contract - set(OPS))}"


@pytest.mark.parametrize("case", DIFF, ids=lambda c: c.id)
def test_fast_layer_changes_no_answer(case: Case) -> None:
    """Value, VJP, JVP and both Jacobians with the fast layer on equal those with it off."""
    xs, u, vs, _ = _setup(case)
    argnums = tuple(range(len(xs)))

    def answers() -> list[Any]:
        value, vjp_fn = ad.vjp(case.fn, *xs)
        _, tangent = ad.jvp(case.fn, xs, vs)
        fwd = ad.jacobian(case.fn, argnums, mode="forward")(*xs)
        rev = ad.jacobian(case.fn, argnums, mode="reverse")(*xs)
        return [value, *vjp_fn(u), tangent, *fwd, *rev]

    with fast_mode(True):
        fast = answers()
    with fast_mode(False):
        plain = answers()
    for f, p in zip(fast, plain, strict=True):
        np.testing.assert_allclose(f, p, rtol=1e-13, atol=1e-14)
