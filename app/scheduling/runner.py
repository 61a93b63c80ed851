"""The runner: runs a task in the lane ``choose_lane`` picks and answers its JSON bytes.

The rule of where a task runs is ``app.scheduling.lanes`` (pure); this module executes
it: on the event loop, in the one server thread, or in the process pool, moving to the
next lane when a task outgrows its lane's cap (``SizeLimitError``). No web imports: the
API layer builds the task and wraps the answer in a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from app.compute.run import Encoded, run_encoded
from app.compute.task import Task
from app.scheduling import spill
from app.scheduling.in_process import InProcessSlot
from app.scheduling.lanes import POOL, Lane, LaneSettings, choose_lane, small_program
from app.scheduling.pool import WorkerPool
from app.scheduling.worker import check_answer_fits
from engine.errors import SizeLimitError


@dataclass(frozen=True)
class Answer:
    """A task's answer as JSON bytes (``timing_ms`` spliced in) and its wait for a worker."""

    body: bytes
    pool_wait_ms: float | None = None


def run_in_process(task: Task, program: Any = None) -> Encoded:
    """Run ``task`` in this process (the server's lanes, the CLI's local mode)."""
    return run_encoded(task, program, before_render=check_answer_fits)


class Runner:
    """Runs one task (on the loop, in the server thread, or in the pool) and answers.

    ``settings`` are the service's (the lane rule reads its part).
    """

    def __init__(self, settings: LaneSettings, pool: WorkerPool) -> None:
        self.settings = settings
        self.pool = pool
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autodiff-medium")
        self.in_process = InProcessSlot()
        self.ran: Counter[str] = Counter()  # tasks per lane: "loop", "thread", "pool"

    def close(self) -> None:
        """Stop the server thread once its computation (if any) ends."""
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def respond(self, task: Task, raw: bytes, start: float) -> Answer:
        """The answer for ``task`` (whose request body was ``raw``, received at ``start``)."""
        answer = await self._in_process(task)
        pool_wait = None
        if answer is None:
            submitted = time.perf_counter()
            body, timing, started = await self._in_pool(task, raw)
            # perf_counter is system-wide on Linux, so the worker's start time compares.
            pool_wait = timing["queue"] = round(max(0.0, (started - submitted) * 1000.0), 4)
            self.ran["pool"] += 1
        else:
            body, timing, _ = answer
        timing["total"] = round((time.perf_counter() - start) * 1000.0, 4)
        return Answer(_with_timing(body, timing), pool_wait)

    async def _in_pool(self, task: Task, raw: bytes) -> Encoded:
        """Run in a worker; a large body and answer cross as files, not through the pipe."""
        spill_dir = self.pool.spill_dir
        # Spill files are written and read in a thread: the system calls release the GIL,
        # so the event loop serves other requests meanwhile.
        big = len(raw) >= spill.SPILL_MIN_BYTES and spill_dir is not None
        body_file = await asyncio.to_thread(spill.spill, raw, spill_dir) if big else None
        if body_file is not None:  # the worker reads the arrays from the file
            task = task.with_fields(**dict.fromkeys(task.array_fields))
        try:
            payload, timing, started = await self.pool.run(
                spill.run_spilled, task, body_file, spill_dir
            )
        finally:
            if body_file is not None:  # the worker deletes it, unless it died first
                with contextlib.suppress(OSError):
                    os.unlink(body_file)
        if isinstance(payload, str):
            return await asyncio.to_thread(spill.unspill, payload), timing, started
        return payload, timing, started

    # --- the in-process lanes (see app.scheduling.lanes for the rule) --------------------

    async def _in_process(self, task: Task) -> Encoded | None:
        """The answer computed in the server process, or None when it goes to the pool."""
        program = small_program(task, self.settings)
        lane = choose_lane(task, program, self.settings)
        while lane != POOL:
            if lane.name == "thread" and self.in_process.busy:
                return None  # the one server thread is computing: no queue behind it
            try:
                if lane.name == "loop":
                    answer = run_in_process(_capped(task, lane), program)
                else:
                    answer = await self._on_thread(_capped(task, lane), program)
            except SizeLimitError:  # bigger than this lane allows: the next one's limits
                lane = choose_lane(task, program, self.settings, after=lane.name)
                continue
            self.ran[lane.name] += 1
            return answer
        return None

    async def _on_thread(self, task: Task, program: Any) -> Encoded:
        self.in_process.take()
        future: Future[Encoded] = self._thread.submit(run_in_process, task, program)
        loop = asyncio.get_running_loop()
        # Released when the computation has really ended, even if this request is cancelled.
        future.add_done_callback(lambda _: _call_soon(loop, self.in_process.release))
        return await asyncio.wrap_future(future)


def _capped(task: Task, lane: Lane) -> Task:
    assert lane.max_elements is not None  # an in-process lane always has a cap
    return task.with_limits(lane.max_elements)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed first (the server stopping)
        loop.call_soon_threadsafe(fn)


def _with_timing(body: bytes, timing: dict[str, float]) -> bytes:
    # The worker rendered the answer before the queue wait and the total were known:
    # splice timing_ms in as the last member of the JSON object.
    # One join over a view of the body: ``body[:-1] + ... + ...`` copied a large answer
    # four times.
    extra = b'"timing_ms":' + orjson.dumps(timing)
    if body == b"{}":
        return b"{" + extra + b"}"
    return b"".join((memoryview(body)[:-1], b",", extra, b"}"))
