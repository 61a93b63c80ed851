"""The workloads as requests to our service (the language of /work/shared/API.md)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from bench.workloads import W5_STEPS, Case

W1_SOURCE = (
    "stack([x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2], 3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3, "
    "2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2])"
)
W2_SOURCE = "2 * dot(x, x)"
W3_SOURCE = "sum(sin(x) * exp(-x ** 2) + log(1 + x ** 2))"
W4_SOURCE = "-mean(sum(Y * log_softmax(tanh(X @ W1 + b1) @ W2 + b2, axis=1), axis=1))"
W5_SOURCE = f"for i in range({W5_STEPS}):\n    x = sin(x) * 1.001 + x * 0.5\nreturn x"
W6_SOURCE = "tanh(W @ x + b)"
W7_SOURCE = "logsumexp(W @ x) + 0.5 * sum(x ** 2)"
W8_SOURCE = (
    "b = a * 2\nwhile norm(b) < 1000:\n    b = b * 2\nif sum(b) > 0:\n    c = b\nelse:\n"
    "    c = 100 * b\nreturn sum(c)"
)


def b64(a: Any, requires_grad: bool = True) -> dict[str, Any]:
    """An input in the service's ``b64`` form (raw little-endian float64 bytes)."""
    arr = np.ascontiguousarray(a, dtype="<f8")
    out: dict[str, Any] = {
        "dtype": "float64",
        "shape": list(arr.shape),
        "b64": base64.b64encode(arr.tobytes()).decode("ascii"),
    }
    if not requires_grad:
        out["requires_grad"] = False
    return out


def as_list(a: Any, requires_grad: bool = True) -> Any:
    """An input as nested JSON lists (or a number)."""
    value = np.asarray(a, dtype=np.float64).tolist()
    return value if requires_grad else {"data": value, "requires_grad": False}


def request(case: Case, encoding: str = "b64") -> tuple[str, dict[str, Any]]:
    """(endpoint path, JSON body) computing the case's gradient; ``encoding`` is json or b64."""
    enc = b64 if encoding == "b64" else as_list
    inp = case.inputs
    w = case.workload
    extra: dict[str, Any] = {"encoding": encoding} if encoding == "b64" else {}
    if w == "W1":
        return "/vjp", {
            "expression": W1_SOURCE,
            "inputs": {"x": as_list(inp["x"])},
            "cotangent": as_list(inp["ct"]),
        }
    if w in ("W2", "W3"):
        source = W2_SOURCE if w == "W2" else W3_SOURCE
        return "/grad", {"expression": source, "inputs": {"x": enc(inp["x"])}, **extra}
    if w == "W4":
        inputs = {k: enc(inp[k], k not in ("X", "Y")) for k in ("X", "Y", "W1", "b1", "W2", "b2")}
        return "/grad", {"expression": W4_SOURCE, "inputs": inputs, **extra}
    if w == "W5":
        return "/grad", {"expression": W5_SOURCE, "inputs": {"x": float(inp["x"])}}
    if w == "W6":
        inputs = {"W": enc(inp["W"], False), "b": enc(inp["b"], False), "x": enc(inp["x"])}
        return "/jacobian", {"expression": W6_SOURCE, "inputs": inputs, **extra}
    if w == "W7":
        inputs = {"W": enc(inp["W"], False), "x": enc(inp["x"])}
        return "/hessian", {"expression": W7_SOURCE, "inputs": inputs, **extra}
    return "/grad", {"expression": W8_SOURCE, "inputs": {"a": enc(inp["a"])}, **extra}


def encode(body: dict[str, Any]) -> bytes:
    """The body as JSON bytes."""
    return orjson.dumps(body)


def decode_array(value: Any) -> np.ndarray:
    """An answer array, in either encoding."""
    if isinstance(value, dict) and "b64" in value:
        raw = base64.b64decode(value["b64"])
        return np.frombuffer(raw, dtype=np.dtype(value["dtype"]).newbyteorder("<")).reshape(
            value["shape"]
        )
    return np.asarray(value, dtype=np.float64)


def answer(case: Case, doc: dict[str, Any]) -> list[np.ndarray]:
    """The response as the flat tuple the in-process check uses (see Case.answer)."""
    w = case.workload
    if w == "W1":
        return [decode_array(doc["value"]), decode_array(doc["vjp"]["x"])]
    if w == "W4":
        g = doc["gradients"]
        return [decode_array(doc["value"])] + [decode_array(g[k]) for k in ("W1", "b1", "W2", "b2")]
    if w == "W6":
        return [decode_array(doc["jacobian"]["x"])]
    if w == "W7":
        return [decode_array(doc["hessian"]["x"]["x"])]
    key = "a" if w == "W8" else "x"
    return [decode_array(doc["value"]), decode_array(doc["gradients"][key])]
