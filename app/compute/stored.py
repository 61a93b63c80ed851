"""Stored functions on the compute side: the record, its content hash, and what each
process keeps compiled and decoded, keyed by the function's id. No web imports.

A stored function is one store entry (``app.store``): ``meta`` (the function's source or
graph, the constants' names, dtypes and shapes, the free inputs; small, read on every
call) and ``data`` (the constants' raw little-endian bytes, read by a process only when it
has no decoded copy). The id is the SHA-256 of a canonical form of the function and the
constants' values, so the same function and data give the same id whatever encoding
carried them (a list, ``data`` or b64) and on any replica.

Each process (a pool worker, or the server for the in-process lanes) keeps the compiled
program and the decoded constants of the functions it ran, least recently used first
out, within ``CACHE_MAX_BYTES`` of constants and ``CACHE_MAX_PROGRAMS`` programs. What is
cached is immutable (content-addressed, arrays read-only), so sharing it between calls
is safe; whether the id still exists is asked of the store on every call by the API.
"""

from __future__ import annotations

import hashlib
import keyword
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.compute import wire
from app.compute.task import Task, TaskLimits
from app.compute.wire import clip, short
from app.store import UnknownEntryError
from app.store.base import shared_store
from engine import lang
from engine.errors import AutodiffError
from engine.lang.limits import Limits

ID_PREFIX = "sha256:"
KEY_PREFIX = "fn:"
CACHE_MAX_BYTES = 256 * 1024 * 1024
CACHE_MAX_PROGRAMS = 256


class StoredFunctionError(AutodiffError):
    """A stored function's request that does not fit it (an input that is a constant)."""

    kind = "invalid-request"
    title = "Invalid request"


def store_key(function_id: str) -> str:
    """The store's key of a function id (``sha256:<hex>`` -> ``fn:<hex>``)."""
    return KEY_PREFIX + function_id.removeprefix(ID_PREFIX)


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Record:
    """A function and its constants, ready to store: the id, meta and data."""

    id: str
    meta: dict[str, Any]
    data: bytes

    def meta_bytes(self) -> bytes:
        return orjson.dumps(self.meta)


def make_record(
    expression: str | None,
    graph: dict[str, Any] | None,
    constants: dict[str, Any],
    limits: TaskLimits,
) -> Record:
    """Compile the function (its errors are the usual 422s), decode the constants, and
    build the record with its content hash."""
    program = _compile(expression, graph, limits)
    arrays = {}
    for name in sorted(constants):
        arrays[name] = _decode_constant(name, constants[name], limits)
    digest = hashlib.sha256(b"autodiff-function-v1\0")
    function_text = (
        expression.encode()
        if expression is not None
        else orjson.dumps(graph, option=orjson.OPT_SORT_KEYS)
    )
    _feed(digest, b"expression" if expression is not None else b"graph", function_text)
    layout = []
    for name, arr in arrays.items():
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header = orjson.dumps([name, arr.dtype.name, list(arr.shape)])
        _feed(digest, header, raw)
        layout.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
    function_id = ID_PREFIX + digest.hexdigest()
    free = [n for n in program.free_names if n not in arrays]
    data = b"".join(
        np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes() for a in arrays.values()
    )
    unused = [n for n in arrays if n not in program.free_names]
    meta = {
        "id": function_id,
        "kind": "function",
        "expression": expression,
        "graph": graph,
        "free_inputs": free,
        "constants": layout,
        "data_bytes": len(data),
        "created": time.time(),
        "warnings": [
            f"constant {clip(n)} is not used by the function; it is stored all the same"
            for n in unused
        ],
    }
    return Record(function_id, meta, data)


def _feed(digest: Any, *parts: bytes) -> None:
    for part in parts:  # length-prefixed: no two different records hash the same bytes
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)


def _compile(expression: str | None, graph: dict[str, Any] | None, limits: TaskLimits) -> Any:
    return lang.compile_cached(
        expression=expression,
        graph=graph,
        limits=Limits(
            max_source_chars=limits.max_source_chars,
            max_iterations=limits.max_iterations,
            max_elements=limits.max_intermediate_elements,
        ),
    )


def _decode_constant(name: str, raw: Any, limits: TaskLimits) -> np.ndarray[Any, Any]:
    loc = ["body", "constants", short(name)]
    ascii_identifier = name.isascii() and name.isidentifier()
    if not ascii_identifier or name.startswith("_") or keyword.iskeyword(name):
        raise StoredFunctionError(
            f"constant name {clip(name)} is not a name the function can use", loc=loc
        )
    if isinstance(raw, dict) and raw.get("requires_grad") is True:
        raise StoredFunctionError(
            f"constant {clip(name)} has requires_grad true: stored constants are never "
            "differentiated (pass it in inputs instead)",
            loc=[*loc, "requires_grad"],
        )
    arr, _ = wire.decode_input(raw, loc, max_elements=limits.max_input_elements)
    return arr


def public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """What ``POST /functions`` and ``GET /functions/{id}`` answer."""
    return {
        "id": meta["id"],
        "free_inputs": meta["free_inputs"],
        "constants": {
            c["name"]: {"dtype": c["dtype"], "shape": c["shape"]} for c in meta["constants"]
        },
        "expression": meta["expression"],
        "graph": meta["graph"],
        "bytes": meta["data_bytes"],
        "warnings": meta.get("warnings", []),
    }


# --------------------------------------------------------------------------- per process


class _Lru:
    """A small thread-safe LRU map bounded by entries and by a byte count."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: Any, size: int = 0) -> None:
        if size > self.max_bytes:
            return  # larger than the whole cache: used once, not kept
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                _, (_, gone) = self._items.popitem(last=False)
                self._bytes -= gone

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


PROGRAMS = _Lru(CACHE_MAX_PROGRAMS, 2**62)
CONSTANTS = _Lru(CACHE_MAX_PROGRAMS, CACHE_MAX_BYTES)


def program(task: Task) -> Any:
    """The stored function's compiled program (compiled once per process, by its id)."""
    assert task.function is not None and task.function_meta is not None
    found = PROGRAMS.get(task.function)
    if found is None:
        meta = task.function_meta
        found = _compile(meta["expression"], meta["graph"], task.limits)
        PROGRAMS.put(task.function, found)
    return found


def bind_constants(
    task: Task, inputs: dict[str, Any], requires: dict[str, bool]
) -> tuple[dict[str, Any], dict[str, bool]]:
    """The request's inputs with the stored constants added (never differentiated)."""
    constants = load_constants(task)
    for name in inputs:
        if name in constants:
            raise StoredFunctionError(
                f"input {clip(name)} is a stored constant of this function: leave it out of "
                "inputs (or store the function without it)",
                loc=["body", "inputs", short(name)],
            )
    merged = {**inputs, **constants}
    flags = {**requires, **dict.fromkeys(constants, False)}
    return merged, flags


def load_constants(task: Task) -> dict[str, np.ndarray[Any, Any]]:
    """The stored constants, decoded (from this process's cache, else from the store)."""
    assert task.function is not None and task.function_meta is not None
    found = CONSTANTS.get(task.function)
    if found is not None:
        return dict(found)
    layout = task.function_meta["constants"]
    data = b""
    if layout:
        assert task.store is not None
        got = shared_store(task.store).get_data(store_key(task.function))
        if got is None:
            raise UnknownEntryError(unknown_detail(task.function))
        data = got
    arrays, offset = {}, 0
    for c in layout:
        dtype = np.dtype(c["dtype"]).newbyteorder("<")
        count = int(np.prod(c["shape"], dtype=np.int64))
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(c["shape"])
        arrays[c["name"]] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        offset += count * dtype.itemsize
    CONSTANTS.put(task.function, arrays, len(data))
    return dict(arrays)


def unknown_detail(function_id: str) -> str:
    return (
        f"no stored function has the id {function_id} (never stored, deleted, expired or "
        "evicted): store it again with POST /functions and retry"
    )
