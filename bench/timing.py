"""timeit-style timing: warm-up, an inner loop long enough for µs-scale work, median of repeats.

Each loop is timed on two clocks at once: wall time, and the CPU time of the whole process
(every thread, so JAX's and BLAS's worker threads count). On a shared machine CPU time does
not grow when other work takes the cores; ``clock`` picks which one ``median_s`` reports.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How hard to time one callable."""

    min_loop_s: float  # one repeat (inner loop) lasts at least this long
    repeats: int
    warmup: int
    max_total_s: float  # stop repeating past this (very slow calls keep a few repeats)


FULL = Budget(min_loop_s=0.02, repeats=5, warmup=2, max_total_s=3.0)
QUICK = Budget(min_loop_s=0.004, repeats=3, warmup=1, max_total_s=1.0)
CLOCKS = ("cpu", "wall")


@dataclass(frozen=True)
class Timing:
    """Median seconds per call on the chosen clock, the spread, and the other clock's median."""

    median_s: float
    min_s: float
    max_s: float
    wall_median_s: float
    cpu_median_s: float
    number: int
    repeats: int
    clock: str
    wall_samples: tuple[float, ...]
    cpu_samples: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dict(self.__dict__)


def summarise(walls: list[float], cpus: list[float], clock: str, number: int) -> Timing:
    """Median, min and max of per-call samples on ``clock`` (the other clock's median too)."""
    chosen = cpus if clock == "cpu" else walls
    return Timing(
        median_s=statistics.median(chosen),
        min_s=min(chosen),
        max_s=max(chosen),
        wall_median_s=statistics.median(walls),
        cpu_median_s=statistics.median(cpus),
        number=number,
        repeats=len(walls),
        clock=clock,
        wall_samples=tuple(walls),
        cpu_samples=tuple(cpus),
    )


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Timings of one callable from several rounds (``as_dict`` form) pooled into one."""
    walls = [s for p in parts for s in p["wall_samples"]]
    cpus = [s for p in parts for s in p["cpu_samples"]]
    return summarise(walls, cpus, parts[0]["clock"], max(p["number"] for p in parts)).as_dict()


def _loop(fn: Callable[[], Any], number: int) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(number):
        fn()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def _calibrate(fn: Callable[[], Any], min_loop_s: float) -> int:
    """Smallest inner-loop count (growing geometrically) whose loop lasts ``min_loop_s``."""
    number = 1
    while True:
        elapsed = max(_loop(fn, number))
        if elapsed >= min_loop_s or number >= 1_000_000:
            return number
        # Aim a little past the target; grow at most 10x per step so one slow call cannot overshoot.
        scale = min_loop_s / max(elapsed, 1e-9) * 1.2
        number = max(number + 1, int(number * min(scale, 10.0)))


def measure(
    fn: Callable[[], Any], budget: Budget, clock: str = "cpu", gc_on: bool = True
) -> Timing:
    """Median seconds per call of ``fn``; ``gc_on=False`` pauses the collector as timeit does."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, not {clock!r}")
    was_on = gc.isenabled()
    if not gc_on:
        gc.disable()
    try:
        return _measure(fn, budget, clock)
    finally:
        if was_on:
            gc.enable()


def _measure(fn: Callable[[], Any], budget: Budget, clock: str) -> Timing:
    for _ in range(budget.warmup):
        fn()
    number = _calibrate(fn, budget.min_loop_s)
    walls: list[float] = []
    cpus: list[float] = []
    spent = 0.0
    while len(walls) < budget.repeats:
        wall, cpu = _loop(fn, number)
        walls.append(wall / number)
        cpus.append(cpu / number)
        spent += wall
        if spent > budget.max_total_s and len(walls) >= 3:
            break
    return summarise(walls, cpus, clock, number)
