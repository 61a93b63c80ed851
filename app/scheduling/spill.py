"""Spill files: large request bodies and answers cross between processes as files.

A pipe to a worker moves about 0.25 GB/s here and pickling a list of 2*10^5 floats
held the GIL (so the event loop too) for milliseconds; a file on tmpfs moves a megabyte
in a fraction of a millisecond. ``run_spilled`` is what a pool worker runs: it reads the
task's arrays from the spilled body, computes, and spills a large answer back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import orjson

from app.compute.problem import elapsed_ms
from app.compute.run import run_encoded
from app.compute.task import Task
from app.scheduling.worker import check_answer_fits

SPILL_MIN_BYTES = 256 * 1024


def spill(data: bytes, directory: str | None) -> str | None:
    """Write ``data`` to a new file in ``directory``; None when small or impossible (in-band)."""
    if directory is None or len(data) < SPILL_MIN_BYTES:
        return None
    path = None
    try:
        fd, path = tempfile.mkstemp(dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError:  # a full or missing tmpfs: fall back to the pipe
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return None
    return path


def unspill(path: str) -> bytes:
    """Read and delete a file written by ``spill``."""
    try:
        with open(path, "rb") as f:
            return f.read()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def run_spilled(
    task: Task, body_file: str | None, spill_dir: str | None
) -> tuple[bytes | str, dict[str, float], float]:
    """Run ``task`` in a worker: (answer or its spill file's path, timing_ms, start time).

    With ``body_file`` the task's array fields come from the spilled request body; with
    ``spill_dir`` a large answer is spilled too and its file's path answered instead.
    """
    start = time.perf_counter()
    load_ms = None
    if body_file is not None:
        task = _with_spilled_arrays(task, body_file)
        load_ms = elapsed_ms(start)
    body, timing, _ = run_encoded(task, before_render=check_answer_fits)
    if load_ms is not None:
        timing["load"] = load_ms
    spilled = spill(body, spill_dir)
    return (body if spilled is None else spilled), timing, start


def _with_spilled_arrays(task: Task, body_file: str) -> Task:
    # The service validated this same body before spilling it: only the arrays are taken.
    parsed = orjson.loads(unspill(body_file))
    return task.with_fields(**{f: parsed.get(f) for f in task.array_fields})
