"""Smoke tests of the benchmark harness: its agreement check passes right answers, stops wrong ones.

No peer framework is needed (NumPy and our engine only) and nothing is timed against a limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench import bodies, fw_numpy, loadgen
from bench.check import DisagreementError, compare, rel_error
from bench.entries import flat_numpy
from bench.run import check_case
from bench.timing import Budget, measure
from bench.workloads import Case, select

SMALL = ["W1", "W2 n=4", "W8 n=4"]


@pytest.mark.parametrize("key", SMALL)
def test_check_passes_hand_and_ours(key: str) -> None:
    """The floor, the hand gradient and ours agree on small workloads."""
    (case,) = select(key)
    errors = check_case(case, ["numpy", "ours"])
    assert "ours" in errors
    assert all(err <= 1e-8 for err in errors.values())


def test_check_compares_the_hand_gradient_with_ours() -> None:
    """W2's hand-written gradient is one of the checked answers."""
    (case,) = select("W2 n=4")
    assert "numpy (hand)" in check_case(case, ["numpy", "ours"])


def test_check_stops_a_wrong_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand gradient off by 1e-6 relative makes the whole check fail."""

    def wrong(x: np.ndarray) -> tuple[Any, np.ndarray]:
        value, g = fw_numpy.w2_grad(x)
        return value, g * (1 + 1e-6)

    monkeypatch.setitem(fw_numpy.GRADIENTS, "W2", wrong)
    (case,) = select("W2 n=4")
    with pytest.raises(DisagreementError, match="numpy \\(hand\\)"):
        check_case(case, ["numpy", "ours"])


def test_check_stops_a_wrong_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """A framework's forward is checked against the NumPy floor too."""
    monkeypatch.setitem(fw_numpy.FORWARDS, "W8", lambda a: 0.0)
    (case,) = select("W8 n=4")
    with pytest.raises(DisagreementError, match="forward"):
        check_case(case, ["numpy", "ours"])


def test_compare_tolerance_is_relative_to_the_largest_entry() -> None:
    """1e-9 relative passes, 1e-7 fails; zeros in the reference do not blow the ratio up."""
    ref = [np.array([0.0, 1e6, -3.0])]
    assert compare("c", "e", ref, [ref[0] + 1e-3]).max_rel_error == pytest.approx(1e-9)
    with pytest.raises(DisagreementError):
        compare("c", "e", ref, [ref[0] + 0.1])


def test_rel_error_shapes_and_non_finite() -> None:
    """A shape mismatch never agrees; equal NaN/inf patterns do."""
    assert rel_error(np.zeros(3), np.zeros(4)) == float("inf")
    same = np.array([np.nan, np.inf, 1.0])
    assert rel_error(same, same.copy()) == 0.0
    assert rel_error(same, np.array([np.nan, -np.inf, 1.0])) == float("inf")


def test_compare_counts_parts() -> None:
    """A missing part of the answer is a disagreement."""
    with pytest.raises(DisagreementError, match="answered 1 arrays"):
        compare("c", "e", [np.zeros(1), np.zeros(1)], [np.zeros(1)])


def test_flat_numpy_flattens_nested_results() -> None:
    """Scalars, arrays and nested tuples become one flat list of float64 arrays."""
    parts = flat_numpy((1.5, (np.arange(3), [np.eye(2)])))
    assert [p.shape for p in parts] == [(), (3,), (2, 2)]
    assert all(p.dtype == np.float64 for p in parts)


def test_measure_reports_a_consistent_median() -> None:
    """The median lies between min and max, from the requested number of repeats."""
    calls = []
    t = measure(
        lambda: calls.append(1), Budget(min_loop_s=1e-4, repeats=3, warmup=1, max_total_s=1.0)
    )
    assert t.repeats == 3
    assert t.min_s <= t.median_s <= t.max_s
    assert len(calls) >= 1 + 3 * t.number


def test_select_rejects_unknown_workloads() -> None:
    """A typo in --only is an error, not an empty run."""
    assert [c.key for c in select("W6")] == ["W6 n=64", "W6 n=256", "W6 n=1024"]
    with pytest.raises(SystemExit):
        select("W9")


def test_b64_round_trip() -> None:
    """What the HTTP bench sends in b64 decodes to the same array."""
    a = np.random.default_rng(0).standard_normal((3, 4))
    assert np.array_equal(bodies.decode_array(bodies.b64(a)), a)


def test_http_answer_matches_in_process_shape() -> None:
    """A /vjp answer maps onto W1's (y, vjp) parts."""
    (case,) = select("W1")
    doc = {"value": [18.0, 38.0, 37.0], "vjp": {"x": [17.0, 52.0, 81.0]}}
    y, vjp = bodies.answer(case, doc)
    assert vjp.tolist() == [17.0, 52.0, 81.0] and y.shape == (3,)


def test_load_mix_interleaves_by_weight() -> None:
    """Weights repeat a kind; the order is fixed and mixed."""
    specs = [loadgen.Spec("a", "GET", "/", weight=3), loadgen.Spec("b", "GET", "/")]
    order = [s.tag for s in loadgen._expand(specs)]
    assert sorted(order) == ["a", "a", "a", "b"]
    assert order == [s.tag for s in loadgen._expand(specs)]


def test_case_inputs_are_seeded() -> None:
    """Two builds of a case hold identical inputs."""
    a: Case = select("W4")[0]
    b: Case = select("W4")[0]
    assert all(np.array_equal(a.inputs[k], b.inputs[k]) for k in a.inputs)


def test_rounds_pool_their_samples() -> None:
    """Two rounds of one entry merge into one timing over all their samples."""
    from bench.run import merge_rounds
    from bench.timing import summarise

    def row(samples: list[float]) -> dict[str, Any]:
        t = summarise(samples, samples, "cpu", 10).as_dict()
        return {"name": "ours", "forward": None, "gradient": t}

    (merged,) = merge_rounds([[row([1.0, 2.0, 3.0])], [row([10.0, 20.0])]])
    assert merged["forward"] is None
    assert merged["gradient"]["repeats"] == 5
    assert merged["gradient"]["median_s"] == 3.0
    assert merged["gradient"]["max_s"] == 20.0


def test_only_a_full_run_of_every_case_rewrites_the_readme_headlines(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The READMEs' tables change only for every case; the text around the markers stays."""
    from bench import report
    from bench.workloads import all_cases

    every = {"cases": [{"key": c.key} for c in all_cases()], "meta": {"date": "D"}}
    assert report._every_case(every)
    assert not report._every_case({"cases": [{"key": "W4"}], "meta": {"date": "D"}})
    monkeypatch.setattr(report, "headline_text", lambda results: "| the table |")
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- headline:start -->\nold\n<!-- headline:end -->\nafter\n")
    report._update_readme(readme, every)
    text = readme.read_text()
    assert "old" not in text and "| the table |" in text and "Run D" in text
    assert text.startswith("before\n") and text.endswith("after\n")
