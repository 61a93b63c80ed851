"""Closed-loop HTTP load on a loopback URL: wrk (Debian) with a Lua script, else asyncio httpx.

Both are bounded: a fixed number of connections for a fixed time, then they stop by
themselves. Each request kind carries a tag in ``X-Request-ID`` (the service echoes it), so
statuses are counted per kind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np


@dataclass(frozen=True)
class Spec:
    """One kind of request."""

    tag: str  # [A-Za-z0-9._-]: sent as X-Request-ID, echoed back by the service
    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    weight: int = 1


@dataclass
class LoadResult:
    """What one load run measured (latencies in ms, over all kinds)."""

    tool: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)  # tag -> status -> count

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


TOOLS = ("auto", "wrk", "httpx")
tool = "auto"  # set from the command line (--loadgen)


def have_wrk() -> bool:
    """Whether runs use wrk: Debian's wrk is on PATH and httpx was not asked for."""
    if tool == "httpx":
        return False
    found = shutil.which("wrk") is not None
    if tool == "wrk" and not found:
        raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install -y wrk)")
    return found


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for our paths


LUA_TEMPLATE = """
local specs = {SPECS}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  counts = {}
  reqs = {}
  i = 0
  for k, s in ipairs(specs) do
    local body = nil
    if s.file ~= "" then
      local f = io.open(s.file, "rb"); body = f:read("*a"); f:close()
    end
    local headers = {["X-Request-ID"] = s.tag}
    if body ~= nil then headers["Content-Type"] = s.ctype end
    reqs[k] = wrk.format(s.method, s.path, headers, body)
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function response(status, headers, body)
  local tag = headers["x-request-id"] or headers["X-Request-ID"] or "untagged"
  local key = tag .. " " .. status
  counts[key] = (counts[key] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s": %d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"counts": {%s}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout,
    table.concat(parts, ", ")))
end
"""


def _expand(specs: Sequence[Spec], seed: int = 7) -> list[Spec]:
    """Each spec repeated by its weight, in a fixed shuffled order (kinds interleave)."""
    order = [s for s in specs for _ in range(s.weight)]
    random.Random(seed).shuffle(order)
    return order


def _wrk(
    url: str, specs: Sequence[Spec], connections: int, duration_s: float, timeout_s: float
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        lua_specs = []
        for k, s in enumerate(specs):
            path = ""
            if s.body is not None:
                path = str(Path(tmp) / f"body{k}")
                Path(path).write_bytes(s.body)
            lua_specs.append(
                f"{{tag={_lua_string(s.tag)}, method={_lua_string(s.method)}, "
                f"path={_lua_string(s.path)}, file={_lua_string(path)}, "
                f"ctype={_lua_string(s.content_type)}}}"
            )
        script = Path(tmp) / "load.lua"
        script.write_text(LUA_TEMPLATE.replace("{SPECS}", "{" + ",\n".join(lua_specs) + "}"))
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "-s",
            str(script),
            url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 60, check=False
        )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk printed no result (exit {proc.returncode}): "
            f"{proc.stdout[-500:]} {proc.stderr[-500:]}"
        )
    doc = json.loads(line[len("WRKJSON ") :])
    statuses: dict[str, dict[str, int]] = {}
    for key, count in doc["counts"].items():
        tag, status = key.rsplit(" ", 1)
        statuses.setdefault(tag, {})[status] = count
    seconds = doc["duration_us"] / 1e6
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=round(seconds, 2),
        requests=doc["requests"],
        rps=doc["requests"] / seconds,
        p50_ms=doc["p50_us"] / 1e3,
        p90_ms=doc["p90_us"] / 1e3,
        p99_ms=doc["p99_us"] / 1e3,
        max_ms=doc["max_us"] / 1e3,
        socket_errors={k: v for k, v in doc["errors"].items() if v},
        statuses=statuses,
    )


async def _httpx_load(
    url: str,
    specs: Sequence[Spec],
    connections: int,
    duration_s: float,
    timeout_s: float,
    max_requests: int,
) -> LoadResult:
    latencies: list[float] = []
    statuses: dict[str, dict[str, int]] = {}
    errors: dict[str, int] = {}
    cycle = itertools.cycle(specs)
    deadline = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline and len(latencies) < max_requests:
            spec = next(cycle)
            headers = {"X-Request-ID": spec.tag, "Content-Type": spec.content_type}
            start = time.perf_counter()
            try:
                r = await client.request(
                    spec.method, url + spec.path, content=spec.body, headers=headers
                )
                status = str(r.status_code)
            except httpx.TimeoutException:
                errors["timeout"] = errors.get("timeout", 0) + 1
                continue
            except httpx.HTTPError:
                errors["connect"] = errors.get("connect", 0) + 1
                continue
            latencies.append(time.perf_counter() - start)
            counts = statuses.setdefault(spec.tag, {})
            counts[status] = counts.get(status, 0) + 1

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    seconds = time.perf_counter() - started
    ms = np.array(latencies) * 1e3 if latencies else np.zeros(1)
    return LoadResult(
        tool="httpx (asyncio, shares the cores with the server)",
        connections=connections,
        duration_s=round(seconds, 2),
        requests=len(latencies),
        rps=len(latencies) / seconds,
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        max_ms=float(ms.max()),
        socket_errors=errors,
        statuses=statuses,
    )


def run_load(
    url: str,
    specs: Sequence[Spec],
    connections: int,
    duration_s: float,
    timeout_s: float = 30.0,
    max_requests: int = 2_000_000,
) -> LoadResult:
    """``connections`` clients sending ``specs`` round-robin (by weight) for ``duration_s``."""
    order = _expand(specs)
    if have_wrk():
        return _wrk(url, order, connections, duration_s, timeout_s)
    return asyncio.run(_httpx_load(url, order, connections, duration_s, timeout_s, max_requests))
