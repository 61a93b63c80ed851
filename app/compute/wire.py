"""Arrays in and out: JSON lists, the ``{"dtype","shape","b64"}`` form, and non-finite numbers.

No web imports: the worker processes use this module too. Decoding goes
through NumPy in one call per array (never a Python loop per element) and
encoding hands whole arrays to orjson, which writes them natively. JSON has
no NaN or Infinity, so non-finite numbers travel as the strings ``"nan"``,
``"inf"`` and ``"-inf"`` and the answer's ``warnings`` says where.
"""

from __future__ import annotations

import binascii
import math
from typing import Any

import numpy as np
import orjson
import pybase64

from engine.errors import AutodiffError, SizeLimitError

DTYPES: dict[str, np.dtype[Any]] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    # complex: JSON as {"re": [...], "im": [...]}; b64 as the raw little-endian bytes,
    # real and imaginary parts interleaved (NumPy's and PyTorch's memory layout)
    "complex128": np.dtype("<c16"),
    "complex64": np.dtype("<c8"),
}
# the real dtype of each complex one (the parts of {"re", "im"})
PART_DTYPES = {"complex128": DTYPES["float64"], "complex64": DTYPES["float32"]}
_OBJECT_KEYS = frozenset({"data", "b64", "re", "im", "dtype", "shape", "requires_grad"})
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
Loc = list[Any]
PLAIN_KEYS = frozenset({"graph", "mode"})


class InputError(AutodiffError):
    """An input value that is not a rectangular array of numbers in an accepted form."""

    kind = "invalid-input"
    title = "Invalid input"


def short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters: errors never echo megabytes of a request back."""
    return text if len(text) <= limit else text[:limit] + "..."


def clip(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    return short(
        repr(value) if not isinstance(value, str) else repr(short(value, limit)), limit + 8
    )


class B64Text:
    """A b64 string of a request, already decoded: stands for the string in the parsed body.

    ``len()`` is the length of the text, as for the string (the lane rule counts it).
    """

    __slots__ = ("data", "chars")

    def __init__(self, data: bytes, chars: int) -> None:
        self.data = data
        self.chars = chars

    def __len__(self) -> int:
        return self.chars

    def __reduce__(self) -> tuple[Any, tuple[bytes, int]]:
        return (B64Text, (self.data, self.chars))


def decode_input(value: Any, loc: Loc, *, max_elements: int) -> tuple[np.ndarray[Any, Any], bool]:
    """An input as a NumPy array and its ``requires_grad`` flag (default true)."""
    if isinstance(value, dict):
        unknown = set(value) - _OBJECT_KEYS
        if unknown:
            keys = ", ".join(clip(k) for k in sorted(unknown)[:5])
            raise InputError(f"unknown keys {keys} in input object", loc=loc)
        requires_grad = value.get("requires_grad", True)
        if not isinstance(requires_grad, bool):
            raise InputError("requires_grad must be true or false", loc=[*loc, "requires_grad"])
        return _decode_object(value, loc, max_elements), requires_grad
    return _decode_data(value, DTYPES["float64"], loc, max_elements), True


def decode_value(value: Any, loc: Loc, *, max_elements: int) -> np.ndarray[Any, Any]:
    """A cotangent, tangent or vector: a number, a nested list, or a data/b64 object."""
    if isinstance(value, dict):
        if "requires_grad" in value:
            raise InputError("requires_grad is meaningless here", loc=[*loc, "requires_grad"])
        return decode_input(value, loc, max_elements=max_elements)[0]
    return _decode_data(value, DTYPES["float64"], loc, max_elements)


def _dtype(value: dict[str, Any], loc: Loc) -> np.dtype[Any]:
    complex_form = "re" in value or "im" in value
    name = value.get("dtype", "complex128" if complex_form else "float64")
    # A JSON object or list is unhashable: test the type before the dict lookup.
    if not isinstance(name, str) or name not in DTYPES:
        raise InputError(
            f"dtype {clip(name)} is not supported (use float64, float32, complex128 or complex64)",
            loc=[*loc, "dtype"],
        )
    if complex_form and name not in PART_DTYPES:
        raise InputError(
            f"'re' and 'im' give a complex array: dtype must be complex128 or complex64, not "
            f"{name}",
            loc=[*loc, "dtype"],
        )
    if name in PART_DTYPES and "data" in value:
        raise InputError(
            f"a {name} array travels as 're' and 'im' (nested lists of the real and imaginary "
            "parts) or as 'b64' (interleaved little-endian bytes), not as 'data'",
            loc=[*loc, "data"],
        )
    return DTYPES[name]


def _shape(value: dict[str, Any], loc: Loc) -> tuple[int, ...] | None:
    shape = value.get("shape")
    if shape is None:
        return None
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise InputError("shape must be a list of non-negative integers", loc=[*loc, "shape"])
    return tuple(shape)


def _decode_object(value: dict[str, Any], loc: Loc, max_elements: int) -> np.ndarray[Any, Any]:
    dtype = _dtype(value, loc)
    shape = _shape(value, loc)
    if "re" in value or "im" in value:
        return _decode_complex(value, dtype, shape, loc, max_elements)
    if ("data" in value) == ("b64" in value):
        raise InputError("an input object needs exactly one of 'data' or 'b64'", loc=loc)
    if "b64" in value:
        if shape is None:
            raise InputError("the b64 form needs a 'shape'", loc=[*loc, "shape"])
        return _decode_b64(value["b64"], dtype, shape, [*loc, "b64"], max_elements)
    arr = _decode_data(value["data"], dtype, [*loc, "data"], max_elements)
    if shape is not None and arr.shape != shape:
        raise InputError(
            f"data has shape {list(arr.shape)} but shape says {list(shape)}", loc=[*loc, "shape"]
        )
    return arr


def _decode_complex(
    value: dict[str, Any],
    dtype: np.dtype[Any],
    shape: tuple[int, ...] | None,
    loc: Loc,
    max_elements: int,
) -> np.ndarray[Any, Any]:
    """The ``{"re": [...], "im": [...]}`` form: two nested lists (or numbers) of one shape."""
    missing = [k for k in ("re", "im") if k not in value]
    if missing:
        raise InputError(
            f"a complex array needs both 're' and 'im' (missing {missing[0]!r}; give 0 or "
            "zeros for a part that is 0)",
            loc=loc,
        )
    if "data" in value or "b64" in value:
        raise InputError("give 're' and 'im', or 'b64', not both", loc=loc)
    part = PART_DTYPES[dtype.name]
    re = _decode_data(value["re"], part, [*loc, "re"], max_elements)
    im = _decode_data(value["im"], part, [*loc, "im"], max_elements)
    if re.shape != im.shape:
        raise InputError(
            f"'re' has shape {list(re.shape)} but 'im' has shape {list(im.shape)}: the parts "
            "of a complex array have one shape",
            loc=[*loc, "im"],
        )
    if shape is not None and re.shape != shape:
        raise InputError(
            f"re and im have shape {list(re.shape)} but shape says {list(shape)}",
            loc=[*loc, "shape"],
        )
    out = np.empty(re.shape, dtype=dtype)
    out.real, out.imag = re, im
    return out


def _check_count(count: int, loc: Loc, max_elements: int) -> None:
    if count > max_elements:
        raise SizeLimitError(
            f"input has {count} elements, over the limit of {max_elements}", loc=loc
        )


def _check_empty_span(shape: tuple[int, ...], loc: Loc, max_elements: int) -> None:
    """An empty shape's other dimensions are bounded by the element limit too.

    (0, 10**12, 10**12) holds no element, but NumPy cannot even describe it (the product
    of its dimensions overflows), and any op that drops the zero would make a giant.
    """
    span = math.prod(n for n in shape if n)
    if 0 in shape and span > max_elements:
        raise SizeLimitError(
            f"shape {list(shape)} has no elements, but its other dimensions span {span}, over "
            f"the limit of {max_elements} elements",
            loc=loc[:-1] + ["shape"] if loc and loc[-1] == "b64" else loc,
        )


def _decode_b64(
    text: Any, dtype: np.dtype[Any], shape: tuple[int, ...], loc: Loc, max_elements: int
) -> np.ndarray[Any, Any]:
    count = math.prod(shape)
    _check_count(count, loc, max_elements)  # before decoding a byte
    _check_empty_span(shape, loc, max_elements)
    if isinstance(text, B64Text):  # decoded while the body was parsed (``loads_body``)
        raw = text.data
    elif isinstance(text, str):
        raw = b64decode(text, loc)
    else:
        raise InputError("b64 must be a base64 string", loc=loc)
    if len(raw) != count * dtype.itemsize:
        raise InputError(
            f"b64 holds {len(raw)} bytes but shape {list(shape)} of {dtype.name} "
            f"needs {count * dtype.itemsize}",
            loc=loc,
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def b64decode(text: str, loc: Loc) -> bytes:
    """Strict base64 to bytes; ``InputError`` (at ``loc``) saying what is wrong with it."""
    try:
        # pybase64's SIMD decoder: many times faster than binascii (bench/PROFILE.md).
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    # pybase64 refuses a few strings binascii's strict mode takes (padding after a
    # complete group) and its messages are vaguer: binascii decides and explains, so
    # what is accepted and every error message stay as they were.
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"invalid base64: {exc}", loc=loc) from None


def _decode_data(
    data: Any, dtype: np.dtype[Any], loc: Loc, max_elements: int
) -> np.ndarray[Any, Any]:
    if isinstance(data, str):
        if data not in _NONFINITE:
            raise InputError(
                f'{clip(data)} is not a number: the only strings allowed are "nan", "inf" and '
                '"-inf"',
                loc=loc,
            )
        return np.asarray(_NONFINITE[data], dtype=dtype)
    try:
        arr = np.asarray(data)
    except ValueError:
        raise InputError("nested lists must be rectangular", loc=loc) from None
    if arr.dtype.kind == "U":
        _check_words(data, loc)  # NumPy made every item a string: judge the JSON's own
        arr = _parse_strings(arr, loc)
    elif arr.dtype.kind == "b":
        raise InputError("values must be numbers, not true/false", loc=loc)
    elif arr.dtype.kind not in "iuf":
        raise InputError("values must be numbers, nested lists of numbers, or an object", loc=loc)
    _check_count(arr.size, loc, max_elements)
    return arr.astype(dtype, copy=False)


def _check_words(data: Any, loc: Loc) -> None:
    """Refuse any string in nested lists but the documented "nan", "inf" and "-inf".

    ``np.asarray`` turns ``[1, "1.5"]`` into strings it would then parse ("1.5", "NaN",
    "infinity", " 2 " alike): numbers travel as JSON numbers, and only these three
    words stand for the values JSON cannot write. Only lists holding a string get here.
    """
    stack: list[tuple[Any, Loc]] = [(data, loc)]
    while stack:
        value, where = stack.pop()
        if not isinstance(value, list):
            continue
        if value and isinstance(value[0], list):
            stack.extend((v, [*where, i]) for i, v in enumerate(value))
            continue
        # a row of scalars (the array is rectangular): one pass without a stack entry each
        bad = next((i for i, v in enumerate(value) if type(v) is str and v not in _NONFINITE), -1)
        if bad >= 0:
            raise InputError(
                f'{clip(value[bad])} is not a number: the only strings allowed are "nan", "inf" '
                'and "-inf"',
                loc=[*where, bad],
            )


def _parse_strings(arr: np.ndarray[Any, Any], loc: Loc) -> np.ndarray[Any, Any]:
    # A list mixing numbers and "nan"/"inf"/"-inf" arrives as strings; only those words
    # and numbers are accepted, any other string is refused.
    out = np.empty(arr.shape, dtype=np.float64)
    flat, res = arr.reshape(-1), out.reshape(-1)
    words = np.isin(flat, list(_NONFINITE))
    for word, number in _NONFINITE.items():
        res[flat == word] = number
    try:
        res[~words] = flat[~words].astype(np.float64)
    except ValueError:
        raise InputError(
            'values must be numbers or the strings "nan", "inf", "-inf"', loc=loc
        ) from None
    return out


# --------------------------------------------------------------------------- out


def render(result: dict[str, Any], encoding: str = "json") -> bytes:
    """The answer as strictly valid JSON bytes; non-finite values become strings and warnings."""
    warnings: list[str] = list(result.get("warnings") or [])
    converted = {
        # graph metadata is already plain JSON data (names, shapes, flags): no walk needed
        k: v if k in PLAIN_KEYS else _convert(v, k, encoding, warnings)
        for k, v in result.items()
        if k != "warnings"
    }
    if warnings:
        converted["warnings"] = warnings
    return orjson.dumps(converted, option=orjson.OPT_SERIALIZE_NUMPY)


def _convert(obj: Any, path: str, encoding: str, warnings: list[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _convert(v, _join(path, k), encoding, warnings) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_convert(v, _join(path, str(i)), encoding, warnings) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray | np.generic):
        return encode_array(np.asarray(obj), path, encoding, warnings)
    if isinstance(obj, float) and not math.isfinite(obj):
        warnings.append(f"{path} is not finite")
        return _word(obj)
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _word(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def encode_array(arr: np.ndarray[Any, Any], path: str, encoding: str, warnings: list[str]) -> Any:
    """One array as JSON-ready data: a number, an ndarray orjson writes itself, or a b64 object.

    A complex array is ``{"dtype", "re", "im"}`` in JSON (each part as a real array would
    be) and ``{"dtype", "shape", "b64"}`` of its interleaved bytes with ``"encoding": "b64"``.
    """
    if arr.dtype.kind == "c" and arr.size == 0:  # (orjson writes no complex array)
        return {"dtype": arr.dtype.name, "shape": list(arr.shape), "b64": ""}
    if arr.dtype.kind == "c" and not (encoding == "b64" and arr.ndim):
        return _encode_complex(arr, path, encoding, warnings)
    finite = arr.dtype.kind not in "fc" or bool(np.isfinite(arr).all())
    if not finite:
        warnings.append(f"{path} has non-finite values")
    if arr.ndim == 0:
        value = arr.item()
        return _word(value) if not finite else value
    if arr.size == 0 and 0 in arr.shape[:-1]:
        # Nested lists cannot say this shape ([] is (0,), (0, 3) and (2, 0, 3) alike):
        # the object form can, and inputs accept it (README, "encoding").
        dtype = arr.dtype.name if arr.dtype.name in DTYPES else "float64"  # no value to lose
        return {"dtype": dtype, "shape": list(arr.shape), "b64": ""}
    if encoding == "b64" and arr.dtype.kind in "fc":
        little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        return {
            "dtype": arr.dtype.name,
            "shape": list(arr.shape),
            "b64": _b64(np.ascontiguousarray(little)),
        }
    if finite:
        return np.ascontiguousarray(arr)  # orjson serialises C-contiguous arrays natively
    return _with_words(arr)


def _encode_complex(
    arr: np.ndarray[Any, Any], path: str, encoding: str, warnings: list[str]
) -> dict[str, Any]:
    parts = {
        part: encode_array(np.array(values), f"{path}.{part}", encoding, warnings)
        for part, values in (("re", arr.real), ("im", arr.imag))
    }
    return {"dtype": arr.dtype.name, **parts}


def _b64(arr: Any) -> str:
    # pybase64 (SIMD): many times faster than binascii.b2a_base64 (bench/PROFILE.md).
    # Any: numpy's stubs do not declare the buffer protocol it reads.
    return pybase64.b64encode_as_string(arr)


def _with_words(arr: np.ndarray[Any, Any]) -> Any:
    # Rare path (a result that is not finite): an object array holding strings.
    obj = arr.astype(object)
    obj[np.isnan(arr)] = "nan"
    obj[np.isposinf(arr)] = "inf"
    obj[np.isneginf(arr)] = "-inf"
    return obj.tolist()
