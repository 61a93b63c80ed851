"""A thin Python client for autodiff-service: NumPy arrays in, NumPy arrays out.

    from app.client import Client
    with Client("http://127.0.0.1:8000") as ad:
        res = ad.grad("2 * dot(x, x)", {"x": np.arange(4.0)})
        res.value, res.gradients["x"]        # array(28.), array([0., 4., 8., 12.])

It speaks only HTTP (httpx) and imports nothing from the engine or the service.
Large arrays travel as base64 of their raw bytes in both directions, chosen per
request by size; errors raise ``AutodiffHTTPError`` with the problem details;
a 503 (work queue full) is retried after the server's ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import numpy as np

__all__ = ["AsyncClient", "AutodiffHTTPError", "Client", "Result"]

Function = str | Mapping[str, Any]
"""An expression or program (``str``) or a JSON graph (``dict``)."""
Encoding = Literal["json", "b64"]

B64_MIN_ELEMENTS = 1024
"""Arrays of at least this many elements are sent, and asked for, as base64."""
_DTYPES: dict[str, np.dtype[Any]] = {"float64": np.dtype("<f8"), "float32": np.dtype("<f4")}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_RESULT_MAPS = ("gradients", "vjp", "jacobian", "hvp")
_RETRYABLE_TRANSPORT = (httpx.ConnectError, httpx.ConnectTimeout)


class AutodiffHTTPError(Exception):
    """The service answered an error: its RFC 9457 problem details, typed."""

    def __init__(self, status: int, problem: Mapping[str, Any], request_id: str | None) -> None:
        self.status = status
        self.problem = dict(problem)
        self.type: str = str(problem.get("type", "about:blank"))
        self.title: str = str(problem.get("title", "HTTP error"))
        self.detail: str = str(problem.get("detail", ""))
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.request_id = request_id
        super().__init__(
            f"{status} {self.title}: {self.detail}" if self.detail else f"{status} {self.title}"
        )


@dataclass(frozen=True)
class Result:
    """One answer. Arrays are NumPy; maps are keyed by input name; absent parts are None."""

    value: Any
    gradients: dict[str, np.ndarray] | None = None
    vjp: dict[str, np.ndarray] | None = None
    jvp: Any = None
    jacobian: dict[str, Any] | None = None
    hessian: dict[str, dict[str, np.ndarray]] | None = None
    hvp: dict[str, np.ndarray] | None = None
    mode: str | None = None
    check: dict[str, float] | None = None
    graph: dict[str, Any] | None = None
    timing_ms: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)
    request_id: str | None = None


# --------------------------------------------------------------------- encoding


def encode_array(value: Any, *, b64_min_elements: int = B64_MIN_ELEMENTS) -> Any:
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


def _plain(arr: np.ndarray) -> Any:
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


def decode_array(value: Any) -> Any:
    """Answer JSON as NumPy: numbers, nested lists and b64 objects become arrays.

    A list whose items do not stack into one rectangular array (several outputs of
    different shapes) becomes a list of arrays.
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


def _words_to_floats(arr: np.ndarray) -> np.ndarray:
    out = np.empty(arr.shape, dtype=np.float64)
    flat, res = arr.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat):  # only non-finite answers take this path
        res[i] = _NONFINITE[item] if item in _NONFINITE else float(item)
    return out


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
    """The JSON body of a compute request (``None`` fields are left to the server's default)."""
    const = set(constants)
    unknown = const - set(inputs)
    if unknown:
        raise ValueError(f"constants {sorted(unknown)} are not among the inputs")
    body: dict[str, Any] = {"graph": dict(fn)} if isinstance(fn, Mapping) else {"expression": fn}
    body["inputs"] = {
        name: _input(name, value, name in const, b64_min_elements) for name, value in inputs.items()
    }
    for key, value in fields.items():
        if value is None:
            continue
        if key in ("tangents", "vectors"):
            value = {
                k: encode_array(v, b64_min_elements=b64_min_elements) for k, v in value.items()
            }
        elif key == "cotangent":
            value = _encode_many(value, b64_min_elements)
        elif key == "wrt":
            value = [value] if isinstance(value, str) else list(value)
        body[key] = value
    body["encoding"] = encoding or _answer_encoding(inputs, square, b64_min_elements)
    return body


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


def _answer_encoding(inputs: Mapping[str, Any], square: bool, b64_min: int) -> Encoding:
    # The answer's arrays are about as large as the inputs (their square for a Hessian).
    total = sum(int(np.size(v)) for v in inputs.values())
    return "b64" if (total * total if square else total) >= b64_min else "json"


def parse_result(payload: Mapping[str, Any], request_id: str | None) -> Result:
    """A compute answer as a ``Result`` of NumPy arrays."""
    maps = {key: decode_array(payload[key]) for key in _RESULT_MAPS if key in payload}
    hessian = decode_array(payload["hessian"]) if "hessian" in payload else None
    return Result(
        value=decode_array(payload["value"]) if "value" in payload else None,
        jvp=decode_array(payload["jvp"]) if "jvp" in payload else None,
        hessian=hessian,
        mode=payload.get("mode"),
        check=payload.get("check"),
        graph=payload.get("graph"),
        timing_ms=payload.get("timing_ms"),
        warnings=list(payload.get("warnings") or []),
        request_id=request_id,
        **maps,
    )


# ---------------------------------------------------------------------- transport


def retry_after_seconds(response: httpx.Response, attempt: int, cap: float) -> float:
    """How long to wait before retrying: the server's ``Retry-After``, else backoff."""
    header = response.headers.get("retry-after")
    delay: float | None = None
    if header:
        header = header.strip()
        if header.isdigit():
            delay = float(header)
        else:
            try:
                when = email.utils.parsedate_to_datetime(header)
                delay = (when - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                delay = None
    if delay is None:
        delay = 0.25 * 2**attempt
    return min(max(delay, 0.0), cap)


def _raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            raise ValueError
    except ValueError:
        problem = {
            "title": response.reason_phrase,
            "status": response.status_code,
            "detail": response.text[:500],
        }
    raise AutodiffHTTPError(response.status_code, problem, response.headers.get("x-request-id"))


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


class _Base:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        retries: int,
        max_retry_wait: float,
        b64_min_elements: int,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.b64_min_elements = b64_min_elements

    def _should_retry(self, response: httpx.Response | None, attempt: int) -> bool:
        if attempt >= self.retries:
            return False
        return response is None or response.status_code == 503

    def _wait(self, response: httpx.Response | None, attempt: int) -> float:
        # No response means the connection was refused: the request never ran.
        if response is None:
            return min(0.25 * 2**attempt, self.max_retry_wait)
        return retry_after_seconds(response, attempt, self.max_retry_wait)

    def _body(self, fn: Function, inputs: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        return build_body(fn, inputs, b64_min_elements=self.b64_min_elements, **fields)


DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class Client(_Base):
    """Synchronous client: ``Client(url, api_key=None, timeout=..., retries=3)``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        b64_min_elements: int = B64_MIN_ELEMENTS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, retries, max_retry_wait, b64_min_elements)
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response: httpx.Response | None = self._http.request(method, path, json=body)
            except _RETRYABLE_TRANSPORT:
                if not self._should_retry(None, attempt):
                    raise
                response = None
            if response is not None and not self._should_retry(response, attempt):
                _raise_for_problem(response)
                return response
            time.sleep(self._wait(response, attempt))
            attempt += 1

    def send(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST a prepared JSON body (retries and errors as for every method)."""
        return self._request("POST", path, body)

    def _compute(self, path: str, body: dict[str, Any]) -> Result:
        response = self._request("POST", path, body)
        return parse_result(response.json(), response.headers.get("x-request-id"))

    def grad(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        cotangent: Any = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Gradient of a scalar output (or, with ``cotangent``, the VJP): ``POST /grad``."""
        return self._compute(
            "/grad",
            self._body(
                fn,
                inputs,
                wrt=wrt,
                cotangent=cotangent,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    def vjp(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        cotangent: Any,
        *,
        wrt: str | Sequence[str] | None = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Vector-Jacobian product (a tuple of cotangents for several outputs): ``POST /vjp``."""
        return self._compute(
            "/vjp",
            self._body(
                fn,
                inputs,
                cotangent=cotangent,
                wrt=wrt,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    def jvp(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        tangents: Mapping[str, Any],
        *,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Jacobian-vector product in forward mode: ``POST /jvp``."""
        return self._compute(
            "/jvp",
            self._body(
                fn,
                inputs,
                tangents=tangents,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    def jacobian(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        mode: str = "auto",
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Full Jacobian, shape ``output.shape + input.shape``: ``POST /jacobian``."""
        return self._compute(
            "/jacobian",
            self._body(
                fn,
                inputs,
                wrt=wrt,
                mode=mode,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
                square=True,
            ),
        )

    def hessian(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Hessian of a scalar output, by pairs of input names: ``POST /hessian``."""
        return self._compute(
            "/hessian",
            self._body(
                fn,
                inputs,
                wrt=wrt,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
                square=True,
            ),
        )

    def hvp(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        vectors: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Hessian-vector product without forming the Hessian: ``POST /hvp``."""
        return self._compute(
            "/hvp",
            self._body(
                fn,
                inputs,
                vectors=vectors,
                wrt=wrt,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    def ops(self) -> Any:
        """The op catalogue (``GET /ops``) as the server sends it."""
        return self._request("GET", "/ops").json()


class AsyncClient(_Base):
    """Asynchronous client with the same methods as ``Client``, each awaitable."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        b64_min_elements: int = B64_MIN_ELEMENTS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, retries, max_retry_wait, b64_min_elements)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response: httpx.Response | None = await self._http.request(method, path, json=body)
            except _RETRYABLE_TRANSPORT:
                if not self._should_retry(None, attempt):
                    raise
                response = None
            if response is not None and not self._should_retry(response, attempt):
                _raise_for_problem(response)
                return response
            await asyncio.sleep(self._wait(response, attempt))
            attempt += 1

    async def _compute(self, path: str, body: dict[str, Any]) -> Result:
        response = await self._request("POST", path, body)
        return parse_result(response.json(), response.headers.get("x-request-id"))

    async def grad(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        cotangent: Any = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Gradient of a scalar output (or, with ``cotangent``, the VJP): ``POST /grad``."""
        return await self._compute(
            "/grad",
            self._body(
                fn,
                inputs,
                wrt=wrt,
                cotangent=cotangent,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    async def vjp(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        cotangent: Any,
        *,
        wrt: str | Sequence[str] | None = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Vector-Jacobian product (a tuple of cotangents for several outputs): ``POST /vjp``."""
        return await self._compute(
            "/vjp",
            self._body(
                fn,
                inputs,
                cotangent=cotangent,
                wrt=wrt,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    async def jvp(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        tangents: Mapping[str, Any],
        *,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Jacobian-vector product in forward mode: ``POST /jvp``."""
        return await self._compute(
            "/jvp",
            self._body(
                fn,
                inputs,
                tangents=tangents,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    async def jacobian(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        mode: str = "auto",
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Full Jacobian, shape ``output.shape + input.shape``: ``POST /jacobian``."""
        return await self._compute(
            "/jacobian",
            self._body(
                fn,
                inputs,
                wrt=wrt,
                mode=mode,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
                square=True,
            ),
        )

    async def hessian(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Hessian of a scalar output, by pairs of input names: ``POST /hessian``."""
        return await self._compute(
            "/hessian",
            self._body(
                fn,
                inputs,
                wrt=wrt,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
                square=True,
            ),
        )

    async def hvp(
        self,
        fn: Function,
        inputs: Mapping[str, Any],
        vectors: Mapping[str, Any],
        *,
        wrt: str | Sequence[str] | None = None,
        constants: Iterable[str] = (),
        check: bool = False,
        include_graph: bool = False,
        encoding: Encoding | None = None,
    ) -> Result:
        """Hessian-vector product without forming the Hessian: ``POST /hvp``."""
        return await self._compute(
            "/hvp",
            self._body(
                fn,
                inputs,
                vectors=vectors,
                wrt=wrt,
                constants=constants,
                check=check,
                include_graph=include_graph,
                encoding=encoding,
            ),
        )

    async def ops(self) -> Any:
        """The op catalogue (``GET /ops``) as the server sends it."""
        return (await self._request("GET", "/ops")).json()
