"""Jobs (``POST /jobs``): ``Job`` for ``Client.submit``, ``AsyncJob`` for ``AsyncClient.submit``.

A job is polled (``GET /jobs/{id}``) until it ends, at a growing interval (50 ms up to
half a second), so a short job answers quickly and a long one costs few requests. Its
progress (``{"done", "total", "unit"}``) can be shown as a tqdm bar on stderr: tqdm is
the ``progress`` extra (``pip install 'autodiff-client[progress]'``); without it the
wait goes on without a bar and says so once (a ``RuntimeWarning``).

Like ``concurrent.futures.Future``: ``result(timeout)`` waits and answers the job's
``Result``, raises ``TimeoutError`` past the timeout (the job keeps running), and a job
that failed or was cancelled raises ``AutodiffHTTPError`` with its problem details.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import TYPE_CHECKING, Any

from autodiff_client.codec import Result, parse_result
from autodiff_client.errors import AutodiffHTTPError

if TYPE_CHECKING:
    from autodiff_client.client import AsyncClient, Client, JSONObject

__all__ = ["CANCELLED_PROBLEM", "FINAL", "AsyncJob", "Job", "job_result"]

FINAL = frozenset({"done", "failed", "cancelled"})
CANCELLED_PROBLEM = "urn:autodiff:problem:job-cancelled"
_FIRST_POLL_S, _MAX_POLL_S = 0.05, 0.5


def job_result(status: JSONObject) -> Result:
    """A finished job's ``Result``; ``AutodiffHTTPError`` with its problem if it did not succeed."""
    state = status.get("status")
    if state == "done":
        return parse_result(status.get("result") or {}, None)
    if state == "failed":
        problem = dict(status.get("error") or {"title": "Job failed"})
        raise AutodiffHTTPError(int(problem.get("status") or 500), problem, None)
    if state == "cancelled":
        problem = dict(status.get("error") or {})
        problem.setdefault("type", CANCELLED_PROBLEM)
        problem.setdefault("title", "Job cancelled")
        problem.setdefault("detail", f"job {status.get('id')} was cancelled before it finished")
        raise AutodiffHTTPError(int(problem.get("status") or 409), problem, None)
    raise ValueError(f"job {status.get('id')} has not finished: {state}")


class _Bar:
    """A tqdm bar fed with a job's progress, or nothing (no bar asked for, or no tqdm)."""

    def __init__(self, enabled: bool, label: str) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn(
                "no progress bar: install autodiff-client[progress] (tqdm)",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        self._bar = tqdm(total=1, desc=label, leave=True, dynamic_ncols=True)

    def update(self, status: JSONObject) -> None:
        progress = status.get("progress") or {}
        if self._bar is None or not progress:
            return
        self._bar.total = max(int(progress.get("total") or 1), 1)
        self._bar.unit = str(progress.get("unit") or "it")
        self._bar.n = min(int(progress.get("done") or 0), self._bar.total)
        self._bar.set_postfix_str(str(status.get("status", "")), refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _Waiting:
    """The clock of one wait: the next poll interval and the deadline."""

    def __init__(self, job_id: str, timeout: float | None) -> None:
        self.job_id = job_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = _FIRST_POLL_S

    def next_sleep(self) -> float:
        """Seconds to sleep before the next poll; ``TimeoutError`` past the deadline."""
        sleep = self.interval
        self.interval = min(self.interval * 2, _MAX_POLL_S)
        if self.deadline is None:
            return sleep
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"job {self.job_id} has not finished (it keeps running)")
        return min(sleep, left)


class Job:
    """A job of ``Client.submit``: ``status()``, ``wait()``, ``result()``, ``cancel()``."""

    def __init__(self, client: Client, job_id: str, endpoint: str = "") -> None:
        self.client = client
        self.id = job_id
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"Job({self.id!r}, endpoint={self.endpoint!r})"

    def status(self) -> JSONObject:
        """``GET /jobs/{id}``: ``status``, ``progress``, and ``result`` or ``error`` at the end."""
        return self.client.job_status(self.id)

    def cancel(self) -> JSONObject:
        """``DELETE /jobs/{id}``: cancel it (a finished job stays as it ended)."""
        return self.client.job_cancel(self.id)

    def wait_status(self, progress: bool = False, timeout: float | None = None) -> JSONObject:
        """Poll until the job ends and answer its last status (whatever the ending)."""
        clock, bar = _Waiting(self.id, timeout), _Bar(progress, f"{self.endpoint or 'job'}")
        try:
            while True:
                status = self.status()
                bar.update(status)
                if status.get("status") in FINAL:
                    return status
                time.sleep(clock.next_sleep())
        finally:
            bar.close()

    def wait(self, progress: bool = True, timeout: float | None = None) -> Result:
        """Wait for the answer, with a progress bar on stderr unless ``progress=False``."""
        return job_result(self.wait_status(progress, timeout))

    def result(self, timeout: float | None = None) -> Result:
        """The answer, waiting for it without a bar (as ``Future.result``)."""
        return self.wait(progress=False, timeout=timeout)


class AsyncJob:
    """A job of ``AsyncClient.submit``: the methods of ``Job``, each awaitable."""

    def __init__(self, client: AsyncClient, job_id: str, endpoint: str = "") -> None:
        self.client = client
        self.id = job_id
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r}, endpoint={self.endpoint!r})"

    async def status(self) -> JSONObject:
        """``GET /jobs/{id}``."""
        return await self.client.job_status(self.id)

    async def cancel(self) -> JSONObject:
        """``DELETE /jobs/{id}``."""
        return await self.client.job_cancel(self.id)

    async def wait_status(self, progress: bool = False, timeout: float | None = None) -> JSONObject:
        """Poll until the job ends and answer its last status (whatever the ending)."""
        clock, bar = _Waiting(self.id, timeout), _Bar(progress, f"{self.endpoint or 'job'}")
        try:
            while True:
                status = await self.status()
                bar.update(status)
                if status.get("status") in FINAL:
                    return status
                await asyncio.sleep(clock.next_sleep())
        finally:
            bar.close()

    async def wait(self, progress: bool = True, timeout: float | None = None) -> Result:
        """Wait for the answer, with a progress bar on stderr unless ``progress=False``."""
        return job_result(await self.wait_status(progress, timeout))

    async def result(self, timeout: float | None = None) -> Result:
        """The answer, waiting for it without a bar."""
        return await self.wait(progress=False, timeout=timeout)
