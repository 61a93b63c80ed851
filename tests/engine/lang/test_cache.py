"""The compile cache: keyed by a hash of the canonical source or graph (and the limits)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import engine  # noqa: F401  (registers the ops)
import engine.lang as lang
from engine.errors import LanguageError, SizeLimitError
from engine.lang import Limits, cache_clear, cache_info, compile_cached

GRAPH = {
    "nodes": [{"id": "y", "op": "sum", "inputs": ["x"], "attrs": {"axis": 0}}],
    "outputs": ["y"],
}


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    cache_clear()
    yield
    cache_clear()


def test_repeated_text_is_compiled_once() -> None:
    first = compile_cached(expression="2 * dot(x, x)")
    again = compile_cached(expression="2 * dot(x, x)")
    assert again is first
    assert cache_info() == {"hits": 1, "misses": 1, "size": 1}
    assert compile_cached(expression="2 * dot(x, x) ") is not first  # different text


def test_graph_key_ignores_key_order() -> None:
    first = compile_cached(graph=GRAPH)
    reordered = {
        "outputs": ["y"],
        "nodes": [{"attrs": {"axis": 0}, "inputs": ["x"], "op": "sum", "id": "y"}],
    }
    assert compile_cached(graph=reordered) is first
    assert cache_info()["hits"] == 1


def test_limits_are_part_of_the_key() -> None:
    a = compile_cached(expression="x + 1")
    b = compile_cached(expression="x + 1", limits=Limits(max_iterations=5))
    assert a is not b and b.limits.max_iterations == 5


def test_text_and_graph_never_share_a_key() -> None:
    text = compile_cached(expression="x")
    graph = compile_cached(graph={"nodes": [], "outputs": ["x"]})
    assert text.kind == "expression" and graph.kind == "graph"


def test_errors_are_raised_every_time_and_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(LanguageError, match="attribute access"):
            compile_cached(expression="x.__class__")
    assert cache_info()["size"] == 0


def test_exactly_one_function() -> None:
    with pytest.raises(LanguageError, match="exactly one"):
        compile_cached()
    with pytest.raises(LanguageError, match="exactly one"):
        compile_cached(expression="x", graph=GRAPH)
    with pytest.raises(LanguageError, match="must be a string"):
        compile_cached(expression=3)  # type: ignore[arg-type]
    with pytest.raises(LanguageError, match="plain JSON"):
        compile_cached(graph={"nodes": [object()], "outputs": ["y"]})


def test_least_recently_used_is_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lang, "CACHE_SIZE", 2)
    a = compile_cached(expression="x + 1")
    compile_cached(expression="x + 2")
    assert compile_cached(expression="x + 1") is a  # a is now the most recent
    compile_cached(expression="x + 3")  # evicts x + 2
    assert cache_info()["size"] == 2
    assert compile_cached(expression="x + 1") is a
    hits = cache_info()["hits"]
    compile_cached(expression="x + 2")
    assert cache_info()["hits"] == hits  # recompiled


def test_oversized_inputs_are_refused_before_hashing() -> None:
    with pytest.raises(SizeLimitError):
        compile_cached(expression="x" * 200, limits=Limits(max_source_chars=100))
    nodes = [{"id": "same", "op": "exp"}] * 1_000_000
    with pytest.raises(SizeLimitError):
        compile_cached(graph={"nodes": nodes, "outputs": ["same"]})
