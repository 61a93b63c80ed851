"""Arrays in and out: JSON lists, objects, b64, non-finite words, strict JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
import pytest

from app.encoding import InputError, b64decode, decode_input, decode_value, render
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
        (["one", 2], LOC),
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
    assert err.value.status == 422


# Strings on both sides of strict base64: the fast decoder (pybase64) and binascii's
# strict mode disagree on some ("gCf2=": padding after a complete group, accepted by
# binascii); the service must accept and explain exactly as binascii does.
B64_CASES = [
    "", "AAAA", "gCf2", "gCf2=", "2JbpoXsnMIrU==", "abc", "ab=c", "a b=", "abcd\n", "ab==ab==",
    "abc*", "=abc", "abc===", "ab\x00c", "\u00e9", "-_-_", "AAECAwQFBgc=",
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
