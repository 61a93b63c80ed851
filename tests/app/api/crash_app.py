"""The service with one route that always fails: a 500 the tests can force (the real app
has no known way to reach one, which is the point)."""

from __future__ import annotations

from app.main import create_app

app = create_app()


@app.get("/test-only/crash")
async def crash() -> None:
    """An unhandled error inside a route: the 500 path, end to end."""
    raise RuntimeError("a forced error")
