"""Service settings, read from ``AUTODIFF_*`` environment variables (pydantic-settings).

Defaults keep one 2-core machine safe from any single request: every limit
bounds memory or time taken on behalf of one caller.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def _int_env(name: str) -> int:
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return 0


def usable_cores(cpu_max: str | None = None) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota.

    A container's ``--cpus`` limit is a quota, which the affinity does not show.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        with open(cpu_max or CGROUP_CPU_MAX, encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota here
    return cores


def default_pool_workers() -> int:
    """The usable cores shared among the server processes (at least 1 pool worker each).

    Each uvicorn process (``UVICORN_WORKERS``, or ``WEB_CONCURRENCY``, which uvicorn
    also reads) starts a pool of its own: two processes with two pool workers each
    would put four computations on two cores.
    """
    return max(1, usable_cores() // server_processes())


def server_processes() -> int:
    """The uvicorn processes serving the app: ``UVICORN_WORKERS``, else ``WEB_CONCURRENCY``
    (uvicorn reads both), else 1. A ``--workers`` flag on uvicorn's command line is not seen:
    ``make serve``, the image and ``autodiff serve`` pass the variable."""
    return max(1, _int_env("UVICORN_WORKERS") or _int_env("WEB_CONCURRENCY") or 1)


class Settings(BaseSettings):
    """Every knob of the service; each one is an ``AUTODIFF_<NAME>`` variable."""

    model_config = SettingsConfigDict(env_prefix="AUTODIFF_", extra="ignore")

    workers: int = Field(
        default_factory=default_pool_workers,
        ge=1,
        description="Worker processes in the compute pool of each server process (default: the "
        "cores divided by the uvicorn processes, UVICORN_WORKERS).",
    )
    time_limit_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds one computation may run before its worker is killed (504).",
    )
    queue_size: int = Field(
        default=64, ge=0, description="Tasks that may wait for a worker; past it requests get 503."
    )
    queue_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="Seconds a task may wait in the queue for a worker; past it the request "
        "gets 503 with Retry-After instead of waiting on (the time limit bounds only the run).",
    )
    max_body_bytes: int = Field(
        default=32 * MiB, ge=1, description="Largest request body (413 past it)."
    )
    max_parsed_body_mb: int = Field(
        default=256,
        ge=1,
        description="Largest estimated size (MiB) of a JSON body once parsed into Python "
        "objects, counted from the raw bytes before parsing (413 past it): about 32 bytes a "
        "number and 80 an array or object. Large arrays are cheaper as b64.",
    )
    max_bodies_in_flight_mb: int = Field(
        default=768,
        ge=1,
        description="Request bytes (raw bodies and their parsed estimates) one server process "
        "holds at once, over all requests; past it a request gets 503 with Retry-After.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a connection may take to send a complete request head, after "
        "connecting or after its previous answer (then it is closed).",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request body may take to arrive in full (408 past it).",
    )
    send_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a client may leave a piece (256 KiB) of its answer unread before "
        "the connection is dropped and the answer freed.",
    )
    max_input_elements: int = Field(
        default=4_000_000, ge=1, description="Largest number of elements in one input array (413)."
    )
    max_inputs: int = Field(
        default=1000,
        ge=1,
        description="Most named inputs (and wrt, tangent or vector names) in one request (413).",
    )
    max_intermediate_elements: int = Field(
        default=50_000_000,
        ge=1,
        description="Largest array any op, Jacobian or Hessian may create (checked before "
        "allocation).",
    )
    max_iterations: int = Field(
        default=30_000,
        ge=1,
        description=(
            "Loop iterations one program may run in total (422 past it). Traced iterations cost "
            "about 25-35 us here, so the default stops `while True` in about a second."
        ),
    )
    max_output_elements: int = Field(
        default=8_000_000,
        ge=1,
        description="Most numbers one answer may hold, all its arrays together (413 past it, "
        "before computing where the shapes tell: a Jacobian holds output size x input size). "
        "As JSON a number takes up to about 25 bytes: the default bounds an answer near 200 MB.",
    )
    max_graph_nodes_returned: int = Field(
        default=1000,
        ge=0,
        description="Graph nodes listed in an answer; past it the list is truncated.",
    )
    max_source_chars: int = Field(
        default=100_000, ge=1, description="Longest expression source text accepted (413 past it)."
    )
    worker_memory_mb: int = Field(
        default=2048, ge=0, description="Address-space cap per worker process in MiB (0 = no cap)."
    )
    worker_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness added to pool workers: the server process (HTTP, /healthz, "
        "small in-process requests) gets the CPU first when computations fill the cores.",
    )
    worker_malloc_keep_mb: int = Field(
        default=512,
        ge=0,
        description="Freed memory (MiB) glibc keeps in each pool worker for reuse, instead of "
        "returning it and page-faulting new arrays in (0 = glibc's defaults). Counts against "
        "worker_memory_mb, so at most a quarter of it is kept.",
    )
    blas_threads: int = Field(
        default=1,
        ge=1,
        description="BLAS/OpenMP threads per process (pool workers and the server's small "
        "in-process work); each process is already one unit of parallelism.",
    )
    inline_max_elements: int = Field(
        default=4096,
        ge=0,
        description=(
            "Fast path: a loop-free program whose inputs and intermediates stay under this many "
            "elements runs in the server process, skipping the pool hop (0 = never)."
        ),
    )
    thread_max_elements: int = Field(
        default=131_072,
        ge=0,
        description=(
            "Medium path: a loop-free program of linear-cost ops (no contraction or "
            "decomposition) whose arrays stay under this many elements (fewer with more ops: "
            "ops x elements <= 2^21) runs in a server thread, skipping the pool hop (0 = never)."
        ),
    )
    inline_max_ops: int = Field(
        default=64, ge=0, description="Fast path: most ops a program may have to run in-process."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys, comma-separated; empty means the service is open.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS, comma-separated."
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning or error.")
    store_url: str = Field(
        default="",
        pattern=r"^(redis://.*|rediss://.*|unix://.*)?$",
        description="The shared store of stored functions: a redis:// URL (several machines), "
        "or empty for the embedded store (SQLite under store_dir, one machine).",
    )
    store_dir: str = Field(
        default="",
        description="Directory of the embedded store, shared by every server process on the "
        "machine (default: autodiff-store-<uid> in the temporary directory).",
    )
    store_max_mb: int = Field(
        default=256,
        ge=1,
        description="Size limit of the store, all entries together; the least recently used "
        "are evicted past it, and one entry over it is refused (413).",
    )
    store_ttl_s: float = Field(
        default=86_400.0,
        gt=0,
        description="Seconds a stored function is kept after its last use (then 404).",
    )
    store_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Seconds any call to the store may take; past it the request gets 503.",
    )

    # --- jobs (POST /jobs): long work on workers of their own -------------------------------
    job_workers: int = Field(
        default=1,
        ge=1,
        description="Job worker processes of each server process (separate from the pool of "
        "the synchronous endpoints, and niced below it); each runs one job at a time.",
    )
    job_time_limit_s: float = Field(
        default=600.0,
        gt=0,
        description="Seconds one job may run before its worker is killed (the job fails with "
        "a 504 problem).",
    )
    job_memory_mb: int = Field(
        default=2048,
        ge=0,
        description="Address-space cap per job worker in MiB (0 = no cap); a job past it fails "
        "with a 413 problem and its worker is replaced.",
    )
    job_ttl_s: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a finished job (its status and result) is kept after it ends; "
        "then GET /jobs/{id} answers 404.",
    )
    job_max_result_mb: int = Field(
        default=128,
        ge=1,
        description="Largest answer a job may keep in the store, in MiB (keep it well under "
        "store_max_mb): it bounds a job's answer instead of max_output_elements; refused at "
        "submit (413) when the shapes tell, else the job fails with a 413 problem.",
    )
    job_queue_size: int = Field(
        default=32,
        ge=1,
        description="Jobs that may wait for a worker over the whole deployment; past it POST "
        "/jobs answers 503 with Retry-After.",
    )
    job_queue_per_key: int = Field(
        default=8,
        ge=1,
        description="Jobs one API key (or, without keys, everyone) may have waiting at once; "
        "past it POST /jobs answers 503 with Retry-After.",
    )
    job_events_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds one GET /jobs/{id}/events stream may stay open (then it ends with "
        "a 'timeout' event: reconnect to go on).",
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        # The environment gives one string; code and tests may give a list.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def inline_max_body_bytes(self) -> int:
        """Bodies up to this size are parsed and decoded on the event loop for the fast path."""
        return 16 * self.inline_max_elements + 4096

    @property
    def thread_max_body_bytes(self) -> int:
        """Bodies up to this size may take the medium path: three b64 float64 arrays of
        ``thread_max_elements`` and the fast path's room for everything else."""
        b64_chars = 4 * -(-8 * self.thread_max_elements // 3)
        return 3 * b64_chars + self.inline_max_body_bytes


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment, read once (tests override the dependency)."""
    return Settings()


async def app_settings(request: Request) -> Settings:
    """The settings the running app was built with (``create_app(settings)`` or the env)."""
    settings: Settings = request.app.state.settings
    return settings


# async: FastAPI would run a plain def dependency in its thread pool (a costly hop).
SettingsDep = Annotated[Settings, Depends(app_settings)]
