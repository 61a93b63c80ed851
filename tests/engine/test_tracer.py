"""The tracer's sharing and ownership: an array expression traced twice is one node, and
the backward pass writes only into buffers it made (in-place rules, in-place sums)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine as ad
import engine.numpy as anp
from engine.core.trace import open_tapes
from engine.fast import fast_mode, inplace
from engine.graph import Recorder
from engine.registry import OPS


@pytest.fixture(autouse=True)
def _fast_layer_on() -> Iterator[None]:
    """These tests look at the fast layer's shortcuts themselves: it is on, whatever
    ``AUTODIFF_ENGINE_FAST`` says."""
    with fast_mode(True):
        yield


RNG = np.random.default_rng(11)
X = RNG.uniform(0.5, 2.0, size=(4, 3))  # positive: log and division are defined
C = RNG.uniform(0.5, 2.0, size=(4, 3))


def _fd_grad(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@contextmanager
def _counting_into(name: str) -> Iterator[list[int]]:
    """Count the calls of op ``name``'s in-place rules that did the work (not None)."""
    op = OPS[name]
    saved = inplace._inplace[op]
    calls: list[int] = []

    def counted(rule: Any) -> Any:
        if rule is None:
            return None

        def into(*args: Any, **kwargs: Any) -> Any:
            out = rule(*args, **kwargs)
            if out is not None:
                calls.append(1)
            return out

        return into

    inplace._inplace[op] = tuple(counted(r) for r in saved)
    try:
        yield calls
    finally:
        inplace._inplace[op] = saved


# op under test, the function of u, and its derivative: sum(sin(OP(u))) gives OP a
# cotangent that sin's rule made (cos(OP(u)) * 1), which the walk owns
IN_PLACE = [
    ("negative", lambda u: -u, lambda u: -np.ones_like(u)),
    ("subtract", lambda u: 2.0 - u, lambda u: -np.ones_like(u)),
    ("multiply", lambda u: u * 1.5, lambda u: np.full_like(u, 1.5)),
    ("multiply", lambda u: 1.5 * u, lambda u: np.full_like(u, 1.5)),
    ("multiply", lambda u: u * C, lambda u: C),
    ("divide", lambda u: u / 3.0, lambda u: np.full_like(u, 1 / 3.0)),
    ("divide", lambda u: u / C, lambda u: 1 / C),
    ("power", lambda u: u**2, lambda u: 2 * u),
    ("square", lambda u: anp.square(u), lambda u: 2 * u),
    ("exp", lambda u: anp.exp(u), lambda u: np.exp(u)),
    ("log", lambda u: anp.log(u), lambda u: 1 / u),
]


@pytest.fixture
def small_arrays_owned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the walk own arrays of any size (it skips small ones), so that the checks
    against finite differences and second order stay small and quick."""
    monkeypatch.setattr(inplace, "_OWN_MIN_SIZE", 1)


@pytest.mark.usefixtures("small_arrays_owned")
@pytest.mark.parametrize(
    ("name", "op", "d"), IN_PLACE, ids=[f"{c[0]}-{i}" for i, c in enumerate(IN_PLACE)]
)
def test_in_place_rules_give_the_usual_gradient_and_run(name: str, op: Any, d: Any) -> None:
    x, keep = X.copy(), X.copy()
    c_keep = C.copy()

    def f(u: Any) -> Any:
        return anp.sum(anp.sin(op(u)))

    with _counting_into(name) as calls:
        g = ad.grad(f)(x)
    assert calls, f"{name}'s in-place rule did not run"
    expected = np.cos(op(x)) * d(x)
    np.testing.assert_allclose(g, expected, rtol=1e-13)
    np.testing.assert_allclose(g, _fd_grad(lambda v: float(f(v)), x), rtol=1e-7)
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(C, c_keep)
    # batched cotangents (a Jacobian's rows) through the same rules, both modes agree
    jac_r = ad.jacobian(lambda u: anp.sin(op(u)), mode="reverse")(x)
    jac_f = ad.jacobian(lambda u: anp.sin(op(u)), mode="forward")(x)
    np.testing.assert_allclose(jac_r, jac_f, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jac_r.reshape(12, 12).diagonal(), expected.ravel(), rtol=1e-13)
    # second order sees boxes, never raw buffers, so it is untouched by the in-place path
    h = ad.hessian(f)(x).reshape(12, 12)
    fd_h = np.stack(
        [_fd_grad(lambda v, i=i: float(ad.grad(f)(v).ravel()[i]), x).ravel() for i in range(12)]
    )
    np.testing.assert_allclose(h, fd_h, rtol=1e-5, atol=1e-7)


def test_w3_at_full_size_runs_in_place_and_matches_the_closed_form() -> None:
    x = np.random.default_rng(3).normal(size=20_000)  # over the size the walk looks at
    keep = x.copy()

    def w3(u: Any) -> Any:
        return anp.sum(anp.sin(u) * anp.exp(-(u**2)) + anp.log(1 + u**2))

    with _counting_into("negative") as neg, _counting_into("power") as power:
        g = ad.grad(w3)(x)
    assert neg and power  # -g and g * 2x were written into buffers the walk made
    e = np.exp(-(x**2))
    expected = e * (np.cos(x) - 2 * x * np.sin(x)) + 2 * x / (1 + x**2)
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(x, keep)


@pytest.mark.usefixtures("small_arrays_owned")
def test_in_place_rules_skip_broadcasting_and_other_dtypes() -> None:
    row = X[0]  # (3,) broadcast against a (4, 3) constant: the rule must sum rows back
    with _counting_into("multiply") as calls:
        g = ad.grad(lambda u: anp.sum(anp.sin(u * C)))(row)
    assert not calls
    np.testing.assert_allclose(g, np.sum(np.cos(row * C) * C, axis=0), rtol=1e-13)
    x32 = X.astype(np.float32)  # float32 input, float64 constant: the answer is float64
    g32 = ad.grad(lambda u: anp.sum(anp.sin(u * C)))(x32)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, np.cos(x32 * C) * C, rtol=1e-6)


@pytest.mark.usefixtures("small_arrays_owned")
def test_the_walk_never_writes_caller_arrays_forward_values_or_cotangents() -> None:
    x, ct = X.copy(), RNG.normal(size=X.shape)
    x_keep, ct_keep = x.copy(), ct.copy()
    seen: dict[str, Any] = {}

    def f(u: Any) -> Any:
        e = anp.exp(-u)  # values that rules read again: they must survive the walk
        seen["e"] = e
        return anp.log(e * 2.0 + u) - e

    out, pullback = ad.vjp(f, x)
    e_value = np.asarray(seen["e"].value).copy()
    (g1,) = pullback(ct)
    (g2,) = pullback(ct)  # the same tape again: nothing it holds was overwritten
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(x, x_keep)
    np.testing.assert_array_equal(ct, ct_keep)
    np.testing.assert_array_equal(seen["e"].value, e_value)
    e = np.exp(-x)
    expected = ct * ((-2 * e + 1) / (2 * e + x) + e)
    np.testing.assert_allclose(g1, expected, rtol=1e-12)


def _op_counts(f: Callable[[Any], Any], x: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """The ops on the tape of ``grad(f)(x)``, counted by name, and the gradient."""
    tapes: list[Any] = []

    def traced(u: Any) -> Any:
        tapes.append(open_tapes()[u.level].tape)
        return f(u)

    g = ad.grad(traced)(x)
    counts: dict[str, int] = {}
    for v in tapes[0]:
        counts[v.op.name] = counts.get(v.op.name, 0) + 1
    return counts, g


def test_an_array_expression_written_twice_is_one_node() -> None:
    def f(u: Any) -> Any:
        return anp.sum(anp.exp(-(u**2)) + anp.log(1 + u**2) + (u - 2.0) * (2.0 - u))

    counts, g = _op_counts(f, X)
    assert counts["power"] == 1  # u ** 2 twice: one node
    assert counts["subtract"] == 2  # u - 2 and 2 - u are not the same
    np.testing.assert_allclose(g, _fd_grad(lambda v: float(f(v)), X), rtol=1e-7)
    # other constants, other constant types (2 and 2.0) and other nodes are not shared
    counts, _ = _op_counts(lambda u: anp.sum(u**2 + u**2.0 + u**3 + (u * 1.0) ** 2), X)
    assert counts["power"] == 4
    # 0 == -0.0, but their products differ in the sign of zero: never shared
    counts, _ = _op_counts(lambda u: anp.sum(1.0 / (u * 0.0 + 1.0) + 1.0 / (u * -0.0 + 1.0)), X)
    assert counts["multiply"] == 2
    (plus, minus), _ = ad.vjp(lambda u: (u * 0.0, u * -0.0), X)  # X > 0
    assert not np.signbit(plus).any() and np.signbit(minus).all()
    with Recorder() as rec:  # the graph's metadata lists every op as written
        ad.grad(lambda u: anp.sum(u**2 + u**2))(X)
    assert [n["op"] for n in rec.nodes].count("power") == 2


def test_scalars_are_not_shared() -> None:
    # NumPy scalars (x[0]) skip the memo: it costs more than the op it would save
    counts: list[int] = []

    def f(u: Any) -> Any:
        a = u[0]
        out = a * 2.0 + a * 2.0
        counts.append(sum(1 for v in open_tapes()[u.level].tape if v.op.name == "multiply"))
        return out

    ad.grad(f)(np.array([1.0, 2.0]))
    assert counts == [2]


@pytest.mark.usefixtures("small_arrays_owned")
def test_fresh_cotangent_takes_the_sum_in_place() -> None:
    # x gets the caller's cotangent first (not the walk's), then a rule's new array:
    # the sum goes into the new array, never into the caller's
    x, ct = X.copy(), RNG.normal(size=X.shape)
    keep = ct.copy()
    _, pullback = ad.vjp(lambda u: u + anp.exp(u), x)
    (g,) = pullback(ct)
    np.testing.assert_allclose(g, ct * (1 + np.exp(x)), rtol=1e-13)
    np.testing.assert_array_equal(ct, keep)


# --- random programs: the in-place path changes no bit of any gradient ------------------

OPERATOR_STEPS: list[Callable[[Any], Any]] = [
    lambda u: -u,
    lambda u: u / 2.0,
    lambda u: 2.0 - u,
    lambda u: u**2,
    lambda u: anp.exp(u * 0.5),
    lambda u: anp.log(u * u + 1.0),
    lambda u: anp.sin(u) * 1.5,
    lambda u: u * u,
]


@st.composite
def operator_programs(draw: st.DrawFn) -> Callable[[Any], Any]:
    """Chains and fan-outs of the ops that have in-place rules, over a pool of values."""
    plan = [
        (draw(st.integers(0, len(OPERATOR_STEPS) - 1)), draw(st.integers(0, 6)))
        for _ in range(draw(st.integers(1, 7)))
    ]
    combine = draw(st.booleans())

    def f(u: Any) -> Any:
        pool = [u]
        for step, pick in plan:
            pool.append(OPERATOR_STEPS[step](pool[pick % len(pool)]))
        out = pool[-1] + pool[len(pool) // 2] if combine else pool[-1]
        return anp.sum(anp.tanh(out))

    return f


@settings(max_examples=80, deadline=None, derandomize=True)
@given(operator_programs(), st.lists(st.floats(-1.5, 1.5), min_size=6, max_size=6))
def test_owning_buffers_changes_no_bit_of_the_gradient(f: Any, point: list[float]) -> None:
    x = np.array(point).reshape(2, 3)
    keep = x.copy()
    saved = inplace._OWN_MIN_SIZE
    try:
        inplace._OWN_MIN_SIZE = 1  # every array the walk makes counts as owned
        owned = ad.grad(f)(x)
        jac_owned = ad.jacobian(ad.grad(f), mode="reverse")(x)
        inplace._OWN_MIN_SIZE = 10**12  # none does: the usual rules, new arrays throughout
        plain = ad.grad(f)(x)
        jac_plain = ad.jacobian(ad.grad(f), mode="reverse")(x)
    finally:
        inplace._OWN_MIN_SIZE = saved
    np.testing.assert_array_equal(owned, plain)
    np.testing.assert_array_equal(jac_owned, jac_plain)
    np.testing.assert_array_equal(x, keep)
    eps, v = 1e-6, np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    fd = (float(f(x + eps * v)) - float(f(x - eps * v))) / (2 * eps)
    assert np.isclose(np.sum(owned * v), fd, rtol=1e-5, atol=1e-6)
