"""``Client`` and ``AsyncClient``: NumPy arrays in, NumPy arrays out, over httpx.

Every method is written once, in ``_Api``, over the endpoint table (``endpoints.py``):
building the body, choosing the encoding, retrying and reading the answer are shared.
The two classes differ only in how a request is sent (``_send``: a call, or an
awaited call), so ``Client.grad`` returns a ``Result`` and ``AsyncClient.grad`` a
coroutine of one, with the same parameters, typed for mypy.

Retries (``retry.py``, one transport for both kinds of client; it reads ``Retry-After``
in both its forms): a 503 (the service's work queue is full) and a refused connection
are retried, nothing else.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, Generic, TypeVar, Unpack

import httpx

from autodiff_client._version import __version__
from autodiff_client.codec import (
    B64_MIN_ELEMENTS,
    ArrayLike,
    Function,
    Result,
    build_body,
    parse_result,
)
from autodiff_client.endpoints import ENDPOINTS, Endpoint, JacobianOptions, Options
from autodiff_client.errors import AutodiffHTTPError
from autodiff_client.retry import RetryPolicy, RetryTransport

__all__ = ["DEFAULT_TIMEOUT", "AsyncClient", "Client", "JSONObject"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
JSONObject = dict[str, Any]

ResultT = TypeVar("ResultT")
JsonT = TypeVar("JsonT")
ResponseT = TypeVar("ResponseT")


def retry_policy(retries: int, max_retry_wait: float) -> RetryPolicy:
    """The retry policy: ``retries`` more attempts, each wait at most ``max_retry_wait`` s."""
    return RetryPolicy(retries, max_retry_wait)


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"accept": "application/json", "user-agent": f"autodiff-client/{__version__}"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def _checked(response: httpx.Response) -> httpx.Response:
    """The response, or ``AutodiffHTTPError`` with its problem details for a 4xx/5xx."""
    if response.status_code < 400:
        return response
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


def _result(response: httpx.Response) -> Result:
    return parse_result(response.json(), response.headers.get("x-request-id"))


def _json(response: httpx.Response) -> JSONObject:
    payload = response.json()
    return payload if isinstance(payload, dict) else {"items": payload}


class _Api(Generic[ResultT, JsonT, ResponseT]):
    """Everything but sending: settings, bodies, retries, and every endpoint's method."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(
        self,
        url: str,
        api_key: str | None,
        retries: int,
        max_retry_wait: float,
        b64_min_elements: int,
        inner: httpx.BaseTransport | httpx.AsyncBaseTransport,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.b64_min_elements = b64_min_elements
        self._retries = retries
        self._max_retry_wait = max_retry_wait
        self._retrying = RetryTransport(inner, retry_policy(retries, max_retry_wait))

    @property
    def retries(self) -> int:
        """How many times a 503 or a refused connection is retried."""
        return self._retries

    @retries.setter
    def retries(self, retries: int) -> None:
        self._retrying.policy = retry_policy(retries, self._max_retry_wait)
        self._retries = retries

    @property
    def max_retry_wait(self) -> float:
        """The longest wait before a retry, in seconds (caps ``Retry-After``)."""
        return self._max_retry_wait

    @max_retry_wait.setter
    def max_retry_wait(self, seconds: float) -> None:
        self._retrying.policy = retry_policy(self._retries, seconds)
        self._max_retry_wait = seconds

    def _request(self, endpoint: Endpoint, body: Mapping[str, Any] | None = None) -> httpx.Request:
        return self._http.build_request(endpoint.method, endpoint.path, json=body)

    def _body(
        self, endpoint: Endpoint, fn: Function, inputs: Mapping[str, ArrayLike], **fields: Any
    ) -> JSONObject:
        unknown = set(fields) - {*Options.__annotations__, *endpoint.fields}
        if endpoint.direction:
            unknown.discard(endpoint.direction)
        if unknown:
            raise TypeError(f"{endpoint.name}() got unexpected options {sorted(unknown)}")
        fields.setdefault("include_graph", False)
        return build_body(
            fn,
            inputs,
            square=endpoint.square,
            b64_min_elements=self.b64_min_elements,
            **fields,
        )

    # -------------------------------------------------- what a transport provides

    def _compute(self, endpoint: Endpoint, body: JSONObject) -> ResultT:
        raise NotImplementedError

    def _get(self, endpoint: Endpoint) -> JsonT:
        raise NotImplementedError

    def send(self, path: str, body: Mapping[str, Any]) -> ResponseT:
        """POST a prepared JSON body (retries and errors as for every method)."""
        raise NotImplementedError

    # ----------------------------------------------------- one method per endpoint

    def _call(
        self, name: str, fn: Function, inputs: Mapping[str, ArrayLike], **fields: Any
    ) -> ResultT:
        endpoint = ENDPOINTS[name]
        return self._compute(endpoint, self._body(endpoint, fn, inputs, **fields))

    def grad(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        *,
        cotangent: Any = None,
        **options: Unpack[Options],
    ) -> ResultT:
        """Gradient of a scalar output (or, with ``cotangent``, the VJP): ``POST /grad``."""
        return self._call("grad", fn, inputs, cotangent=cotangent, **options)

    def vjp(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        cotangent: Any,
        **options: Unpack[Options],
    ) -> ResultT:
        """Vector-Jacobian product (a tuple of cotangents for several outputs): ``POST /vjp``."""
        return self._call("vjp", fn, inputs, cotangent=cotangent, **options)

    def jvp(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        tangents: Mapping[str, ArrayLike],
        **options: Unpack[Options],
    ) -> ResultT:
        """Jacobian-vector product in forward mode, tangents by input name: ``POST /jvp``."""
        return self._call("jvp", fn, inputs, tangents=tangents, **options)

    def jacobian(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        **options: Unpack[JacobianOptions],
    ) -> ResultT:
        """Full Jacobian, shape ``output.shape + input.shape``: ``POST /jacobian``."""
        return self._call("jacobian", fn, inputs, **options)

    def hessian(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        **options: Unpack[Options],
    ) -> ResultT:
        """Hessian of a scalar output, by pairs of input names: ``POST /hessian``."""
        return self._call("hessian", fn, inputs, **options)

    def hvp(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        vectors: Mapping[str, ArrayLike],
        **options: Unpack[Options],
    ) -> ResultT:
        """Hessian-vector product without forming the Hessian: ``POST /hvp``."""
        return self._call("hvp", fn, inputs, vectors=vectors, **options)

    def ops(self) -> JsonT:
        """The op catalogue (``GET /ops``): ``{"ops": [{"name", "signature", ...}]}``."""
        return self._get(ENDPOINTS["ops"])

    def healthz(self) -> JsonT:
        """``GET /healthz``: ``{"status": "ok"}`` while the process answers."""
        return self._get(ENDPOINTS["healthz"])

    def readyz(self) -> JsonT:
        """``GET /readyz``: ``{"status": "ready"}``; a 503 error until the pool is up."""
        return self._get(ENDPOINTS["readyz"])


class Client(_Api[Result, JSONObject, httpx.Response]):
    """Synchronous client: ``Client(url, api_key=None, timeout=..., retries=3)``."""

    _http: httpx.Client

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
        inner = transport or httpx.HTTPTransport()
        super().__init__(url, api_key, retries, max_retry_wait, b64_min_elements, inner)
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=self._retrying
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        return _checked(self._http.send(request))

    def _compute(self, endpoint: Endpoint, body: JSONObject) -> Result:
        return _result(self._send(self._request(endpoint, body)))

    def _get(self, endpoint: Endpoint) -> JSONObject:
        return _json(self._send(self._request(endpoint)))

    def send(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST a prepared JSON body (retries and errors as for every method)."""
        return self._send(self._http.build_request("POST", path, json=body))


class AsyncClient(
    _Api[
        Coroutine[Any, Any, Result],
        Coroutine[Any, Any, JSONObject],
        Coroutine[Any, Any, httpx.Response],
    ]
):
    """Asynchronous client with the same methods as ``Client``, each awaitable."""

    _http: httpx.AsyncClient

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
        inner = transport or httpx.AsyncHTTPTransport()
        super().__init__(url, api_key, retries, max_retry_wait, b64_min_elements, inner)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=self._retrying
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        return _checked(await self._http.send(request))

    async def _compute(self, endpoint: Endpoint, body: JSONObject) -> Result:
        return _result(await self._send(self._request(endpoint, body)))

    async def _get(self, endpoint: Endpoint) -> JSONObject:
        return _json(await self._send(self._request(endpoint)))

    async def send(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST a prepared JSON body (retries and errors as for every method)."""
        return await self._send(self._http.build_request("POST", path, json=body))
