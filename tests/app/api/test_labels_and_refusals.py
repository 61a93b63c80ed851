"""Metric labels, body-limit problems and CORS refusals of the real app (issue 13, A7).

- /metrics labels every request by its route template when one matches (also when the
  answer came before routing: a 401, a CORS preflight; /openapi.json was "/{path}" and
  401s "<unmatched>"), else by "<unmatched>": never a raw path.
- A body over the limit gets one problem type, whether Content-Length says so up front
  or a chunked body runs over while it is read.
- A refused CORS preflight is problem+json, as every other error.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.api.observability import METRICS
from app.main import create_app
from app.settings import Settings

KEY = "label-test-key"
ORIGIN = "http://allowed.example"
SETTINGS = Settings(  # type: ignore[call-arg]
    _env_file=None, api_keys=[KEY], cors_origins=[ORIGIN], max_body_bytes=1000
)


@pytest.fixture(scope="module")
def client() -> TestClient:
    # No lifespan (no worker pool): these answers all come before any computation.
    return TestClient(create_app(SETTINGS), raise_server_exceptions=False)


def counts() -> dict[tuple[str, str, str], float]:
    text = METRICS.render().decode()
    return {
        (s.labels["method"], s.labels["endpoint"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "autodiff_http_requests_total"
    }


def counted(client: TestClient, method: str, path: str, **kw: object) -> tuple[str, int]:
    """Send one request; the one label set whose count went up, and the status."""
    before = counts()
    r = client.request(method, path, **kw)  # type: ignore[arg-type]
    after = counts()
    grown = [k for k, v in after.items() if v > before.get(k, 0.0)]
    assert len(grown) == 1, grown
    assert grown[0][2] == str(r.status_code)
    return grown[0][1], r.status_code


PREFLIGHT = {"Access-Control-Request-Method": "POST"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "label", "status"),
    [
        ("GET", "/openapi.json", {}, "/openapi.json", 200),
        ("HEAD", "/openapi.json", {}, "/openapi.json", 200),
        ("POST", "/openapi.json", {}, "/openapi.json", 405),
        ("HEAD", "/healthz", {}, "/healthz", 200),
        ("HEAD", "/docs", {}, "/docs", 200),
        ("HEAD", "/grad", {"Authorization": f"Bearer {KEY}"}, "/grad", 405),
        ("GET", "/healthz", {}, "/healthz", 200),
        ("POST", "/grad", {}, "/grad", 401),
        ("POST", "/hessian", {"Authorization": "Bearer wrong"}, "/hessian", 401),
        ("GET", "/grad", {"Authorization": f"Bearer {KEY}"}, "/grad", 405),
        ("OPTIONS", "/jvp", {"Origin": ORIGIN, **PREFLIGHT}, "/jvp", 200),
        ("OPTIONS", "/jvp", {"Origin": "http://evil.example", **PREFLIGHT}, "/jvp", 400),
        ("GET", "/docs/assets/no-such-file.js", {}, "/docs/assets/{path}", 404),
        ("GET", "/no/such/path", {"Authorization": f"Bearer {KEY}"}, "<unmatched>", 404),
        ("GET", "/no/such/path", {}, "<unmatched>", 401),
        ("POST", "/grad/extra", {}, "<unmatched>", 401),
    ],
)
def test_requests_are_labelled_by_template_or_unmatched(
    client: TestClient, method: str, path: str, headers: dict[str, str], label: str, status: int
) -> None:
    assert counted(client, method, path, headers=headers) == (label, status)


def test_no_raw_path_becomes_a_label(client: TestClient) -> None:
    for i in range(5):
        client.get(f"/random-{i}")
        client.post(f"/grad/{i}")
    labels = {endpoint for _, endpoint, _ in counts()}
    assert not any(label.startswith("/random-") or label.startswith("/grad/") for label in labels)


def over_limit_body() -> bytes:
    return b'{"expression": "' + b"x" * 2000 + b'"}'


def test_a_body_over_the_limit_gets_one_problem_type_either_way(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    by_length = client.post("/grad", content=over_limit_body(), headers=headers)

    def pieces() -> Iterator[bytes]:
        body = over_limit_body()
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    chunked = client.post("/grad", content=pieces(), headers=headers)
    for r in (by_length, chunked):
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
    assert chunked.json() == by_length.json()
    assert by_length.json()["type"].endswith(":content-too-large")


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Origin": "http://evil.example", **PREFLIGHT}, "origin"),
        ({"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}, "method"),
        ({"Origin": ORIGIN, **PREFLIGHT, "Access-Control-Request-Headers": "X-Evil"}, "headers"),
    ],
)
def test_a_refused_preflight_is_a_problem(
    client: TestClient, headers: dict[str, str], why: str
) -> None:
    r = client.options("/grad", headers=headers)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 400 and body["type"].endswith(":cors-preflight-refused")
    assert why in body["detail"]


def test_an_allowed_preflight_is_unchanged(client: TestClient) -> None:
    r = client.options("/grad", headers={"Origin": ORIGIN, **PREFLIGHT})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN


def test_every_refusal_before_routing_has_the_services_problem_type(client: TestClient) -> None:
    """401 was 'about:blank' while every other problem is urn:autodiff:problem:<kind>."""
    r = client.post("/grad", json={})
    assert r.status_code == 401
    assert r.json()["type"] == "urn:autodiff:problem:unauthorized"
