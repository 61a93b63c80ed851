"""A description of the machine and the software a run used (for RESULTS.md)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MALLOC_NAMES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def service_malloc_env() -> dict[str, str]:
    """glibc's thresholds as the service's pool workers run with their default settings.

    glibc returns freed memory to the kernel past a 128 KiB-32 MiB threshold, so every
    new 8 MB array of a 10^6-element workload page-faults afresh (about 2.5 ms each
    here); ``--malloc service`` times every framework with the workers' setting instead.
    """
    from app.scheduling.worker import malloc_env
    from app.settings import Settings

    return malloc_env(Settings.model_fields["worker_malloc_keep_mb"].default)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = (
        "user_api",
        "internal_api",
        "prefix",
        "version",
        "architecture",
        "num_threads",
        "threading_layer",
    )
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


def describe() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, and the BLAS-related environment of this process."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "blas_env": {k: os.environ.get(k) for k in BLAS_ENV},
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_NAMES},
    }


THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def bench_env(threads: int = 0, malloc: str = "default") -> dict[str, str]:
    """This environment without the OpenBLAS overrides (they slow a current NumPy; see README).

    ``threads`` > 0 also caps every library's thread pool (BLAS, OpenMP, XLA) at that many;
    ``malloc="service"`` sets glibc's thresholds as the service's workers run.
    """
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV and k not in MALLOC_NAMES}
    if malloc == "service":
        env.update(service_malloc_env())
    if threads > 0:
        env.update({k: str(threads) for k in THREAD_ENV})
        xla = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {xla}".strip()
    return env


def git_commit() -> str:
    """The working tree's commit (short), with '+changes' when files differ from it."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=repo, check=False)
        return proc.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "no commit"
    # Read-only queries (``git status`` may rewrite the index): edits, then untracked files.
    dirty = git("diff", "--stat", "HEAD", "--", "engine", "app") or git(
        "ls-files", "--others", "--exclude-standard", "--", "engine", "app"
    )
    return f"{head}+changes" if dirty else head


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (other work on the machine)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)
