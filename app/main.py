"""The ASGI application's import path, ``app.main:app`` (uvicorn, the image, the Makefile).

The application is built in ``app.api.main``; this module only re-exports it.
"""

from app.api.main import app, create_app

__all__ = ["app", "create_app"]
