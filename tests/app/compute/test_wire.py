"""Arrays in and out: JSON lists, objects, b64, non-finite words, strict JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.api.body import loads_body
from app.api.errors import status_of  # engine errors carry no status (issue 14)
from app.compute.wire import (
    B64Text,
    InputError,
    b64decode,
    decode_input,
    decode_value,
    render,
)
from engine.errors import SizeLimitError

LOC = ["body", "inputs", "x"]


def decode(value: Any, limit: int = 1000) -> tuple[np.ndarray, bool]:
    return decode_input(value, LOC, max_elements=limit)


def strict(data: bytes) -> Any:
    def refuse(word: str) -> Any:
        raise AssertionError(word)

    return json.loads(data, parse_constant=refuse)


def test_numbers_and_nested_lists() -> None:
    arr, rg = decode(3)
    assert arr.shape == () and arr.dtype == np.float64 and rg is True
    arr, _ = decode([[1, 2], [3, 4]])
    np.testing.assert_array_equal(arr, [[1.0, 2.0], [3.0, 4.0]])
    assert arr.dtype == np.float64


def test_object_form_with_dtype_and_requires_grad() -> None:
    arr, rg = decode({"data": [1, 2], "dtype": "float32", "requires_grad": False})
    assert arr.dtype == np.float32 and rg is False
    arr, _ = decode({"data": [1, 2, 3, 4], "shape": [4]})
    assert arr.shape == (4,)


def test_b64_round_trip() -> None:
    x = np.linspace(0, 1, 12).reshape(3, 4)
    arr, _ = decode({"b64": base64.b64encode(x.tobytes()).decode(), "shape": [3, 4]})
    np.testing.assert_array_equal(arr, x)
    x32 = x.astype(np.float32)
    arr, _ = decode(
        {"b64": base64.b64encode(x32.tobytes()).decode(), "shape": [3, 4], "dtype": "float32"}
    )
    np.testing.assert_array_equal(arr, x32)


def test_nonfinite_words_in() -> None:
    arr, _ = decode([1.0, "nan", "inf", "-inf"])
    assert np.isnan(arr[1]) and arr[2] == np.inf and arr[3] == -np.inf
    arr, _ = decode("-inf")
    assert arr == -np.inf


@pytest.mark.parametrize(
    ("value", "loc"),
    [
        ([[1, 2], [3]], LOC),
        (["one", 2], [*LOC, 0]),  # the string itself
        ("hello", LOC),
        ([None, 1], LOC),
        ([True, False], LOC),
        ([{"a": 1}], LOC),
        ({"data": [1], "dtype": "int8"}, [*LOC, "dtype"]),
        # unhashable or non-string dtypes were a TypeError (a 500) before
        ({"data": [1], "dtype": {}}, [*LOC, "dtype"]),
        ({"data": [1], "dtype": ["float64"]}, [*LOC, "dtype"]),
        ({"data": [1], "dtype": 64}, [*LOC, "dtype"]),
        ({"data": [1], "b64": "AAAA"}, LOC),
        ({"b64": "AAAA"}, [*LOC, "shape"]),
        ({"b64": "!!", "shape": [1]}, [*LOC, "b64"]),
        ({"b64": base64.b64encode(b"12345678").decode(), "shape": [2]}, [*LOC, "b64"]),
        ({"data": [1, 2], "shape": [3]}, [*LOC, "shape"]),
        ({"data": [1], "shape": [-1]}, [*LOC, "shape"]),
        ({"data": [1], "requires_grad": "yes"}, [*LOC, "requires_grad"]),
        ({"data": [1], "colour": "red"}, LOC),
    ],
)
def test_invalid_values_name_their_place(value: Any, loc: list[Any]) -> None:
    with pytest.raises(InputError) as err:
        decode(value)
    assert err.value.loc == loc
    assert status_of(err.value) == 422


# Strings on both sides of strict base64: the fast decoder (pybase64) and binascii's
# strict mode disagree on some ("gCf2=": padding after a complete group, accepted by
# binascii); the service must accept and explain exactly as binascii does.
B64_CASES = [
    "",
    "AAAA",
    "gCf2",
    "gCf2=",
    "2JbpoXsnMIrU==",
    "abc",
    "ab=c",
    "a b=",
    "abcd\n",
    "ab==ab==",
    "abc*",
    "=abc",
    "abc===",
    "ab\x00c",
    "\u00e9",
    "-_-_",
    "AAECAwQFBgc=",
]


def _binascii(text: str) -> bytes | str:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        return f"invalid base64: {exc}"


@pytest.mark.parametrize("text", B64_CASES)
def test_b64decode_accepts_and_explains_as_binascii_strict(text: str) -> None:
    try:
        got: bytes | str = b64decode(text, LOC)
    except InputError as exc:
        assert exc.loc == LOC
        got = exc.message
    assert got == _binascii(text)


def test_size_limit_before_decoding() -> None:
    with pytest.raises(SizeLimitError):
        decode(list(range(11)), limit=10)
    # the b64 form is refused from its shape alone, before its bytes are decoded
    with pytest.raises(SizeLimitError):
        decode({"b64": "not even base64", "shape": [10**9]}, limit=10)


def test_decode_value_refuses_requires_grad() -> None:
    with pytest.raises(InputError):
        decode_value({"data": 1.0, "requires_grad": True}, ["body", "cotangent"], max_elements=10)
    assert decode_value([1, 2], ["body", "cotangent"], max_elements=10).shape == (2,)


def test_render_is_strict_json_with_words_and_warnings() -> None:
    out = strict(
        render({"value": np.array([1.0, np.nan, np.inf, -np.inf]), "g": {"x": float("nan")}})
    )
    assert out["value"] == [1.0, "nan", "inf", "-inf"]
    assert out["g"]["x"] == "nan"
    assert any("value" in w for w in out["warnings"]) and any("g.x" in w for w in out["warnings"])


def test_render_scalars_arrays_and_views() -> None:
    x = np.arange(12.0).reshape(3, 4)
    out = strict(
        render({"value": np.float64(2.5), "t": x.T, "i": np.arange(3), "n": np.array(1.5)})
    )
    assert out["value"] == 2.5 and out["n"] == 1.5
    assert out["t"] == x.T.tolist()  # non-contiguous views are written correctly
    assert out["i"] == [0, 1, 2]
    assert "warnings" not in out


def test_render_b64() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = strict(render({"value": x, "s": np.float64(1.0)}, "b64"))
    assert out["value"]["shape"] == [2, 3] and out["value"]["dtype"] == "float32"
    back = np.frombuffer(base64.b64decode(out["value"]["b64"]), dtype="<f4").reshape(2, 3)
    np.testing.assert_array_equal(back, x)
    assert out["s"] == 1.0  # scalars stay numbers


def test_errors_do_not_echo_long_values() -> None:
    with pytest.raises(InputError) as err:
        decode(["x" * 100_000])
    assert len(err.value.message) < 200


# --------------------------------------------------------------------------- large b64 bodies

BIG = np.linspace(-3, 3, 20_000)
BIG_B64 = base64.b64encode(BIG.tobytes()).decode()


def plain(doc: Any) -> Any:
    """The document with each ``B64Text`` written back as its base64 text."""
    if isinstance(doc, dict):
        return {k: plain(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [plain(v) for v in doc]
    if isinstance(doc, B64Text):
        return base64.b64encode(doc.data).decode()
    return doc


def test_loads_body_decodes_large_b64_from_the_bytes() -> None:
    obj = {"dtype": "float64", "shape": [20_000], "b64": BIG_B64}
    body = {
        "expression": "sum(x)",
        "inputs": {"x": obj, "y": {**obj, "requires_grad": False}},
        "cotangent": [obj, {"data": [1.0]}],
        "tangents": {"x": obj},
        "note": "b64",
    }
    raw = orjson.dumps(body)
    doc = loads_body(raw)
    assert plain(doc) == orjson.loads(raw)
    assert isinstance(doc["inputs"]["x"]["b64"], B64Text)
    assert isinstance(doc["cotangent"][0]["b64"], B64Text)
    assert len(doc["inputs"]["x"]["b64"]) == len(BIG_B64)
    arr, grad = decode(doc["inputs"]["x"], 10**6)
    np.testing.assert_array_equal(arr, BIG)
    assert grad


@pytest.mark.parametrize(
    "raw",
    [
        # not strict base64: parsed whole (and refused later with binascii's message)
        b'{"inputs": {"x": {"shape": [1], "b64": "' + b"A" * 70_000 + b'!"}}}',
        # invalid JSON: the same error, at the same place
        b'{"inputs": {"x": {"shape": [1], "b64": "' + BIG_B64.encode() + b'"}}',
        # a "b64" member outside an array field, or under another key
        b'{"graph": {"b64": "' + BIG_B64.encode() + b'"}, "inputs": {}}',
        b'{"inputs": {"x": {"\\"b64": "' + BIG_B64.encode() + b'"}}}',
        # a duplicate key: the last one wins, as in orjson
        b'{"inputs": {"x": {"b64": "' + BIG_B64.encode() + b'", "b64": "AAAA"}}}',
    ],
)
def test_loads_body_falls_back_to_orjson(raw: bytes) -> None:
    try:
        expected: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        with pytest.raises(orjson.JSONDecodeError) as got:
            loads_body(raw)
        assert (got.value.msg, got.value.pos) == (exc.msg, exc.pos)
        return
    assert plain(loads_body(raw)) == expected


# --- loads_body on random documents: always orjson's answer, b64 decoded only where it may be

ARRAY_FIELDS = ("inputs", "tangents", "vectors", "cotangent")
TEXTS = st.sampled_from(
    [
        BIG_B64,  # large strict base64: cut out and decoded
        BIG_B64[:-4] + "!!!!",  # large but not base64: left to orjson
        "AAAA",  # small: left to orjson
        '"b64":"' + BIG_B64,  # the member's own text inside a string (escaped by JSON)
        "x\\" + BIG_B64,
    ]
)


def _array_object(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {"b64": draw(TEXTS)}
    if draw(st.booleans()):
        obj = {"dtype": "float64", **obj, "shape": [20_000]}
    if draw(st.booleans()):
        obj["requires_grad"] = draw(st.booleans())
    if draw(st.booleans()):
        obj['x"b64'] = draw(TEXTS)  # a key that ends in b64 but is not "b64"
    return obj


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in draw(st.permutations(ARRAY_FIELDS + ("graph", "expression", "note")))[:4]:
        if field == "cotangent":
            body[field] = [_array_object(draw) for _ in range(draw(st.integers(1, 2)))]
        elif field in ARRAY_FIELDS:
            body[field] = {"x": _array_object(draw)}
        elif field == "graph":
            body[field] = {"nodes": [{"b64": draw(TEXTS)}], "outputs": []}
        else:
            body[field] = draw(TEXTS)
    return body


def _b64_places(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(doc, B64Text):
        return [path]
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    return [p for k, v in items for p in _b64_places(v, (*path, k))]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(bodies())
def test_loads_body_is_orjson_with_b64_decoded_only_in_array_fields(body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    doc = loads_body(raw)
    assert plain(doc) == orjson.loads(raw)
    for path in _b64_places(doc):  # an array field's value (or item), its "b64" member
        assert path[0] in ARRAY_FIELDS and path[-1] == "b64" and len(path) == 3
