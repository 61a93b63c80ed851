"""Offline docs: the HTML points only at the service's own assets, and a real
headless Chromium renders /docs and /redoc and runs "Try it out" on /grad with
every request staying on the loopback interface.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Locator, Page, Route, sync_playwright

from app.api.docs import ASSET_FILES, ASSETS_URL, install_docs
from tests.servers import free_port, start_uvicorn, stop, wait_ready

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SCREENSHOT = Path("/tmp/autodiff-docs.png")


# ---------------------------------------------------------------- HTML only (fast)


@pytest.fixture(scope="module")
def docs_client() -> Iterator[TestClient]:
    app = FastAPI(docs_url=None, redoc_url=None, title="t")

    @app.post("/grad")
    async def grad() -> dict[str, int]:
        return {}

    install_docs(app)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_html_uses_only_local_assets(docs_client: TestClient, page: str) -> None:
    r = docs_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text
    assert f"{ASSETS_URL}/" in r.text and "/openapi.json" in r.text
    # The browser is told to load nothing from elsewhere either.
    assert "default-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("name", ASSET_FILES)
def test_assets_are_served(docs_client: TestClient, name: str) -> None:
    r = docs_client.get(f"{ASSETS_URL}/{name}")
    assert r.status_code == 200 and len(r.content) > 1000


def test_swagger_ui_is_version_5(docs_client: TestClient) -> None:
    # Swagger UI 4 refuses FastAPI's OpenAPI 3.1 documents.
    js = docs_client.get(f"{ASSETS_URL}/swagger-ui-bundle.js").text
    assert "OpenAPI 3.1" in js or "openapi31" in js.lower()


def test_docs_are_not_in_the_schema(docs_client: TestClient) -> None:
    paths = docs_client.get("/openapi.json").json()["paths"]
    assert "/docs" not in paths and "/redoc" not in paths


# ---------------------------------------------------------------- real browser


def ensure_chromium() -> None:
    """Install Debian's chromium if it is absent (CI machines start bare)."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("chromium is missing and cannot be installed (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "chromium"], check=True, env=env, capture_output=True
    )


def start_server(app_path: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start uvicorn serving ``app_path`` on a free loopback port with default settings."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    proc = start_uvicorn(port, {**env, "PYTHONPATH": str(REPO)}, app=app_path)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/readyz", proc)
    return proc, base


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    proc, base = start_server("app.main:app")
    try:
        yield base
    finally:
        stop(proc, timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ensure_chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Visit:
    """A page, the off-host requests it tried, and the errors it logged."""

    page: Page
    off_host: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_offline_and_clean(self) -> None:
        """Nothing left loopback; no script error; only the CSP's blocks of off-host URLs."""
        assert self.off_host == [], self.off_host
        for error in self.errors:
            assert "Content Security Policy" in error and "127.0.0.1" not in error, error


def visit(browser: Browser, url: str) -> Visit:
    """Open ``url``; requests to anything but loopback are recorded and aborted."""
    v = Visit(browser.new_page(viewport={"width": 1400, "height": 1000}))

    def guard(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            v.off_host.append(route.request.url)
            route.abort()

    v.page.on("console", lambda m: v.errors.append(m.text) if m.type == "error" else None)
    v.page.on("pageerror", lambda e: v.errors.append(f"page error: {e}"))
    v.page.route("**/*", guard)
    v.page.goto(url, wait_until="load")
    return v


def run_swagger_try_it_out(page: Page, path: str) -> Locator:
    """Expand POST ``path``, press Try it out and Execute; the live response table."""
    block = page.locator(f".opblock-post:has(.opblock-summary-path[data-path='{path}'])")
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    table = block.locator(".live-responses-table").first
    table.locator(".response .response-col_status").first.wait_for(timeout=20_000)
    return table


@pytest.mark.browser
def test_swagger_ui_renders_and_try_it_out_works(service: str, browser: Browser) -> None:
    v = visit(browser, f"{service}/docs")
    v.page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = set(
        v.page.locator(".opblock-summary-path").evaluate_all(
            "els => els.map(e => e.getAttribute('data-path'))"
        )
    )
    assert {"/grad", "/vjp", "/jvp", "/jacobian", "/hessian", "/hvp"} <= paths
    table = run_swagger_try_it_out(v.page, "/grad")
    assert table.locator(".response .response-col_status").first.inner_text().strip() == "200"
    body = table.locator(".response-col_description pre").first.inner_text()
    assert '"gradients"' in body
    table.scroll_into_view_if_needed()
    v.page.screenshot(path=str(SCREENSHOT))
    v.page.close()
    v.assert_offline_and_clean()


@pytest.mark.browser
def test_redoc_renders(service: str, browser: Browser) -> None:
    v = visit(browser, f"{service}/redoc")
    v.page.wait_for_selector("[data-section-id^='operation/']", state="attached", timeout=30_000)
    assert v.page.locator("[data-section-id^='operation/']").count() >= 6
    assert "/grad" in v.page.locator("body").inner_text()
    v.page.close()
    v.assert_offline_and_clean()


KEY = "docs-browser-key"


@pytest.fixture(scope="module")
def keyed_service() -> Iterator[str]:
    """The service with an API key configured (the docs stay open, /grad needs the key)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    proc = start_uvicorn(port, {**env, "PYTHONPATH": str(REPO), "AUTODIFF_API_KEYS": KEY})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", proc)
        yield base
    finally:
        stop(proc, timeout=15)


def status_of(table: Locator) -> str:
    return table.locator(".response .response-col_status").first.inner_text().strip()


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["APIKeyHeader", "HTTPBearer"])
def test_swagger_ui_authorize_makes_try_it_out_work_with_keys(
    keyed_service: str, browser: Browser, scheme: str
) -> None:
    """The document's securitySchemes give Swagger UI its Authorize button (issue 19)."""
    v = visit(browser, f"{keyed_service}/docs")
    v.page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    assert status_of(run_swagger_try_it_out(v.page, "/grad")) == "401"  # no key yet
    v.page.locator("button.btn.authorize").first.click()
    form = v.page.locator(f".auth-container:has-text('{scheme}')")
    form.locator("input").first.fill(KEY)
    form.locator("button.authorize").click()
    v.page.locator("button.btn-done").first.click()
    block = v.page.locator(".opblock-post:has(.opblock-summary-path[data-path='/grad'])")
    block.locator("button.execute").click()
    v.page.wait_for_function(
        "() => document.querySelector('.opblock-post .live-responses-table .response "
        ".response-col_status')?.innerText.trim() === '200'",
        timeout=20_000,
    )
    curl = block.locator(".curl-command").first.inner_text()
    assert KEY in curl  # the request carried the key
    v.page.close()
    v.errors = [e for e in v.errors if "status of 401" not in e]  # the first, keyless call
    v.assert_offline_and_clean()
