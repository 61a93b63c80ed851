"""The language: safe text and JSON graphs compiled to plain-data Programs, run on engine ops.

Nothing a user sends is evaluated by Python: text is parsed with ``ast.parse``,
checked against an allow-list and walked by our own interpreter.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from engine.errors import LanguageError
from engine.lang.graph import compile_graph
from engine.lang.limits import DEFAULT_LIMITS, Limits
from engine.lang.parse import compile_source
from engine.lang.program import Program

__all__ = [
    "Limits",
    "Program",
    "cache_clear",
    "cache_info",
    "compile_cached",
    "compile_graph",
    "compile_source",
]

CACHE_SIZE = 512
_cache: OrderedDict[str, Program] = OrderedDict()
_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0}


def _key(expression: str | None, graph: Any, limits: Limits) -> str:
    if (expression is None) == (graph is None):
        raise LanguageError("give exactly one of an expression or a graph")
    if expression is not None:
        if not isinstance(expression, str):
            raise LanguageError("the expression must be a string")
        payload = "text\0" + expression
    else:
        try:
            payload = "graph\0" + json.dumps(graph, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):
            raise LanguageError("the graph is not plain JSON data") from None
    payload += "\0" + repr(limits)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def compile_cached(
    expression: str | None = None, graph: Any = None, limits: Limits | None = None
) -> Program:
    """``compile_source``/``compile_graph`` behind an LRU cache keyed by a hash of the source."""
    limits = limits or DEFAULT_LIMITS
    if isinstance(expression, str) and len(expression) > limits.max_source_chars:
        return compile_source(expression, limits)  # refused before hashing a huge text
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if isinstance(nodes, list) and len(nodes) > limits.max_graph_nodes:
        return compile_graph(graph, limits)  # refused before serialising a huge graph
    key = _key(expression, graph, limits)
    with _lock:
        program = _cache.get(key)
        if program is not None:
            _cache.move_to_end(key)
            _stats["hits"] += 1
            return program
    if expression is not None:
        program = compile_source(expression, limits)
    else:
        program = compile_graph(graph, limits)
    with _lock:
        _stats["misses"] += 1
        _cache[key] = program
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return program


def cache_info() -> dict[str, int]:
    """Hits, misses and current size of the compile cache."""
    with _lock:
        return {**_stats, "size": len(_cache)}


def cache_clear() -> None:
    """Empty the compile cache (tests, benchmarks)."""
    with _lock:
        _cache.clear()
        _stats.update(hits=0, misses=0)
