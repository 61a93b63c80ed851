"""A request body before it is a model: its size from the raw bytes, and large b64 strings
decoded straight from them (``loads_body``). No web imports, but only the API layer uses it.
"""

from __future__ import annotations

import binascii
import os
from typing import Any

import orjson
import pybase64

from app.api.schemas import ARRAY, NAMED, request_fields_with
from app.compute.wire import B64Text

# What parsing a JSON body costs in Python objects, at most (CPython 3.11, 64-bit): a float
# is 24 bytes plus its 8-byte slot in a list; an empty list or dict with its GC header and
# slot about 80 (a 28 MiB body of ``[],`` parsed to about 780 MB).
PARSED_BYTES_PER_VALUE = 32
PARSED_BYTES_PER_CONTAINER = 80


class BodyShape:
    """Counts taken from a JSON body's raw bytes, before it is parsed (linear, in C)."""

    __slots__ = ("containers", "objects", "values")

    def __init__(self, raw: bytes) -> None:
        self.objects = raw.count(b"{")
        self.containers = self.objects + raw.count(b"[")
        # every value but the first of its container follows a comma (commas in strings
        # count too: an overestimate, never an under-one)
        self.values = raw.count(b",") + 1

    @property
    def parsed_bytes(self) -> int:
        """An upper estimate of the memory the parsed body takes."""
        return PARSED_BYTES_PER_VALUE * self.values + PARSED_BYTES_PER_CONTAINER * self.containers


def loads(body: bytes) -> Any:
    """Parse a request body with orjson (strict RFC 8259: no NaN literals)."""
    return orjson.loads(body)


# --------------------------------------------------------------------------- large b64 bodies
# orjson turns a large b64 input (1 MB of text) into a Python str,
# and the decoder then reads that str again. ``loads_body`` cuts each large b64 string out
# of the body, decodes it straight from the body's bytes, parses the small rest, and puts
# a ``B64Text`` (the decoded bytes) where the string was. Anything it is not sure of
# (a string that is not strict base64, a cut that is not an array field's "b64" member,
# invalid JSON) falls back to plain ``orjson.loads``, so what is accepted and every error
# stay the same.

B64_CUT_MIN_CHARS = 64 * 1024
_B64_MEMBER = b'"b64":"'
_CUT_MAX_QUOTES = 1024  # a body of many strings is parsed whole, not quote by quote
# The request fields whose values may hold a b64 array, and those that are dicts by name.
_CUT_FIELDS = request_fields_with(ARRAY)
_NAMED_FIELDS = frozenset(request_fields_with(NAMED))


def loads_body(body: bytes) -> Any:
    """``orjson.loads(body)``, with large b64 strings decoded straight from the body's bytes."""
    if len(body) >= B64_CUT_MIN_CHARS:
        parsed = _loads_cut(body)
        if parsed is not None:
            return parsed
    return orjson.loads(body)


def _loads_cut(body: bytes) -> Any:
    """The parsed body with its large b64 strings as ``B64Text``, or None (then parse it whole).

    Whatever precedes a match of ``"b64":"``, its second quote opens a string token (else
    the text holds a bare ``b64`` outside any string and the rest fails to parse too), and
    strict base64 holds no quote or backslash: so the cut is exactly one string token, and
    the body with a placeholder string in its place parses to the same document.
    """
    view = memoryview(body)
    nonce = os.urandom(8).hex()  # placeholders no client can name in advance
    parts: list[Any] = []
    found: dict[str, B64Text] = {}
    pos = search = quotes = 0
    # Quote by quote (memchr): bytes.find of the whole member was slow on 2 MB of
    # JSON numbers, whose digits defeat its skip table.
    while (at := body.find(b'"', search)) >= 0:
        quotes += 1
        if quotes > _CUT_MAX_QUOTES:
            return None
        if not body.startswith(_B64_MEMBER, at):
            search = at + 1
            continue
        start = at + len(_B64_MEMBER)
        end = body.find(b'"', start)
        if end < 0:
            return None
        search = end + 1
        if end - start < B64_CUT_MIN_CHARS:
            continue
        try:
            data = pybase64.b64decode(view[start:end], validate=True)
        except (binascii.Error, ValueError):
            return None
        key = f"autodiff-b64-{nonce}-{len(found)}"
        found[key] = B64Text(data, end - start)
        parts += (view[pos:start], key.encode("ascii"))
        pos = end
    if not found:
        return None
    parts.append(view[pos:])
    try:
        doc = orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError:
        return None
    placed = _place_cut(doc, found) if isinstance(doc, dict) else 0
    return doc if placed == len(found) else None


def _place_cut(doc: dict[str, Any], found: dict[str, B64Text]) -> int:
    """Put each ``B64Text`` back where its placeholder is an array field's "b64"; the count."""
    placed = 0
    for field in _CUT_FIELDS:
        value = doc.get(field)
        if field not in _NAMED_FIELDS:  # one value, or a list of them (one per output)
            items = value if isinstance(value, list) else [value]
        else:
            items = list(value.values()) if isinstance(value, dict) else []
        for item in items:
            if isinstance(item, dict):
                text = item.get("b64")
                if isinstance(text, str) and text in found:
                    item["b64"] = found[text]
                    placed += 1
    return placed
