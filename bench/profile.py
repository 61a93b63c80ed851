"""Profile our engine on chosen workloads: pyinstrument's call tree and cProfile's top functions.

    .venv/bin/python -m bench.profile W5 W4 [--seconds 3]
    .venv/bin/python -m bench.profile W1 --http     # the service's request path, in process
    .venv/bin/python -m bench.profile W7 --compute  # what a pool worker runs for the request

Writes bench/out/profile-<case>.txt and prints the start of each. ``--http`` sends the case's
JSON request through the ASGI app (lifespan and pool started, uvicorn left out) and profiles
the whole request path: middleware, validation, compile, engine, encoding.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fw_ours
from bench.workloads import select

OUT_DIR = Path(__file__).resolve().parent / "out"


def _repeat(fn: Callable[[], Any], seconds: float) -> int:
    calls = 0
    deadline = time.perf_counter() + seconds
    while calls < 3 or time.perf_counter() < deadline:
        fn()
        calls += 1
    return calls


def profile_entry(name: str, fn: Callable[[], Any], seconds: float) -> str:
    """pyinstrument's tree and cProfile's top 25 (by own time) of ``fn`` called for ``seconds``."""
    from pyinstrument import Profiler

    fn()  # warm caches outside the profile
    prof = Profiler(interval=0.0002)
    prof.start()
    calls = _repeat(fn, seconds)
    prof.stop()
    tree = prof.output_text(unicode=True, color=False, show_all=False)
    cp = cProfile.Profile()
    cp.enable()
    cp_calls = _repeat(fn, seconds)
    cp.disable()
    buf = io.StringIO()
    pstats.Stats(cp, stream=buf).sort_stats("tottime").print_stats(25)
    return (
        f"== {name}: pyinstrument, {calls} calls ==\n{tree}\n"
        f"== {name}: cProfile, {cp_calls} calls, sorted by own time ==\n{buf.getvalue()}"
    )


async def _asgi_requests(path: str, body: bytes, seconds: float) -> tuple[str, int]:
    import asyncio

    import httpx
    from pyinstrument import Profiler

    from app.main import app

    headers = {"Content-Type": "application/json"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(300):  # the pool warms up in the background
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            for _ in range(20):
                (await client.post(path, content=body, headers=headers)).raise_for_status()

            async def loop() -> int:
                calls = 0
                deadline = time.perf_counter() + seconds
                while calls < 3 or time.perf_counter() < deadline:
                    await client.post(path, content=body, headers=headers)
                    calls += 1
                return calls

            prof = Profiler(interval=0.0002, async_mode="disabled")
            prof.start()
            calls = await loop()
            prof.stop()
            cp = cProfile.Profile()
            cp.enable()
            cp_calls = await loop()
            cp.disable()
    buf = io.StringIO()
    pstats.Stats(cp, stream=buf).sort_stats("tottime").print_stats(30)
    tree = prof.output_text(unicode=True, color=False, show_all=False)
    head = f"== cProfile, {cp_calls} requests, sorted by own time =="
    return f"{tree}\n{head}\n{buf.getvalue()}", calls


def profile_http(case_key: str, seconds: float) -> str:
    """pyinstrument's tree of the service answering the case's JSON request (logs silenced)."""
    import asyncio
    import os

    from bench import bodies

    (case,) = [c for c in select(case_key) if c.key == case_key] or select(case_key)[:1]
    path, body = bodies.request(case, "json")
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):  # the service logs a JSON line per request
        os.dup2(devnull, fd)
    try:
        tree, calls = asyncio.run(_asgi_requests(path, bodies.encode(body), seconds))
    finally:
        for fd, keep in zip((1, 2), saved, strict=True):
            os.dup2(keep, fd)
            os.close(keep)
        os.close(devnull)
    return f"== {case.key} over the ASGI app: pyinstrument, {calls} requests ==\n{tree}"


REQUEST_MODELS = {
    "/grad": "GradRequest",
    "/vjp": "VjpRequest",
    "/jacobian": "JacobianRequest",
    "/hessian": "HessianRequest",
}


def compute_task(case_key: str) -> tuple[Any, Any]:
    """The service's task for the case's b64 request, and the function a pool worker runs."""
    from app.api import schemas
    from app.api.tasks import build_task
    from app.compute.run import run_encoded
    from app.settings import get_settings
    from bench import bodies

    (case,) = select(case_key)[:1]
    path, body = bodies.request(case, "b64")
    model = getattr(schemas, REQUEST_MODELS[path]).model_validate(body)
    return build_task(path.strip("/"), model, get_settings()), run_encoded


def main(argv: list[str] | None = None) -> None:
    """Profile each named case's gradient through our engine."""
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("cases", nargs="+", help="workloads or cases, e.g. W5 'W6 n=256'")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (as bench.run)")
    p.add_argument("--http", action="store_true", help="profile the service's request path")
    p.add_argument(
        "--compute",
        action="store_true",
        help="profile app.compute.run.run_encoded on the case's task (a pool worker's work)",
    )
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    OUT_DIR.mkdir(exist_ok=True)
    if args.http:
        for case in select(",".join(args.cases)):
            text = profile_http(case.key, args.seconds)
            slug = case.key.replace(" ", "_")
            (OUT_DIR / f"profile-http-{slug}.txt").write_text(text)
            print(text[:6000])
        return
    if args.compute:
        for case in select(",".join(args.cases)):
            task, run = compute_task(case.key)
            text = profile_entry(
                f"{case.key} compute.run_encoded", functools.partial(run, task), args.seconds
            )
            (OUT_DIR / f"profile-compute-{case.key.replace(' ', '_')}.txt").write_text(text)
            print(text[:6000])
        return
    for case in select(",".join(args.cases)):
        for entry in fw_ours.entries(case):
            if entry.gradient is None or entry.name == "ours (auto)":
                continue
            text = profile_entry(f"{case.key} {entry.name}", entry.gradient, args.seconds)
            slug = f"{case.key}-{entry.name}".replace(" ", "_").replace("(", "").replace(")", "")
            (OUT_DIR / f"profile-{slug}.txt").write_text(text)
            print(text[:4000])


if __name__ == "__main__":
    main()
