"""app/api/jobs.py without servers: a failed job's error is the problem a synchronous
request would have been answered."""

from __future__ import annotations

from app.api.jobs import describe
from app.scheduling.errors import ComputeTimeoutError
from engine.errors import ShapeError, SizeLimitError


def test_an_engine_error_is_described_with_its_http_status() -> None:
    # Engine errors carry no HTTP status (issue 14): the API maps their classes.
    shape = describe(ShapeError("matmul: shapes (2,) and (3,) do not align", op="matmul"))
    assert shape["status"] == 422 and shape["type"].endswith(":shape-mismatch")
    assert shape["errors"][0]["op"] == "matmul"
    size = describe(SizeLimitError("the result has too many elements"))
    assert size["status"] == 413


def test_a_scheduling_error_is_described_with_its_status() -> None:
    assert describe(ComputeTimeoutError("ran past 5 s"))["status"] == 504
