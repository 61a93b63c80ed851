"""Request ids, JSON access logs and Prometheus metrics (app/observability.py)."""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.middleware.base import BaseHTTPMiddleware

from app.api import multiproc
from app.api.observability import (
    ACCESS_LOGGER,
    METRICS,
    POOL_EVENTS,
    ObservabilityMiddleware,
    install_observability,
    new_request_id,
    record_pool_event,
    set_pool_gauges,
)

SETTINGS = SimpleNamespace(api_keys=[], cors_origins=[], log_level="info")


class ListHandler(logging.Handler):
    """Keeps the formatted access lines for inspection."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def build_app() -> FastAPI:
    """A tiny app: a templated route, one that reports pool wait, one that crashes."""
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/grad")
    async def grad(request: Request) -> dict[str, bool]:
        request.state.pool_wait_ms = 1.25
        return {"ok": True}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internal detail /srv/app/secret.py")

    install_observability(app, SETTINGS)
    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(build_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def access_lines() -> Iterator[list[str]]:
    handler = ListHandler()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def ecs(line: str) -> dict[str, Any]:
    """An access line's fields by their ECS names, flattened: {"http.request.id": ...}."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[prefix + key] = value

    walk("", orjson.loads(line))
    return flat


def series(name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` in the service registry: (labels, value)."""
    text = METRICS.render().decode()
    return [
        (dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def sample(name: str, **labels: str) -> float:
    """The value of the one sample with exactly these labels (0.0 if absent).

    Exact, not partial: other tests (the hostile corpus) add series such as a
    POST 404 that a partial match would pick up instead of the intended one.
    """
    values = [value for found, value in series(name) if found == labels]
    assert len(values) <= 1, f"{name}{labels} matches {len(values)} series"
    return values[0] if values else 0.0


def labelled(name: str, **labels: str) -> list[dict[str, str]]:
    """The label sets of every ``name`` series that has these labels (and maybe others)."""
    return [found for found, _ in series(name) if all(found.get(k) == v for k, v in labels.items())]


# ---------------------------------------------------------------- request ids


def test_request_id_is_generated_when_absent(client: TestClient) -> None:
    first = client.get("/items/1").headers["x-request-id"]
    second = client.get("/items/1").headers["x-request-id"]
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != second


@pytest.mark.parametrize("sent", ["abc", "req-1.2_3", "A" * 128])
def test_sane_request_id_is_honoured(client: TestClient, sent: str) -> None:
    assert client.get("/items/1", headers={"X-Request-ID": sent}).headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "sent", ["A" * 129, "has space", "semi;colon", "new\\nline", "<script>", "ü-nicode".encode()]
)
def test_insane_request_id_is_replaced(client: TestClient, sent: str | bytes) -> None:
    got = client.get("/items/1", headers={"X-Request-ID": sent}).headers["x-request-id"]
    assert got != (sent if isinstance(sent, str) else sent.decode("latin-1"))
    assert len(got) == 32


def test_new_request_id_rules() -> None:
    assert new_request_id(b"ok-id") == "ok-id"
    assert new_request_id(b"") != ""
    assert new_request_id(None) != new_request_id(None)
    assert new_request_id(b"\xff\xfe") != "\xff\xfe"


def test_request_id_on_404_and_405(client: TestClient) -> None:
    assert client.get("/nowhere").headers.get("x-request-id")
    assert client.get("/grad").status_code == 405
    assert client.get("/grad").headers.get("x-request-id")


def test_request_id_is_not_duplicated_when_the_app_sets_one() -> None:
    app = FastAPI()

    @app.get("/x")
    async def x() -> JSONResponse:
        return JSONResponse({"a": 1}, headers={"X-Request-ID": "from-app"})

    install_observability(app, SETTINGS)
    with TestClient(app) as c:
        r = c.get("/x")
    assert r.headers.get_list("x-request-id") == ["from-app"]


def test_request_id_is_in_request_state() -> None:
    app = FastAPI()

    @app.get("/x")
    async def x(request: Request) -> dict[str, str]:
        return {"rid": request.state.request_id}

    install_observability(app, SETTINGS)
    with TestClient(app) as c:
        r = c.get("/x", headers={"X-Request-ID": "trace-me"})
    assert r.json() == {"rid": "trace-me"}


# ---------------------------------------------------------------- crash path


def test_unhandled_exception_is_a_500_with_request_id_and_no_leak(
    client: TestClient, access_lines: list[str]
) -> None:
    r = client.get("/crash", headers={"X-Request-ID": "crash-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "crash-1"
    assert "secret" not in r.text and "Traceback" not in r.text and ".py" not in r.text
    line = ecs(access_lines[-1])
    assert line["http.response.status_code"] == 500 and line["http.request.id"] == "crash-1"


def test_the_apps_own_500_handler_is_used_and_gets_the_request_id() -> None:
    app = FastAPI()

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"mine": type(exc).__name__}, status_code=500)

    app.add_exception_handler(Exception, on_error)
    install_observability(app, SETTINGS)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/crash", headers={"X-Request-ID": "crash-2"})
    assert r.status_code == 500
    assert r.json() == {"mine": "RuntimeError"}
    assert r.headers["x-request-id"] == "crash-2"


def test_an_answered_error_stops_here_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Once the 500 is sent the error goes no further: one that reaches the server makes
    it close the keep-alive connection without saying so, and the client's next request
    on it fails (issue 13; tests/app/api/test_keepalive.py tries it over real sockets)."""
    with TestClient(build_app()) as c, caplog.at_level(logging.ERROR):
        r = c.get("/crash")  # raise_server_exceptions: it would raise if the error escaped
    assert r.status_code == 500
    assert any(rec.exc_info and "secret internal" in str(rec.exc_info[1]) for rec in caplog.records)


def test_an_error_before_any_answer_gets_a_500_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("before the answer")

    app = ObservabilityMiddleware(broken, metrics=METRICS, logger=logging.getLogger("t"))
    with caplog.at_level(logging.ERROR):
        r = TestClient(app).get("/anything")  # no lifespan: the app serves http only
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert any(rec.exc_info for rec in caplog.records)


def test_an_error_inside_an_answer_still_reaches_the_server() -> None:
    """A half-sent answer cannot be finished: the connection must end, so it is raised."""

    async def half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("in the middle")

    app = ObservabilityMiddleware(half, metrics=METRICS, logger=logging.getLogger("t"))
    with pytest.raises(RuntimeError, match="in the middle"):
        TestClient(app).get("/anything")


# ---------------------------------------------------------------- access log


def test_one_json_line_per_request(client: TestClient, access_lines: list[str]) -> None:
    client.get("/items/7", headers={"X-Request-ID": "log-1"})
    client.post("/grad", json={}, headers={"X-Request-ID": "log-2"})
    assert len(access_lines) == 2
    first, second = (ecs(line) for line in access_lines)
    assert first["http.request.id"] == "log-1"
    assert first["http.request.method"] == "GET" and first["url.path"] == "/items/7"
    assert first["autodiff.endpoint"] == "/items/{item_id}"
    assert first["http.response.status_code"] == 200
    assert isinstance(first["event.duration"], int) and first["event.duration"] >= 0  # ns
    assert "autodiff.pool_wait_ms" not in first
    assert second["autodiff.pool_wait_ms"] == 1.25 and second["autodiff.endpoint"] == "/grad"


def test_own_handler_gets_the_line_written_directly(client: TestClient) -> None:
    """With only the service's handler, the line skips logging and goes to its stream."""
    logger = logging.getLogger(ACCESS_LOGGER)
    # pytest's log capture adds its handlers to this logger too: keep only the service's.
    (handler,) = [h for h in logger.handlers if getattr(h, "_autodiff", False)]
    assert isinstance(handler, logging.StreamHandler)
    stream, calls = io.StringIO(), []
    previous, previous_handlers = handler.stream, logger.handlers
    handler.stream = stream
    logger.handlers = [handler]
    original_info = logger.info
    logger.info = lambda *a, **k: calls.append(a)  # type: ignore[method-assign]
    try:
        client.get("/items/3", headers={"X-Request-ID": "direct-1"})
        client.post("/grad", json={}, headers={"X-Request-ID": "direct-2"})
    finally:
        handler.stream = previous
        logger.handlers = previous_handlers
        del logger.info
    assert logger.info == original_info
    assert calls == []  # logging.Logger.info was not called
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (ecs(line) for line in lines)
    # ECS names (the shape Elastic's ecs-logging writes), the service's own under autodiff.
    assert set(first) == {
        "@timestamp",
        "log.level",
        "message",
        "ecs.version",
        "event.dataset",
        "event.duration",
        "http.request.id",
        "http.request.method",
        "http.response.status_code",
        "url.path",
        "log.logger",
        "autodiff.endpoint",
    }
    assert first["http.request.id"] == "direct-1" and first["http.response.status_code"] == 200
    assert first["log.level"] == "info" and first["event.dataset"] == "autodiff.access"
    assert first["message"] == "GET /items/3 200"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["@timestamp"])
    assert second["http.request.id"] == "direct-2" and second["autodiff.pool_wait_ms"] == 1.25


def test_log_level_warning_silences_access_lines(access_lines: list[str]) -> None:
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, int]:
        return {}

    logger = logging.getLogger(ACCESS_LOGGER)
    before = logger.level
    install_observability(app, SimpleNamespace(log_level="warning"))
    try:
        with TestClient(app) as c:
            assert c.get("/x").status_code == 200
        assert access_lines == []
    finally:
        logger.setLevel(before)


# ---------------------------------------------------------------- metrics


def test_requests_are_counted_by_route_template(client: TestClient) -> None:
    labels = {"method": "GET", "endpoint": "/items/{item_id}", "status": "200"}
    before = sample("autodiff_http_requests_total", **labels)
    before_hist = sample("autodiff_http_request_duration_seconds_count", **labels)
    for i in range(3):
        client.get(f"/items/{i}")
    assert sample("autodiff_http_requests_total", **labels) == before + 3
    assert sample("autodiff_http_request_duration_seconds_count", **labels) == before_hist + 3
    # The raw path never becomes a label.
    assert labelled("autodiff_http_requests_total", endpoint="/items/1") == []


def test_unknown_paths_share_one_label(client: TestClient) -> None:
    labels = {"method": "GET", "endpoint": "<unmatched>", "status": "404"}
    before = sample("autodiff_http_requests_total", **labels)
    client.get("/random/a")
    client.get("/random/b")
    assert sample("autodiff_http_requests_total", **labels) == before + 2
    assert labelled("autodiff_http_requests_total", endpoint="/random/a") == []


def test_status_label_follows_the_response(client: TestClient) -> None:
    labels = {"method": "GET", "endpoint": "/items/{item_id}", "status": "422"}
    before = sample("autodiff_http_requests_total", **labels)
    client.get("/items/not-an-int")
    after = sample("autodiff_http_requests_total", **labels)
    assert after == before + 1


def test_unknown_methods_share_one_label(client: TestClient) -> None:
    labels = {"method": "other", "endpoint": "/items/{item_id}", "status": "405"}
    before = sample("autodiff_http_requests_total", **labels)
    for method in ("FOO", "BAR", "BAZ"):
        assert client.request(method, "/items/1").status_code == 405
    assert sample("autodiff_http_requests_total", **labels) == before + 3
    assert labelled("autodiff_http_requests_total", method="FOO") == []


@pytest.mark.parametrize("event", POOL_EVENTS)
def test_pool_events_are_counted(client: TestClient, event: str) -> None:
    names = {
        "timeout": "autodiff_pool_timeouts_total",
        "worker_restart": "autodiff_pool_worker_restarts_total",
        "queue_full": "autodiff_pool_queue_full_rejections_total",
        "queue_timeout": "autodiff_pool_queue_timeouts_total",
        "memory_limit": "autodiff_pool_memory_limit_kills_total",
    }
    before = sample(names[event])
    record_pool_event(event)
    record_pool_event(event)
    text = client.get("/metrics").text
    assert names[event] in text
    assert sample(names[event]) == before + 2


def test_unknown_pool_event_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown pool event"):
        record_pool_event("tiemout")


def test_pool_gauges(client: TestClient) -> None:
    set_pool_gauges(queue_depth=5, busy_workers=2)
    text = client.get("/metrics").text
    assert "autodiff_pool_queue_depth 5.0" in text
    assert "autodiff_pool_busy_workers 2.0" in text
    set_pool_gauges(queue_depth=0, busy_workers=0)
    assert sample("autodiff_pool_queue_depth") == 0.0


def test_metrics_endpoint_is_prometheus_text(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(r.text)}
    assert {
        "autodiff_http_requests",
        "autodiff_http_request_duration_seconds",
        "autodiff_pool_queue_depth",
        "autodiff_pool_busy_workers",
        "process_resident_memory_bytes",
    } <= families


def test_metrics_is_documented_as_text(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["text/plain"]


def test_middleware_is_outermost_and_pure_asgi() -> None:
    stack = build_app().build_middleware_stack()
    assert isinstance(stack, ObservabilityMiddleware)
    layer: object = stack
    while hasattr(layer, "app"):
        assert not isinstance(layer, BaseHTTPMiddleware), type(layer)
        layer = layer.app


def test_body_limit_answers_are_counted_and_carry_the_request_id(
    access_lines: list[str],
) -> None:
    """Starlette's body limit answers outside every user middleware; it is seen all the same."""
    app = FastAPI(max_body_size=100)

    @app.post("/grad")
    async def grad(body: dict[str, str]) -> dict[str, str]:
        return body

    install_observability(app, SETTINGS)
    labels = {"method": "POST", "endpoint": "/grad", "status": "413"}
    before = sample("autodiff_http_requests_total", **labels)
    with TestClient(app) as c:
        r = c.post("/grad", content=b"x" * 1000, headers={"X-Request-ID": "big-1"})
    assert r.status_code == 413
    assert r.headers["x-request-id"] == "big-1"
    assert sample("autodiff_http_requests_total", **labels) == before + 1
    assert ecs(access_lines[-1])["http.response.status_code"] == 413


# ---------------------------------------------------------------- the real service


@pytest.fixture(scope="module")
def service() -> Iterator[TestClient]:
    """The service with every request sent to the pool and a short time limit."""
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        inline_max_elements=0,
        time_limit_s=1.0,
        max_iterations=10**9,
        workers=1,
    )
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the worker pool did not start"
            time.sleep(0.1)
        yield c


TWO_DOT = {"expression": "2 * dot(x, x)", "inputs": {"x": [0.0, 1.0, 2.0, 3.0]}}


def test_service_request_is_logged_with_pool_wait_and_counted(
    service: TestClient, access_lines: list[str]
) -> None:
    labels = {"method": "POST", "endpoint": "/grad", "status": "200"}
    before = sample("autodiff_http_requests_total", **labels)
    r = service.post("/grad", json=TWO_DOT, headers={"X-Request-ID": "svc-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "svc-1"
    assert sample("autodiff_http_requests_total", **labels) == before + 1
    line = ecs(access_lines[-1])
    assert line["http.request.id"] == "svc-1" and line["autodiff.endpoint"] == "/grad"
    wait = line["autodiff.pool_wait_ms"]
    assert isinstance(wait, int | float) and wait >= 0


def test_service_errors_carry_request_ids(service: TestClient) -> None:
    r = service.post("/grad", json={"expression": "x.y", "inputs": {"x": 1}})
    assert r.status_code == 422 and len(r.headers["x-request-id"]) == 32
    r = service.get("/nowhere")
    assert r.status_code == 404 and len(r.headers["x-request-id"]) == 32


def test_service_counts_a_timeout_and_the_worker_restart(service: TestClient) -> None:
    timeouts = sample("autodiff_pool_timeouts_total")
    restarts = sample("autodiff_pool_worker_restarts_total")
    runaway = {
        "expression": "y = x\nwhile True:\n    y = y + 1\nreturn sum(y)",
        "inputs": {"x": [1.0]},
    }
    assert service.post("/grad", json=runaway).status_code == 504
    text = service.get("/metrics").text
    assert 'autodiff_http_requests_total{endpoint="/grad",method="POST",status="504"}' in text
    assert sample("autodiff_pool_timeouts_total") == timeouts + 1
    assert sample("autodiff_pool_worker_restarts_total") >= restarts + 1
    # The pool healed: the next request succeeds and the gauges are back to idle.
    assert service.post("/grad", json=TWO_DOT).status_code == 200
    assert sample("autodiff_pool_busy_workers") == 0.0
    assert sample("autodiff_pool_queue_depth") == 0.0


# ---------------------------------------------------------------- several server processes


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_one_server_process_keeps_the_in_memory_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(multiproc.ENV, raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setenv("UVICORN_WORKERS", "1")
    assert multiproc.configure(root=str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []
    assert METRICS.multiproc_dir is None  # the test process is one process


def test_several_server_processes_share_their_supervisors_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(multiproc.ENV, "placeholder")  # restored after the test
    monkeypatch.delenv(multiproc.ENV)
    monkeypatch.setenv("UVICORN_WORKERS", "2")
    path = multiproc.configure(root=str(tmp_path))
    assert path == multiproc.supervisor_dir(os.getppid(), str(tmp_path))
    assert os.environ[multiproc.ENV] == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    # A sibling process (same parent) gets the same one; the operator's choice wins.
    monkeypatch.delenv(multiproc.ENV)
    assert multiproc.configure(root=str(tmp_path)) == path
    monkeypatch.setenv(multiproc.ENV, str(tmp_path / "mine"))
    assert multiproc.configure(root=str(tmp_path)) == str(tmp_path / "mine")


def test_a_directory_that_is_not_ours_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(multiproc.ENV, "placeholder")
    monkeypatch.delenv(multiproc.ENV)
    monkeypatch.setenv("UVICORN_WORKERS", "2")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", multiproc.supervisor_dir(os.getppid(), str(tmp_path)))
    assert multiproc.configure(root=str(tmp_path)) is None
    assert multiproc.ENV not in os.environ


def test_stale_directories_go_and_live_ones_stay(tmp_path: Path) -> None:
    dead = _dead_pid()
    me = os.getpid()
    gone = tmp_path / f"{multiproc.PREFIX}{dead}-12345"
    running = Path(multiproc.supervisor_dir(me, str(tmp_path)))
    orphaned_writer = tmp_path / f"{multiproc.PREFIX}{dead}-777"
    for path, writer in ((gone, dead), (running, dead), (orphaned_writer, me)):
        path.mkdir()
        (path / f"counter_{writer}.db").write_bytes(b"")
    assert multiproc.remove_stale(str(tmp_path)) == [str(gone)]
    assert running.exists() and orphaned_writer.exists()


def test_live_gauges_of_dead_processes_are_reaped(tmp_path: Path) -> None:
    dead, me = _dead_pid(), os.getpid()
    for pid in (dead, me):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    multiproc.reap_dead(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead}.db", f"counter_{me}.db", f"gauge_livesum_{me}.db"]
    )
