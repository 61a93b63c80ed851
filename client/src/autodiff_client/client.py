"""``Client`` and ``AsyncClient``: NumPy arrays in, NumPy arrays out, over httpx.

Every method is written once, in ``_Api``, over the endpoint table (``endpoints.py``):
building the body, choosing the encoding, retrying and reading the answer are shared.
The two classes differ only in how a request is sent (``_send``: a call, or an
awaited call), so ``Client.grad`` returns a ``Result`` and ``AsyncClient.grad`` a
coroutine of one, with the same parameters, typed for mypy.

Retries (``retry.py``, one transport for both kinds of client; it reads ``Retry-After``
in both its forms): a 503 (the service's work queue is full) and a refused connection
are retried, nothing else.

Stored functions: ``store`` answers a ``StoredFunction`` (the id, a ``str``), which every
compute method and ``submit`` take in place of the function. The client keeps what it
stored, by id: when the service answers 404 ``unknown-function`` (evicted, expired, or
deleted), the client stores it again and retries the request once.
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
    StoredFunction,
    build_body,
    encode_array,
    function_fields,
    parse_result,
)
from autodiff_client.endpoints import ENDPOINTS, Endpoint, JacobianOptions, Options
from autodiff_client.errors import AutodiffHTTPError
from autodiff_client.jobs import AsyncJob, Job
from autodiff_client.retry import RetryPolicy, RetryTransport

__all__ = ["DEFAULT_TIMEOUT", "UNKNOWN_FUNCTION", "AsyncClient", "Client", "JSONObject"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
JSONObject = dict[str, Any]
UNKNOWN_FUNCTION = "urn:autodiff:problem:unknown-function"
JOB_ENDPOINTS = ("grad", "vjp", "jvp", "jacobian", "hessian", "hvp")

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


def _function_id(body: Mapping[str, Any]) -> str | None:
    """The stored function a compute or job body names, if any."""
    inner = body.get("request")
    found = (inner if isinstance(inner, Mapping) else body).get("function")
    return found if isinstance(found, str) else None


def _with_function(body: JSONObject, function_id: str) -> JSONObject:
    """The body again, naming the stored function by ``function_id``."""
    if isinstance(body.get("request"), Mapping):
        return {**body, "request": {**body["request"], "function": function_id}}
    return {**body, "function": function_id}


def _exactly_one(endpoint: Endpoint, plain: Any, batch: Any) -> dict[str, Any]:
    """The direction field of a vjp/jvp/hvp call: the plain one or the K-batch, not both."""
    assert endpoint.direction and endpoint.directions
    if (plain is None) == (batch is None):
        raise TypeError(
            f"{endpoint.name}() takes exactly one of {endpoint.direction} and {endpoint.directions}"
        )
    return {endpoint.direction: plain} if batch is None else {endpoint.directions: batch}


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
        self._stored: dict[str, StoredFunction] = {}
        """What this client stored (or was given as a ``StoredFunction``), by id."""

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
        unknown -= {endpoint.direction, endpoint.directions}
        if unknown:
            raise TypeError(f"{endpoint.name}() got unexpected options {sorted(unknown)}")
        fields.setdefault("include_graph", False)
        if isinstance(fn, StoredFunction) and fn.function is not None:
            self._stored.setdefault(fn.id, fn)
        return build_body(
            fn,
            inputs,
            square=endpoint.square,
            b64_min_elements=self.b64_min_elements,
            **fields,
        )

    def _store_body(
        self, function: Function, constants: Mapping[str, ArrayLike] | None
    ) -> JSONObject:
        if isinstance(function, StoredFunction) or "function" in function_fields(function):
            raise TypeError("store() takes an expression, a program or a graph, not an id")
        body = function_fields(function)
        if constants:
            body["constants"] = {
                name: encode_array(value, b64_min_elements=self.b64_min_elements)
                for name, value in constants.items()
            }
        return body

    def _remember(
        self, answer: JSONObject, function: Function, constants: Mapping[str, ArrayLike] | None
    ) -> StoredFunction:
        stored = StoredFunction(str(answer["id"]), function, constants)
        self._stored[stored.id] = stored
        return stored

    def _forgotten(self, exc: AutodiffHTTPError, body: Mapping[str, Any]) -> StoredFunction | None:
        """What to store again when the service forgot the function ``body`` names."""
        if exc.status != 404 or exc.type != UNKNOWN_FUNCTION:
            return None
        function_id = _function_id(body)
        stored = self._stored.get(function_id) if function_id else None
        return stored if stored is not None and stored.function is not None else None

    def _job_body(
        self, endpoint: str, fn: Function, inputs: Mapping[str, ArrayLike], **options: Any
    ) -> JSONObject:
        if endpoint not in JOB_ENDPOINTS:
            raise ValueError(f"no job endpoint {endpoint!r}: one of {', '.join(JOB_ENDPOINTS)}")
        return {
            "endpoint": endpoint,
            "request": self._body(ENDPOINTS[endpoint], fn, inputs, **options),
        }

    # -------------------------------------------------- what a transport provides

    def _background(self, endpoint: Endpoint, body: JSONObject, progress: bool) -> ResultT:
        raise NotImplementedError

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
        cotangent: Any = None,
        *,
        cotangents: Any = None,
        **options: Unpack[Options],
    ) -> ResultT:
        """Vector-Jacobian product (a tuple of cotangents for several outputs): ``POST /vjp``.

        ``cotangents`` instead of ``cotangent``: K of them at once (a list, or one array
        whose leading axis is K), in one pass; ``vjp[name]`` is then (K, *input).
        """
        direction = _exactly_one(ENDPOINTS["vjp"], cotangent, cotangents)
        return self._call("vjp", fn, inputs, **direction, **options)

    def jvp(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        tangents: Mapping[str, ArrayLike] | None = None,
        *,
        tangents_batch: Mapping[str, ArrayLike] | None = None,
        **options: Unpack[Options],
    ) -> ResultT:
        """Jacobian-vector product in forward mode, tangents by input name: ``POST /jvp``.

        ``tangents_batch`` instead of ``tangents``: K tangents per input (a leading axis K),
        in one pass; ``jvp`` is then (K, *output).
        """
        direction = _exactly_one(ENDPOINTS["jvp"], tangents, tangents_batch)
        return self._call("jvp", fn, inputs, **direction, **options)

    def jacobian(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        *,
        background: bool = False,
        progress: bool = False,
        **options: Unpack[JacobianOptions],
    ) -> ResultT:
        """Full Jacobian, shape ``output.shape + input.shape``: ``POST /jacobian``.

        ``background=True`` runs it as a job (``POST /jobs``, under the service's longer
        job time limit) and waits for it, with a progress bar if ``progress=True``.
        """
        return self._maybe_background("jacobian", fn, inputs, background, progress, options)

    def hessian(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        *,
        background: bool = False,
        progress: bool = False,
        **options: Unpack[Options],
    ) -> ResultT:
        """Hessian of a scalar output, by pairs of input names: ``POST /hessian``.

        ``background=True`` runs it as a job and waits for it, as ``jacobian``.
        """
        return self._maybe_background("hessian", fn, inputs, background, progress, options)

    def _maybe_background(
        self,
        name: str,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        background: bool,
        progress: bool,
        options: Mapping[str, Any],
    ) -> ResultT:
        if not background:
            return self._call(name, fn, inputs, **options)
        endpoint = ENDPOINTS[name]
        return self._background(endpoint, self._job_body(name, fn, inputs, **options), progress)

    def hvp(
        self,
        fn: Function,
        inputs: Mapping[str, ArrayLike],
        vectors: Mapping[str, ArrayLike] | None = None,
        *,
        vectors_batch: Mapping[str, ArrayLike] | None = None,
        **options: Unpack[Options],
    ) -> ResultT:
        """Hessian-vector product without forming the Hessian: ``POST /hvp``.

        ``vectors_batch`` instead of ``vectors``: K vectors per input (a leading axis K),
        in one pass; ``hvp[name]`` is then (K, *input).
        """
        direction = _exactly_one(ENDPOINTS["hvp"], vectors, vectors_batch)
        return self._call("hvp", fn, inputs, **direction, **options)

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

    def _post(self, path: str, body: JSONObject) -> httpx.Response:
        """POST ``body``; if the function it names was forgotten, store it again, retry once."""
        try:
            return self._send(self._http.build_request("POST", path, json=body))
        except AutodiffHTTPError as exc:
            stored = self._forgotten(exc, body)
            if stored is None:
                raise
            again = self.store(stored.function or "", stored.constants)
            return self._send(
                self._http.build_request("POST", path, json=_with_function(body, again.id))
            )

    def _compute(self, endpoint: Endpoint, body: JSONObject) -> Result:
        return _result(self._post(endpoint.path, body))

    def _background(self, endpoint: Endpoint, body: JSONObject, progress: bool) -> Result:
        return self._submit_body(body).wait(progress=progress)

    def store(
        self, function: Function, constants: Mapping[str, ArrayLike] | None = None
    ) -> StoredFunction:
        """``POST /functions``: store a function (and constants bound to it); answers its id.

        The id (a ``str``) goes in place of the function in every compute method and in
        ``submit``; ``inputs`` then carries only the inputs that are not stored constants.
        """
        body = self._store_body(function, constants)
        answer = _json(self._send(self._http.build_request("POST", "/functions", json=body)))
        return self._remember(answer, function, constants)

    def function_get(self, function_id: str) -> JSONObject:
        """``GET /functions/{id}``: a stored function's metadata."""
        return _json(self._send(self._http.build_request("GET", f"/functions/{function_id}")))

    def function_delete(self, function_id: str) -> None:
        """``DELETE /functions/{id}`` (the client still remembers it, to store it again)."""
        self._send(self._http.build_request("DELETE", f"/functions/{function_id}"))

    def submit(
        self, endpoint: str, fn: Function, inputs: Mapping[str, ArrayLike], **options: Any
    ) -> Job:
        """``POST /jobs``: run one compute endpoint's work as a job; answers the ``Job``.

        ``options`` are that endpoint's (``cotangent``, ``tangents``, ``mode``, ``wrt``...).
        """
        return self._submit_body(self._job_body(endpoint, fn, inputs, **options))

    def _submit_body(self, body: JSONObject) -> Job:
        accepted = _json(self._post("/jobs", body))
        return Job(self, str(accepted["id"]), str(body["endpoint"]))

    def job(self, job_id: str) -> Job:
        """The job with this id (from another process, or the CLI)."""
        return Job(self, job_id)

    def job_status(self, job_id: str) -> JSONObject:
        """``GET /jobs/{id}``."""
        return _json(self._send(self._http.build_request("GET", f"/jobs/{job_id}")))

    def job_cancel(self, job_id: str) -> JSONObject:
        """``DELETE /jobs/{id}``."""
        return _json(self._send(self._http.build_request("DELETE", f"/jobs/{job_id}")))

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

    async def _post(self, path: str, body: JSONObject) -> httpx.Response:
        """POST ``body``; if the function it names was forgotten, store it again, retry once."""
        try:
            return await self._send(self._http.build_request("POST", path, json=body))
        except AutodiffHTTPError as exc:
            stored = self._forgotten(exc, body)
            if stored is None:
                raise
            again = await self.store(stored.function or "", stored.constants)
            retry = self._http.build_request("POST", path, json=_with_function(body, again.id))
            return await self._send(retry)

    async def _compute(self, endpoint: Endpoint, body: JSONObject) -> Result:
        return _result(await self._post(endpoint.path, body))

    async def _background(self, endpoint: Endpoint, body: JSONObject, progress: bool) -> Result:
        job = await self._submit_body(body)
        return await job.wait(progress=progress)

    async def store(
        self, function: Function, constants: Mapping[str, ArrayLike] | None = None
    ) -> StoredFunction:
        """``POST /functions``: store a function (and constants); answers its id."""
        body = self._store_body(function, constants)
        request = self._http.build_request("POST", "/functions", json=body)
        return self._remember(_json(await self._send(request)), function, constants)

    async def function_get(self, function_id: str) -> JSONObject:
        """``GET /functions/{id}``: a stored function's metadata."""
        request = self._http.build_request("GET", f"/functions/{function_id}")
        return _json(await self._send(request))

    async def function_delete(self, function_id: str) -> None:
        """``DELETE /functions/{id}`` (the client still remembers it, to store it again)."""
        await self._send(self._http.build_request("DELETE", f"/functions/{function_id}"))

    async def submit(
        self, endpoint: str, fn: Function, inputs: Mapping[str, ArrayLike], **options: Any
    ) -> AsyncJob:
        """``POST /jobs``: run one compute endpoint's work as a job; answers the ``AsyncJob``."""
        return await self._submit_body(self._job_body(endpoint, fn, inputs, **options))

    async def _submit_body(self, body: JSONObject) -> AsyncJob:
        accepted = _json(await self._post("/jobs", body))
        return AsyncJob(self, str(accepted["id"]), str(body["endpoint"]))

    def job(self, job_id: str) -> AsyncJob:
        """The job with this id (from another process, or the CLI)."""
        return AsyncJob(self, job_id)

    async def job_status(self, job_id: str) -> JSONObject:
        """``GET /jobs/{id}``."""
        return _json(await self._send(self._http.build_request("GET", f"/jobs/{job_id}")))

    async def job_cancel(self, job_id: str) -> JSONObject:
        """``DELETE /jobs/{id}``."""
        return _json(await self._send(self._http.build_request("DELETE", f"/jobs/{job_id}")))

    async def _get(self, endpoint: Endpoint) -> JSONObject:
        return _json(await self._send(self._request(endpoint)))

    async def send(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        """POST a prepared JSON body (retries and errors as for every method)."""
        return await self._send(self._http.build_request("POST", path, json=body))
