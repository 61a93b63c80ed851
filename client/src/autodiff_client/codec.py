"""Arrays to request JSON and answers back to NumPy; the ``Result`` of a compute call.

Large arrays travel as base64 of their raw little-endian bytes (the service's ``b64``
form) in both directions, chosen per request by size; numbers that are not finite are
the words ``"nan"``, ``"inf"`` and ``"-inf"``, as the service writes them.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "B64_MIN_ELEMENTS",
    "Array",
    "ArrayLike",
    "Encoding",
    "Function",
    "Result",
    "StoredFunction",
    "Value",
    "build_body",
    "decode_array",
    "encode_array",
    "parse_result",
]


class StoredFunction(str):
    """The id of a stored function (``POST /functions``): a ``str``, ``"sha256:<hex>"``.

    It also keeps what was stored (``function`` and ``constants``), so the client can
    store it again when the service has forgotten it (404 ``unknown-function``).
    """

    function: str | Mapping[str, Any] | None
    constants: Mapping[str, Any]

    def __new__(
        cls,
        function_id: str,
        function: str | Mapping[str, Any] | None = None,
        constants: Mapping[str, Any] | None = None,
    ) -> StoredFunction:
        self = super().__new__(cls, function_id)
        self.function = function
        self.constants = dict(constants or {})
        return self

    @property
    def id(self) -> str:
        """The id as a plain ``str``."""
        return str.__str__(self)


Function: TypeAlias = str | Mapping[str, Any]
"""An expression or program (``str``), a JSON graph (``dict`` with nodes and outputs), or a
stored function's id (a ``StoredFunction``, or a ``"sha256:<hex>"`` string)."""
FUNCTION_ID = re.compile(r"sha256:[0-9a-f]{64}")
"""A stored function's id; an expression can never look like this (``:`` is no operator)."""


def function_fields(fn: Function) -> dict[str, Any]:
    """The body fields that name the function: ``expression``, ``graph`` or ``function``."""
    if isinstance(fn, Mapping):
        return {"graph": dict(fn)}
    if isinstance(fn, StoredFunction) or (isinstance(fn, str) and FUNCTION_ID.fullmatch(fn)):
        return {"function": str.__str__(fn)}
    return {"expression": fn}


Encoding: TypeAlias = Literal["json", "b64"]
Array: TypeAlias = npt.NDArray[np.floating[Any]]
"""An answer's array: float64, or float32 where the service answers float32."""
Value: TypeAlias = Array | list[Array]
"""One output's array, or one array per output for a function with several."""
ArrayLike: TypeAlias = npt.ArrayLike

B64_MIN_ELEMENTS = 1024
"""Arrays of at least this many elements are sent, and asked for, as base64."""
_DTYPES: dict[str, np.dtype[Any]] = {"float64": np.dtype("<f8"), "float32": np.dtype("<f4")}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True)
class Result:
    """One answer. Arrays are NumPy; maps are keyed by input name (empty when absent)."""

    value: Value
    gradients: dict[str, Array] = field(default_factory=dict)
    vjp: dict[str, Array] = field(default_factory=dict)
    jvp: Value | None = None
    jacobian: dict[str, Value] = field(default_factory=dict)
    hessian: dict[str, dict[str, Array]] = field(default_factory=dict)
    hvp: dict[str, Array] = field(default_factory=dict)
    mode: str | None = None
    check: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None
    timing_ms: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)
    request_id: str | None = None


# ------------------------------------------------------------------- to the service


def encode_array(value: ArrayLike, *, b64_min_elements: int = B64_MIN_ELEMENTS) -> Any:
    """An array-like as request JSON: a plain list, or the b64 object when it is large."""
    try:
        arr = np.asarray(value)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    except (ValueError, TypeError):
        raise ValueError("not a rectangular array of numbers") from None
    if arr.size < b64_min_elements:
        return _plain(arr)
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "b64": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def _plain(arr: npt.NDArray[Any]) -> Any:
    if np.isfinite(arr).all():
        data: Any = arr.tolist()
    else:  # JSON has no NaN: the service reads these words instead
        words = arr.astype(object)
        words[np.isnan(arr)] = "nan"
        words[np.isposinf(arr)] = "inf"
        words[np.isneginf(arr)] = "-inf"
        data = words.tolist()
    if arr.dtype == np.float32:
        return {"data": data, "dtype": "float32"}
    return data


def _encode_many(value: Any, b64_min: int) -> Any:
    # A tuple, or a list of arrays, means one entry per output.
    if isinstance(value, tuple) or (
        isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value)
    ):
        return [encode_array(v, b64_min_elements=b64_min) for v in value]
    return encode_array(value, b64_min_elements=b64_min)


def build_body(
    fn: Function,
    inputs: Mapping[str, Any],
    *,
    constants: Iterable[str] = (),
    encoding: Encoding | None = None,
    square: bool = False,
    b64_min_elements: int = B64_MIN_ELEMENTS,
    **fields: Any,
) -> dict[str, Any]:
    """The JSON body of a compute request (``None`` fields are left to the server's default).

    ``square`` says the answer grows as the square of the inputs (a Jacobian or Hessian),
    which decides sooner that the answer should come back as b64.
    """
    const = {constants} if isinstance(constants, str) else set(constants)
    unknown = const - set(inputs)
    if unknown:
        raise ValueError(f"constants {sorted(unknown)} are not among the inputs")
    body = function_fields(fn)
    body["inputs"] = {
        name: _input(name, value, name in const, b64_min_elements) for name, value in inputs.items()
    }
    for key, value in fields.items():
        if value is None:
            continue
        body[key] = _field(key, value, b64_min_elements)
    batched = fields.get("batch") or ()
    batched = [batched] if isinstance(batched, str) else list(batched)
    # a stored function's constants may be what is batched (stored data, per point)
    stored = fn.constants if isinstance(fn, StoredFunction) else {}
    body["encoding"] = encoding or _answer_encoding(
        inputs, square, b64_min_elements, batched, stored
    )
    return body


def _field(key: str, value: Any, b64_min: int) -> Any:
    if key in ("tangents", "vectors", "tangents_batch", "vectors_batch"):
        return {k: encode_array(v, b64_min_elements=b64_min) for k, v in value.items()}
    if key == "cotangent":
        return _encode_many(value, b64_min)
    if key == "cotangents":
        # K cotangents: one array with a leading axis K, or a list of K (each a tuple
        # of arrays for a function with several outputs)
        if isinstance(value, list | tuple):
            return [_encode_many(v, b64_min) for v in value]
        return encode_array(value, b64_min_elements=b64_min)
    if key in ("wrt", "batch"):  # one name, or several
        return [value] if isinstance(value, str) else list(value)
    return value


def _input(name: str, value: Any, constant: bool, b64_min: int) -> Any:
    try:
        encoded = encode_array(value, b64_min_elements=b64_min)
    except ValueError as exc:
        raise ValueError(f"input {name}: {exc}") from None
    if not constant:
        return encoded
    if isinstance(encoded, dict):
        return {**encoded, "requires_grad": False}
    return {"data": encoded, "requires_grad": False}


def _answer_encoding(
    inputs: Mapping[str, Any],
    square: bool,
    b64_min: int,
    batched: Iterable[str] = (),
    stored: Mapping[str, Any] | None = None,
) -> Encoding:
    # The answer's arrays are about as large as the inputs (their square for a Hessian); with
    # a batch of B points, B times one point's (a shared input's gradient is per point too).
    # B comes from a batched input, or from a batched constant the client stored.
    known = {**(stored or {}), **inputs}
    batched = {name for name in batched if name in known}
    points = max(
        (int(np.shape(known[name])[0]) for name in batched if np.ndim(known[name])), default=1
    )
    per_point = sum(
        int(np.size(v)) // points if name in batched else int(np.size(v))
        for name, v in inputs.items()
    )
    answer = points * (per_point * per_point if square else per_point)
    return "b64" if answer >= b64_min else "json"


# ----------------------------------------------------------------- from the service


def decode_array(value: Any) -> Any:
    """Answer JSON as NumPy: numbers, nested lists and b64 objects become arrays.

    A list whose items do not stack into one rectangular array (several outputs of
    different shapes) becomes a list of arrays; an object of arrays becomes a dict.
    """
    if isinstance(value, Mapping):
        if "b64" in value:
            dtype = _DTYPES[str(value.get("dtype", "float64"))]
            raw = base64.b64decode(value["b64"])
            return np.frombuffer(raw, dtype=dtype).reshape(value["shape"]).copy()
        return {k: decode_array(v) for k, v in value.items()}
    if isinstance(value, str):
        return np.asarray(_NONFINITE[value])
    if isinstance(value, list):
        return _decode_list(value)
    return np.asarray(value, dtype=np.float64)


def _decode_list(items: list[Any]) -> Any:
    if any(isinstance(v, Mapping) for v in items):
        return [decode_array(v) for v in items]
    try:
        arr = np.asarray(items)
    except ValueError:  # ragged: one entry per output
        return [decode_array(v) for v in items]
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    if arr.dtype.kind == "U":
        return _words_to_floats(arr)
    return [decode_array(v) for v in items]


def _words_to_floats(arr: npt.NDArray[np.str_]) -> Array:
    out = np.empty(arr.shape, dtype=np.float64)
    flat, res = arr.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat):  # only non-finite answers take this path
        res[i] = _NONFINITE[item] if item in _NONFINITE else float(item)
    return out


_MAPS = ("gradients", "vjp", "jacobian", "hessian", "hvp")


def parse_result(payload: Mapping[str, Any], request_id: str | None) -> Result:
    """A compute answer as a ``Result`` of NumPy arrays."""
    maps = {key: decode_array(payload[key]) for key in _MAPS if key in payload}
    return Result(
        value=decode_array(payload["value"]) if "value" in payload else np.asarray(math.nan),
        jvp=decode_array(payload["jvp"]) if "jvp" in payload else None,
        mode=payload.get("mode"),
        check=payload.get("check"),
        graph=payload.get("graph"),
        timing_ms=payload.get("timing_ms"),
        warnings=list(payload.get("warnings") or []),
        request_id=request_id,
        **maps,
    )
