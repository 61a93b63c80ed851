"""The error the service answers: RFC 9457 problem details as an exception."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["AutodiffHTTPError"]


class AutodiffHTTPError(Exception):
    """The service answered an error: its RFC 9457 problem details, typed."""

    def __init__(self, status: int, problem: Mapping[str, Any], request_id: str | None) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem)
        self.type: str = str(problem.get("type", "about:blank"))
        self.title: str = str(problem.get("title", "HTTP error"))
        self.detail: str = str(problem.get("detail", ""))
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.request_id = request_id
        super().__init__(
            f"{status} {self.title}: {self.detail}" if self.detail else f"{status} {self.title}"
        )
