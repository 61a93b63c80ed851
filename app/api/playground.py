"""``GET /``: the playground page, and its files under ``/playground/`` (no CDN, no inline code).

The page (app/api/static/playground/) is static: a function, its inputs, the endpoint and options,
a Compute button; the answer's value and derivatives, a plot of the function and its derivative
along one input (uPlot), and the traced graph drawn from the answer's DOT text (Graphviz in
WebAssembly, @viz-js/viz). It calls the service's own endpoints from the browser. The
third-party files are pinned and committed (see app/playground_assets.py).

The page's Content-Security-Policy allows only the service's own scripts and styles (no inline
code at all) and ``'wasm-unsafe-eval'``, which Graphviz's WebAssembly needs to be compiled; the
rest of the service keeps its stricter headers.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, Response

from app.api.playground_assets import check_vendored

PAGE_DIR = Path(__file__).parent / "static" / "playground"
ASSETS_URL = "/playground"
PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PLAYGROUND_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the URL holds the function: never sent elsewhere
    "Cache-Control": "no-cache",
}


class PlaygroundFiles(StaticFiles):
    """The page's files, each with the page's security headers."""

    async def get_response(self, path: str, scope: dict) -> Response:  # type: ignore[override]
        """The file at ``path``, with ``PAGE_HEADERS``."""
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def install_playground(app: FastAPI) -> None:
    """Serve the playground at ``/`` and its files at ``/playground/``."""
    problems = check_vendored()
    if problems:
        raise RuntimeError("playground files are not the pinned ones: " + "; ".join(problems))
    app.mount(ASSETS_URL, PlaygroundFiles(directory=PAGE_DIR), name="playground")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", headers=PAGE_HEADERS)
