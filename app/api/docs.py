"""Swagger UI 5 and ReDoc served entirely by the service (no CDN).

The assets come from the installed ``fastapi-offline`` package (Swagger UI 5,
ReDoc 2). PyPI's ``swagger-ui-bundle`` is Swagger UI 4.15, which refuses an
OpenAPI 3.1 document, so it is not used.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")

# Show how long each "Try it out" call took; keep the long schema list folded;
# no validator badge (it calls validator.swagger.io).
SWAGGER_UI_PARAMETERS = {
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,
    "validatorUrl": None,
}
# The docs pages may load nothing from elsewhere: ReDoc's bundle hard-codes a
# logo on cdn.redoc.ly, which this blocks (ReDoc hides the image on error).
# Inline script/style: FastAPI's page bootstraps Swagger UI inline; ReDoc runs
# its search index in a blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)


def _check_assets() -> None:
    missing = [name for name in ASSET_FILES if not (ASSETS_DIR / name).is_file()]
    if missing:
        raise RuntimeError(f"offline docs assets missing from fastapi-offline: {missing}")


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI) and ``/redoc`` with assets from the service itself."""
    _check_assets()
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    parameters = {**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters=parameters,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
