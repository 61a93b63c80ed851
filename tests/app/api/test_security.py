"""API keys (constant time, deny by default) and CORS (app/security.py)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from app.api import security
from app.api.docs import install_docs
from app.api.observability import install_observability
from app.api.security import KeyChecker, install_security, is_open_path, presented_key

COMPUTE = ["/grad", "/vjp", "/jvp", "/jacobian", "/hessian", "/hvp"]
OPEN_GETS = [
    "/healthz",
    "/readyz",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/metrics",
    "/ops",
    "/docs/assets/swagger-ui.css",
]
KEYS = ["first-key-0123456789", "second-key"]
ORIGIN = "https://allowed.example"


def build_app(keys: list[str], origins: list[str], security_first: bool = True) -> FastAPI:
    """An app with the contract's paths (trivial bodies) and the operational layers."""
    app = FastAPI(docs_url=None, redoc_url=None)
    for path in COMPUTE:
        app.add_api_route(path, _ok, methods=["POST"])
    for path in ["/healthz", "/readyz", "/ops"]:
        app.add_api_route(path, _ok, methods=["GET"])
    settings = SimpleNamespace(api_keys=keys, cors_origins=origins, log_level="warning")
    install_docs(app)
    if security_first:
        install_security(app, settings)
        install_observability(app, settings)
    else:
        install_observability(app, settings)
        install_security(app, settings)
    return app


async def _ok() -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture(scope="module")
def locked() -> Iterator[TestClient]:
    with TestClient(build_app(KEYS, [ORIGIN])) as c:
        yield c


def assert_401(r: Response) -> None:
    """A 401 problem+json with a Bearer challenge and no hint of the keys."""
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == 401
    assert all(k not in r.text for k in KEYS)


# ---------------------------------------------------------------- key checks


def test_key_checker() -> None:
    checker = KeyChecker(KEYS + [""])
    assert checker.enabled
    assert checker.accepts(b"first-key-0123456789")
    assert checker.accepts(b"second-key")
    for wrong in [b"", None, b"first-key", b"first-key-01234567890", b"SECOND-KEY", b"second-key "]:
        assert not checker.accepts(wrong)
    assert not KeyChecker([]).enabled
    assert not KeyChecker([""]).enabled


def test_every_key_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant time: a match on the first key still compares all the others."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    checker = KeyChecker(["a", "b", "c"])
    for presented in (b"a", b"c", b"zzz"):
        calls.clear()
        checker.accepts(presented)
        assert len(calls) == 3
        # Fixed-length digests are compared, never the raw (variable-length) keys.
        assert {len(a) for a, _ in calls} == {32} and {len(b) for _, b in calls} == {32}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer   abc  ")], b"abc"),
        ([(b"x-api-key", b"xyz")], b"xyz"),
        ([(b"x-api-key", b"xyz"), (b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"Basic YWxhZGRpbjpvcGVu")], None),
        ([(b"authorization", b"Bearer")], None),
        ([(b"x-api-key", b"  ")], None),
        ([], None),
    ],
)
def test_presented_key(headers: list[tuple[bytes, bytes]], expected: bytes | None) -> None:
    assert presented_key(headers) == expected


def test_open_paths() -> None:
    for path in OPEN_GETS + ["/", "/playground/playground.js"]:  # the playground page, files
        assert is_open_path(path), path
    for path in COMPUTE + ["/nope", "/docsx", "/metrics/extra", "/playgroundx", "/grad/"]:
        assert not is_open_path(path), path


# ---------------------------------------------------------------- through the app


@pytest.mark.parametrize("path", COMPUTE)
def test_compute_refuses_missing_key(locked: TestClient, path: str) -> None:
    assert_401(locked.post(path, json={}))


@pytest.mark.parametrize("path", COMPUTE)
@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer first-key-012345678"},  # a prefix of a real key
        {"Authorization": "first-key-0123456789"},  # no scheme
        {"Authorization": "Basic Zmlyc3Qta2V5LTAxMjM0NTY3ODk="},
    ],
)
def test_compute_refuses_wrong_key(locked: TestClient, path: str, headers: dict[str, str]) -> None:
    assert_401(locked.post(path, json={}, headers=headers))


@pytest.mark.parametrize("path", COMPUTE)
def test_compute_accepts_either_header(locked: TestClient, path: str) -> None:
    assert locked.post(path, json={}, headers={"X-API-Key": KEYS[1]}).status_code == 200
    bearer = {"Authorization": f"Bearer {KEYS[0]}"}
    assert locked.post(path, json={}, headers=bearer).status_code == 200


@pytest.mark.parametrize("path", OPEN_GETS)
def test_health_docs_and_metrics_stay_open(locked: TestClient, path: str) -> None:
    assert locked.get(path).status_code == 200


def test_unknown_paths_are_protected_too(locked: TestClient) -> None:
    assert_401(locked.get("/admin"))
    assert locked.get("/admin", headers={"X-API-Key": KEYS[0]}).status_code == 404


def test_401_has_request_id_and_is_counted_by_endpoint(locked: TestClient) -> None:
    r = locked.post("/grad", json={}, headers={"X-Request-ID": "auth-1"})
    assert_401(r)
    assert r.headers["x-request-id"] == "auth-1"
    metrics = locked.get("/metrics").text
    assert 'endpoint="/grad",method="POST",status="401"' in metrics


def test_install_order_does_not_matter() -> None:
    with TestClient(build_app(KEYS, [ORIGIN], security_first=False)) as c:
        r = c.post("/grad", json={}, headers={"X-Request-ID": "order"})
    assert_401(r)
    assert r.headers["x-request-id"] == "order"


def test_no_keys_means_open() -> None:
    with TestClient(build_app([], [])) as c:
        for path in COMPUTE:
            assert c.post(path, json={}).status_code == 200


# ---------------------------------------------------------------- CORS


def test_cors_preflight_allowed_origin(locked: TestClient) -> None:
    r = locked.options(
        "/grad",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    # Preflights carry no key; CORS answers them before the key check.
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()


def test_cors_preflight_other_origin_refused(locked: TestClient) -> None:
    r = locked.options(
        "/grad",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_headers_on_401_and_exposed_request_id(locked: TestClient) -> None:
    r = locked.post("/grad", json={}, headers={"Origin": ORIGIN})
    assert_401(r)
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()


def test_no_cors_without_origins() -> None:
    with TestClient(build_app([], [])) as c:
        r = c.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in r.headers


# ---------------------------------------------------------------- the real service


def _examples() -> dict[str, dict[str, Any]]:
    """The first OpenAPI example of each compute endpoint (what "Try it out" sends)."""
    from app.api import schemas

    tables = {
        "/grad": schemas.GRAD_EXAMPLES,
        "/vjp": schemas.VJP_EXAMPLES,
        "/jvp": schemas.JVP_EXAMPLES,
        "/jacobian": schemas.JACOBIAN_EXAMPLES,
        "/hessian": schemas.HESSIAN_EXAMPLES,
        "/hvp": schemas.HVP_EXAMPLES,
    }
    return {
        path: cast(dict[str, Any], next(iter(table.values()))["value"])
        for path, table in tables.items()
    }


@pytest.fixture(scope="module")
def service_with_keys() -> Iterator[TestClient]:
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(_env_file=None, api_keys=["svc-key-1", "svc-key-2"])  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the worker pool did not start"
            time.sleep(0.1)
        yield c


@pytest.mark.parametrize("path", COMPUTE)
def test_service_refuses_missing_and_wrong_keys(service_with_keys: TestClient, path: str) -> None:
    body = _examples()[path]
    assert_401(service_with_keys.post(path, json=body))
    assert_401(service_with_keys.post(path, json=body, headers={"X-API-Key": "svc-key-3"}))
    assert_401(service_with_keys.post(path, json=body, headers={"Authorization": "Bearer x"}))


@pytest.mark.parametrize("path", COMPUTE)
def test_service_accepts_a_right_key(service_with_keys: TestClient, path: str) -> None:
    body = _examples()[path]
    r = service_with_keys.post(path, json=body, headers={"Authorization": "Bearer svc-key-2"})
    assert r.status_code == 200, r.text
    r = service_with_keys.post(path, json=body, headers={"X-API-Key": "svc-key-1"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", OPEN_GETS)
def test_service_keeps_health_docs_and_metrics_open(
    service_with_keys: TestClient, path: str
) -> None:
    assert service_with_keys.get(path).status_code == 200
