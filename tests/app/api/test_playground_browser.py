"""The playground at ``GET /``: its HTML and headers (in-process), then the page in a real headless
Chromium (Debian's, through Playwright, offline: every request must stay on loopback).

Screenshots are saved as test artifacts in $AUTODIFF_TEST_ARTIFACTS (default /tmp).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, Response, Route, expect, sync_playwright

from app.api.playground import PAGE_DIR
from app.api.playground_assets import MANIFEST, VENDOR_DIR, check_vendored, load_manifest
from app.main import create_app
from app.settings import Settings
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
ARTIFACTS = Path(os.environ.get("AUTODIFF_TEST_ARTIFACTS", "/tmp"))
F_COLOR, DF_COLOR = (0x1F, 0x5F, 0xBF), (0xC0, 0x39, 0x2B)  # playground.js COLORS
KEY = "playground-test-key"


# ---------------------------------------------------------------- HTML and headers (fast)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(workers=1, worker_memory_mb=0))) as c:
        yield c


def test_page_is_served_with_a_strict_policy(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self' 'wasm-unsafe-eval';" in csp
    assert "unsafe-inline" not in csp and "'unsafe-eval'" not in csp
    # nothing from elsewhere, and no inline script or style in the page itself
    assert "http://" not in r.text and "https://" not in r.text
    assert "<style" not in r.text and "style=" not in r.text
    assert re.search(r"\son[a-z]+\s*=", r.text) is None  # no inline event handlers
    assert all(tag.strip().startswith("<script") for tag in re.findall(r"<script[^>]*>", r.text))
    assert re.findall(r"<script[^>]*>([^<]*)</script>", r.text) == [""]


def test_every_file_the_page_loads_is_served(client: TestClient) -> None:
    page = client.get("/").text
    refs = re.findall(r'(?:src|href)="(playground/[^"]+)"', page)
    assert len(refs) >= 3
    for ref in refs:
        r = client.get(f"/{ref}")
        assert r.status_code == 200 and len(r.content) > 500, ref
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
    js = (PAGE_DIR / "playground.js").read_text()
    for module in re.findall(r'from "\./(vendor/[^"]+)"', js):
        assert client.get(f"/playground/{module}").status_code == 200, module


def test_vendored_files_are_the_pinned_ones() -> None:
    assert check_vendored() == []
    names = {p["name"]: p for p in load_manifest()["packages"]}
    assert names["uplot"]["version"] == "1.6.32" and names["@viz-js/viz"]["version"] == "3.31.0"
    for package in names.values():
        assert package["integrity"].startswith("sha512-") and package["license"]
        folder = VENDOR_DIR / package["dir"]
        assert any(p.name.startswith("LICENSE") for p in folder.iterdir()), folder
    assert MANIFEST.is_file()


def test_a_changed_vendored_file_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    from app.api import playground_assets

    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR_DIR, copy)
    monkeypatch.setattr(playground_assets, "VENDOR_DIR", copy)
    (copy / "uplot" / "uPlot.esm.js").write_text("// not uPlot")
    (copy / "viz-js" / "viz.js").unlink()
    problems = check_vendored()
    assert any("uPlot.esm.js is not the pinned file" in p for p in problems)
    assert any("dist/viz.js is missing" in p for p in problems)


def test_page_is_not_in_the_schema_and_docs_stay(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/playground") for p in paths)
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200


def test_page_is_open_when_keys_are_required() -> None:
    settings = Settings(workers=1, worker_memory_mb=0, api_keys=[KEY])
    with TestClient(create_app(settings)) as c:
        assert c.get("/").status_code == 200
        assert c.get("/playground/playground.js").status_code == 200
        body = {"expression": "sin(x)", "inputs": {"x": 1.0}}
        assert c.post("/grad", json=body).status_code == 401
        assert c.post("/grad", json=body, headers={"X-API-Key": KEY}).status_code == 200


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


def serve(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """The service under uvicorn on a free loopback port (default settings, plus ``extra_env``)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    proc = start_uvicorn(port, {**env, "PYTHONPATH": str(REPO), **(extra_env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", proc)
        yield base
    finally:
        stop(proc, timeout=15)


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    yield from serve()


@pytest.fixture(scope="module")
def keyed_service() -> Iterator[str]:
    yield from serve({"AUTODIFF_API_KEYS": KEY})


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
    """The page, what it tried off loopback, what it logged as errors, its /jvp answers."""

    page: Page
    off_host: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    jvp_answers: list[tuple[Any, Any]] = field(default_factory=list)

    def assert_clean(self, allowed: tuple[str, ...] = ()) -> None:
        """Nothing left loopback and nothing was logged as an error (but ``allowed`` texts)."""
        assert self.off_host == [], self.off_host
        assert [e for e in self.errors if not any(a in e for a in allowed)] == []


def open_page(browser: Browser, url: str) -> Visit:
    v = Visit(browser.new_page(viewport={"width": 1200, "height": 1000}))

    def guard(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            v.off_host.append(route.request.url)
            route.abort()

    def on_response(response: Response) -> None:
        if response.url.endswith("/jvp") and response.ok:
            v.jvp_answers.append((response.request.post_data_json, response.json()))

    v.page.on("console", lambda m: v.errors.append(m.text) if m.type == "error" else None)
    v.page.on("pageerror", lambda e: v.errors.append(f"page error: {e}"))
    v.page.on("response", on_response)
    v.page.route("**/*", guard)
    v.page.goto(url, wait_until="load")
    return v


def compute(page: Page, expect_text: str = "Done") -> None:
    page.get_by_role("button", name="Compute").click()
    wait_status(page, expect_text)


def wait_status(page: Page, text: str) -> None:
    expect(page.locator("#status")).to_contain_text(text, timeout=60_000)


def shown_number(page: Page, element_id: str) -> float:
    return float(page.locator(f"#{element_id}").inner_text().strip())


def curve_pixels(page: Page) -> dict[str, int]:
    """How many canvas pixels of the plot are in each series' colour."""
    counts: dict[str, int] = page.locator("#plot canvas").evaluate(
        """(canvas, colors) => {
            const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
            const near = (i, c) => Math.abs(data[i] - c[0]) + Math.abs(data[i + 1] - c[1])
                + Math.abs(data[i + 2] - c[2]) < 60 && data[i + 3] > 200;
            let f = 0, df = 0;
            for (let i = 0; i < data.length; i += 4) { if (near(i, colors[0])) f++;
                else if (near(i, colors[1])) df++; }
            return {f, df};
        }""",
        [F_COLOR, DF_COLOR],
    )
    return counts


def json_graph(base: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{base}/{endpoint}", json={**body, "include_graph": True}, timeout=30)
    assert r.status_code == 200, r.text
    graph: dict[str, Any] = r.json()["graph"]
    return graph


@pytest.mark.browser
def test_seed_example_value_gradient_plot_and_graph(service: str, browser: Browser) -> None:
    v = open_page(browser, f"{service}/")
    page = v.page
    # the controls by their accessible names
    expect(page.get_by_label("Function")).to_have_value("sin(x)")
    expect(page.get_by_label("Inputs")).to_have_value('{"x":1}')
    # keyboard: Ctrl+Enter in the Function field computes
    page.get_by_label("Function").focus()
    page.keyboard.press("Control+Enter")
    wait_status(page, "Done")
    assert shown_number(page, "result-value") == pytest.approx(math.sin(1.0), abs=1e-7)
    assert shown_number(page, "result-gradients-x") == pytest.approx(math.cos(1.0), abs=1e-7)

    plot = page.get_by_role("img", name=re.compile("plot"))
    expect(plot).to_have_attribute("aria-label", re.compile(r"plot of f and df/dx .*61 points"))
    assert plot.locator(".u-legend .u-series").count() == 3  # x, f and df/dx
    pixels = curve_pixels(page)
    assert pixels["f"] > 300 and pixels["df"] > 150, pixels  # both curves drawn
    # the plotted derivative is the service's, all 61 points in ONE batch request: cos at every x
    assert len(v.jvp_answers) == 1
    request, answer = v.jvp_answers[0]
    assert request["batch"] == ["x"] and request["tangents"] == {"x": 1.0}
    xs = request["inputs"]["x"]
    assert len(xs) == len(answer["value"]) == len(answer["jvp"]) == 61
    assert answer["value"] == pytest.approx([math.sin(x) for x in xs], abs=1e-12)
    assert answer["jvp"] == pytest.approx([math.cos(x) for x in xs], abs=1e-12)
    assert xs[0] == pytest.approx(-6.2832) and xs[-1] == pytest.approx(6.2832)
    expect(page.locator("#plot-note")).to_contain_text("1 request: one /jvp with batch")

    graph = page.get_by_role("img", name=re.compile("graph"))
    nodes = json_graph(service, "grad", {"expression": "sin(x)", "inputs": {"x": 1.0}})["nodes"]
    assert graph.locator("svg g.node").count() == len(nodes) == 2
    expect(graph).to_have_attribute("aria-label", re.compile(r"traced graph: 2 nodes, 1 edge$"))
    page.screenshot(path=str(ARTIFACTS / "autodiff-playground.png"), full_page=True)
    v.assert_clean()


@pytest.mark.browser
@pytest.mark.parametrize(
    ("example", "endpoint", "body"),
    [
        (
            "A program with while and if",
            "grad",
            {
                "expression": "b = a * 2\nwhile norm(b) < 1000:\n    b = b * 2\n"
                "if sum(b) > 0:\n    c = b\nelse:\n    c = 100 * b\nreturn sum(c)",
                "inputs": {"a": [0.3, -0.2, 0.5, 0.1]},
            },
        ),
        (
            "Hessian of the Rosenbrock function",
            "hessian",
            {
                "expression": "sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)",
                "inputs": {"x": [-1.2, 1.0, 0.5]},
            },
        ),
    ],
)
def test_graph_picture_has_the_answers_nodes(
    service: str, browser: Browser, example: str, endpoint: str, body: dict[str, Any]
) -> None:
    v = open_page(browser, f"{service}/")
    v.page.get_by_label("Example").select_option(label=example)
    compute(v.page)
    nodes = json_graph(service, endpoint, body)["nodes"]
    picture = v.page.get_by_role("img", name=re.compile("graph"))
    assert picture.locator("svg g.node").count() == len(nodes) > 5
    assert picture.locator("svg g.edge").count() == sum(len(n["inputs"]) for n in nodes)
    v.assert_clean()


@pytest.mark.browser
def test_inputs_as_assignments_and_a_vector_element_plotted(service: str, browser: Browser) -> None:
    v = open_page(browser, f"{service}/")
    page = v.page
    page.get_by_label("Function").fill("sum(sin(x) * y)")
    page.get_by_label("Inputs").fill("x = [0.5, 2.0]\ny = 3")
    expect(page.get_by_label("Along")).to_have_value("x[0]")  # the choices follow the inputs
    page.get_by_label("Along").select_option("x[1]")
    expect(page.get_by_label("From")).to_have_value(str(round(2.0 - math.pi, 4)))
    page.get_by_label("Points").fill("11")
    compute(page)
    expected = 3 * (math.sin(0.5) + math.sin(2.0))
    assert shown_number(page, "result-value") == pytest.approx(expected, abs=1e-6)
    assert len(v.jvp_answers) == 1  # the 11 points in one request, batched over x
    request, answer = v.jvp_answers[0]
    assert request["batch"] == ["x"] and request["tangents"] == {"x": [0.0, 1.0]}
    assert request["inputs"]["y"] == 3  # shared by every point
    points = request["inputs"]["x"]
    assert len(points) == 11 and all(p[0] == 0.5 for p in points)
    assert answer["jvp"] == pytest.approx([3 * math.cos(p[1]) for p in points], abs=1e-12)
    v.assert_clean()


@pytest.mark.browser
def test_plot_falls_back_to_a_request_per_point_when_the_batch_is_refused(
    service: str, browser: Browser
) -> None:
    """A batch the service refuses (say, control flow that differs between the points) still
    plots: one /jvp per point, and the note says why."""
    v = open_page(browser, f"{service}/")
    page = v.page
    refused = {
        "type": "urn:autodiff:problem:batch-control-flow",
        "title": "Control flow differs between points",
        "status": 422,
        "detail": "the condition on line 2 is true for some points and false for others",
    }
    batches: list[Any] = []

    def refuse_batches(route: Route) -> None:
        body = route.request.post_data_json
        if isinstance(body, dict) and "batch" in body:
            batches.append(body)
            route.fulfill(
                status=422, content_type="application/problem+json", body=json.dumps(refused)
            )
        else:
            route.fallback()

    page.route("**/jvp", refuse_batches)
    page.get_by_label("Points").fill("9")
    compute(page)
    assert len(batches) == 1 and len(batches[0]["inputs"]["x"]) == 9
    assert len(v.jvp_answers) == 9  # then one request per point, each answered
    for request, answer in v.jvp_answers:
        assert "batch" not in request
        assert answer["jvp"] == pytest.approx(math.cos(request["inputs"]["x"]), abs=1e-12)
    note = page.locator("#plot-note")
    expect(note).to_contain_text("The batch request was refused (Control flow differs")
    expect(note).to_contain_text("9 requests instead (one /jvp per point")
    assert curve_pixels(page)["df"] > 50  # the curve is drawn all the same
    v.assert_clean(allowed=("status of 422",))


@pytest.mark.browser
def test_keyboard_alone_picks_an_example_and_computes(service: str, browser: Browser) -> None:
    v = open_page(browser, f"{service}/")
    page = v.page
    page.get_by_label("Example").focus()
    page.keyboard.press("ArrowDown")  # the next example: 2 * dot(x, x)
    expect(page.get_by_label("Function")).to_have_value("2 * dot(x, x)")
    focused: list[str] = []
    for _ in range(40):  # Tab through the form to the button, never past it
        page.keyboard.press("Tab")
        focused.append(page.evaluate("() => document.activeElement.id"))
        if focused[-1] == "compute":
            break
    assert focused[-1] == "compute"
    for control in ("function", "inputs", "endpoint", "options", "plot-along", "api-key"):
        assert control in focused, focused
    page.keyboard.press("Enter")
    wait_status(page, "Done")
    expect(page.locator("#result-gradients-x")).to_have_text("[ 0.0,  4.0,  8.0, 12.0]")
    v.assert_clean()


@pytest.mark.browser
def test_non_finite_node_is_marked(service: str, browser: Browser) -> None:
    v = open_page(browser, f"{service}/")
    v.page.get_by_label("Example").select_option(label="log at 0: a non-finite value")
    compute(v.page)
    picture = v.page.get_by_role("img", name=re.compile("graph"))
    marked = picture.locator("svg g.node.nonfinite")
    assert marked.count() == 1 and "log" in (marked.text_content() or "")
    expect(picture).to_have_attribute("aria-label", re.compile("non-finite values arose at log_"))
    expect(v.page.locator("#result")).to_contain_text("non-finite values first arose in log")
    v.assert_clean()


@pytest.mark.browser
def test_error_marks_the_source_position(service: str, browser: Browser) -> None:
    v = open_page(browser, f"{service}/")
    source = "y = x * 2\nreturn sin(y) +* 1"
    v.page.get_by_label("Function").fill(source)
    compute(v.page, "Error 422")
    problem = httpx.post(f"{service}/grad", json={"expression": source, "inputs": {"x": 1.0}})
    loc = problem.json()["errors"][0]["loc"]
    mark = v.page.locator("#source-mark")
    expect(mark).to_be_visible()
    assert (mark.get_attribute("data-line"), mark.get_attribute("data-column")) == (
        str(loc["line"]),
        str(loc["column"]),
    )
    assert (
        mark.locator("mark").inner_text() == source.splitlines()[loc["line"] - 1][loc["column"] - 1]
    )
    expect(v.page.get_by_label("Function")).to_have_attribute("aria-invalid", "true")
    expect(v.page.get_by_role("alert")).to_contain_text(problem.json()["detail"])
    # the stale picture of a former answer is not left beside the error
    assert v.page.locator("#graph svg").count() == 0
    v.page.screenshot(path=str(ARTIFACTS / "autodiff-playground-error.png"), full_page=True)
    v.assert_clean(allowed=("status of 422",))  # Chromium logs the refused request itself


@pytest.mark.browser
def test_link_reproduces_the_request(service: str, browser: Browser) -> None:
    v = open_page(browser, f"{service}/")
    page = v.page
    page.get_by_label("Example").select_option(label="Softplus and tanh, one element plotted")
    page.get_by_label("Options").fill('{"check": true}')
    page.get_by_label("Points").fill("21")
    compute(page)
    fields = ["Function", "Inputs", "Endpoint", "Options", "Along", "From", "To", "Points"]
    before = {name: page.get_by_label(name, exact=True).input_value() for name in fields}
    result = page.locator("#result-gradients-x").inner_text()
    link = page.get_by_role("link", name="Link to this request").get_attribute("href")
    assert link and link.startswith(f"{service}/#")
    curl = page.get_by_label("curl").input_value()
    assert f"curl -sS -X POST '{service}/grad'" in curl and '"check":true' in curl

    again = open_page(browser, link)
    wait_status(again.page, "Done")  # a link computes its request at once
    after = {name: again.page.get_by_label(name, exact=True).input_value() for name in fields}
    assert after == before and before["Along"] == "x[1]" and before["Points"] == "21"
    assert again.page.locator("#result-gradients-x").inner_text() == result
    expect(again.page.locator("#result")).to_contain_text("max_abs_error")
    v.assert_clean()
    again.assert_clean()


@pytest.mark.browser
def test_api_key_is_used_and_kept_only_in_memory(keyed_service: str, browser: Browser) -> None:
    v = open_page(browser, f"{keyed_service}/")
    page = v.page
    compute(page, "Error 401")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("API key").fill(KEY)
    compute(page)
    assert shown_number(page, "result-value") == pytest.approx(math.sin(1.0), abs=1e-7)
    assert page.get_by_role("img", name=re.compile("plot")).locator("canvas").count() == 1
    link = page.get_by_role("link", name="Link to this request").get_attribute("href") or ""
    curl = page.get_by_label("curl").input_value()
    assert KEY not in link and KEY not in page.url and KEY not in curl
    assert "$AUTODIFF_API_KEY" in curl
    stored = page.evaluate("() => JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert KEY not in stored
    v.assert_clean(allowed=("status of 401",))
