"""Outside testing of a running service: hostile probes by class and a derivative fuzz.

``python -m bench.probe --seconds N`` starts the real app under uvicorn (two server
processes, as ``make serve`` runs it, with modest limits) on a loopback port and fires:

- **hostile** requests by class (``nest``: superlinear parse/IR work; ``memory``: bombs;
  ``malformed``: bodies no client should send; ``slow``: slowloris headers and bodies,
  idle connections, clients that never read their answer). Each probe records its status,
  content type, time, the peak RSS of the server processes and of the pool workers (from
  /proc), whether ``/healthz`` answered within 1 s all through it, and whether the next
  request on the same keep-alive connection was answered.
- a **scale** sweep: each nesting construct at doubling depths; the time must at most
  about double with the depth.
- a **fuzz** of random valid requests over /grad /vjp /jvp /jacobian /hessian /hvp (random
  programs of the ops GET /ops lists, random shapes, dtypes and options) for the rest of
  ``--seconds``: no 5xx, no hang, strict JSON, right shapes, and every derivative equal to
  central finite differences of the function computed in process, in float64.

Failures are printed one per line and written with every probe's figures to
``bench/out/probe.json``; the exit code is 1 when anything failed.
"""

# The corpus below writes raw request bodies as one literal each, so that a finding's
# request reads as it was sent: those lines are long.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
HOST = "127.0.0.1"
PROBLEM = "application/problem+json"
MIB = 1024 * 1024
# What a body must never show: a traceback, a source path, an interpreter internal.
LEAKS = re.compile(rb"Traceback|File \"|/work/|site-packages|\.py\"|\.py:\d|object at 0x")
# The service under test: two server processes as `make serve` runs them, modest limits.
SERVER_ENV = {
    "UVICORN_WORKERS": "2",
    "AUTODIFF_TIME_LIMIT_S": "5",
    "AUTODIFF_WORKER_MEMORY_MB": "1024",
    "AUTODIFF_LOG_LEVEL": "warning",
}
# Peak server-process RSS growth one probe may cause (the body limit is 32 MiB).
SERVER_RSS_BUDGET_MB = 400.0
HEALTH_BOUND_S = 1.0
# An answer larger than this is unbounded (A3): the service should refuse it (413).
ANSWER_BUDGET_BYTES = 64 * MIB


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    """uvicorn serving app.main:app from the repository root, as `make serve` runs it."""
    env = {**os.environ, **SERVER_ENV}
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", HOST, "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-access-log"]
    # A session of its own: stopping it ends its server processes and pool workers too,
    # even one stuck in work that ignores SIGTERM.
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            status, _, _ = request_once(port, "GET", "/readyz", b"", timeout=1.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of its session is left


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss(root: int) -> tuple[float, float, int]:
    """(largest server-process RSS, largest pool-worker RSS, worker count), in MiB.

    With several uvicorn workers the root is a supervisor; its children are the server
    processes and everything below them (forkserver, pool workers) counts as workers.
    """
    kids = _children()
    servers = kids.get(root, []) or [root]
    workers: list[int] = []
    stack = [k for s in servers for k in kids.get(s, [])]
    while stack:
        pid = stack.pop()
        workers.append(pid)
        stack.extend(kids.get(pid, []))
    server_mb = max((_rss_mb(p) for p in servers), default=0.0)
    worker_mb = max((_rss_mb(p) for p in workers), default=0.0)
    return server_mb, worker_mb, len(workers)


class Monitor(threading.Thread):
    """Polls /healthz (fresh connection, 1 s bound) and samples RSS all through the run."""

    def __init__(self, port: int, root: int) -> None:
        super().__init__(daemon=True)
        self.port, self.root = port, root
        self.samples: list[tuple[float, float, bool, float, float]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                status, _, _ = request_once(self.port, "GET", "/healthz", b"", HEALTH_BOUND_S)
                ok = status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            latency = time.monotonic() - t0
            server_mb, worker_mb, _ = rss(self.root)
            self.samples.append((t0, latency, ok, server_mb, worker_mb))
            self.halt.wait(max(0.0, 0.1 - latency))

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """Worst health latency and peak RSS between two instants."""
        inside = [s for s in self.samples if t0 - 0.05 <= s[0] <= t1 + 0.05] or self.samples[-1:]
        return {
            "health_max_s": max((s[1] for s in inside), default=0.0),
            "health_failures": sum(1 for s in inside if not s[2]),
            "server_mb": max((s[3] for s in inside), default=0.0),
            "worker_mb": max((s[4] for s in inside), default=0.0),
        }


# --------------------------------------------------------------------------- HTTP


def request_once(
    port: int,
    method: str,
    path: str,
    body: bytes,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        return send(conn, method, path, body, headers or {})
    finally:
        conn.close()


def send(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    hdrs = {"Content-Type": "application/json", **headers}
    conn.request(method, path, body=body if method != "GET" else None, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, resp.getheader("Content-Type", ""), data


SMALL = json.dumps({"expression": "sum(x * x)", "inputs": {"x": [1.0, 2.0]}}).encode()


@dataclass
class Probe:
    """One hostile request: its class, a name, and what must not happen."""

    cls: str
    name: str
    body: bytes | Callable[[], bytes]
    path: str = "/grad"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = ()  # empty: any 2xx/4xx/503/504 answer is acceptable
    timeout: float = 30.0
    item: str = ""  # the issue item it belongs to


@dataclass
class Result:
    cls: str
    name: str
    item: str
    status: int
    content_type: str
    seconds: float
    body_bytes: int
    detail: str
    health_max_s: float
    health_failures: int
    server_mb: float
    worker_mb: float
    next_ok: bool
    failures: list[str]
    compute_s: float = 0.0


def doc(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def expr(text: str, inputs: Any = None, **extra: Any) -> bytes:
    return doc(
        {
            "expression": text,
            "inputs": {"x": [1.0, 2.0, 3.0]} if inputs is None else inputs,
            **extra,
        }
    )


def strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"bare {name} in JSON")

    return json.loads(data, parse_constant=refuse)


def judge(probe: Probe, status: int, ctype: str, data: bytes, seconds: float) -> list[str]:
    """What went wrong with one answer (empty: nothing)."""
    bad: list[str] = []
    if status in (0, 500, 502) or status >= 505:
        bad.append(f"status {status}")
    if probe.expect and status not in probe.expect:
        bad.append(f"status {status}, expected {probe.expect}")
    if status >= 400 and not ctype.startswith(PROBLEM):
        bad.append(f"error content type {ctype!r}")
    if LEAKS.search(data[:200_000]):
        bad.append("body shows an internal (traceback, path or repr)")
    if status == 200 and ctype.startswith("application/json") and len(data) < 50 * MIB:
        try:
            strict_json(data)
        except ValueError as exc:
            bad.append(f"answer is not strict JSON: {exc}")
    if len(data) > ANSWER_BUDGET_BYTES:
        bad.append(f"answer of {len(data) / MIB:.0f} MiB")
    if seconds > probe.timeout - 0.5:
        bad.append(f"no answer in {probe.timeout} s")
    return bad


def fire(port: int, monitor: Monitor, probe: Probe, baseline_mb: float) -> Result:
    body = probe.body() if callable(probe.body) else probe.body
    conn = http.client.HTTPConnection(HOST, port, timeout=probe.timeout)
    t0 = time.monotonic()
    status, ctype, data = 0, "", b""
    try:
        status, ctype, data = send(conn, probe.method, probe.path, body, probe.headers)
    except (OSError, http.client.HTTPException) as exc:
        data = f"{type(exc).__name__}: {exc}".encode()
    seconds = time.monotonic() - t0
    # The next request on the same connection (http.client reopens it only when the
    # answer said Connection: close, which is allowed).
    next_ok = True
    if status:
        try:
            conn.timeout = 15.0
            if conn.sock is not None:
                conn.sock.settimeout(15.0)
            nstatus, _, _ = send(conn, "POST", "/grad", SMALL, {})
            next_ok = nstatus == 200
        except (OSError, http.client.HTTPException):
            next_ok = False
    conn.close()
    time.sleep(0.15)  # let the monitor see the aftermath
    w = monitor.window(t0, time.monotonic())
    bad = judge(probe, status, ctype, data, seconds)
    if not next_ok:
        bad.append("the next request on the same connection failed")
    if w["health_max_s"] > HEALTH_BOUND_S or w["health_failures"]:
        bad.append(f"/healthz blocked ({w['health_max_s']:.2f} s, {w['health_failures']} failed)")
    if w["server_mb"] - baseline_mb > SERVER_RSS_BUDGET_MB:
        bad.append(f"server RSS {w['server_mb']:.0f} MiB (baseline {baseline_mb:.0f})")
    result = Result(
        probe.cls,
        probe.name,
        probe.item,
        status,
        ctype,
        round(seconds, 3),
        len(body),
        data[:300].decode("utf-8", "replace"),
        round(w["health_max_s"], 3),
        int(w["health_failures"]),
        round(w["server_mb"]),
        round(w["worker_mb"]),
        next_ok,
        bad,
    )
    if status == 200 and len(data) < 50 * MIB:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            result.compute_s = float(json.loads(data)["timing_ms"]["total"]) / 1000
    return result


# --------------------------------------------------------------------------- nesting


def nest_constructs() -> dict[str, Callable[[int], str]]:
    """Each construct of the language nested ``d`` deep (text about linear in d)."""

    def chained(d: int) -> str:
        e = "x"
        for _ in range(d):
            e = f"(x < {e} < x)"
        return f"sum(x) + sum({e})"

    def ifs(d: int) -> str:
        lines = [f"{'    ' * i}if sum(x) > {-i - 1}:" for i in range(d)]
        return "y = x\n" + "\n".join(lines) + "\n" + "    " * d + "y = y * 2\nreturn sum(y)"

    def whiles(d: int) -> str:
        lines = []
        for i in range(d):
            lines.append(f"{'    ' * i}c{i} = 0")
            lines.append(f"{'    ' * i}while c{i} < 1:")
            lines.append(f"{'    ' * (i + 1)}c{i} = c{i} + 1")
        return "y = x\n" + "\n".join(lines) + "\n" + "    " * d + "y = y * 2\nreturn sum(y)"

    def fors(d: int) -> str:
        lines = [f"{'    ' * i}for i{i} in range(2):" for i in range(d)]
        return "y = x\n" + "\n".join(lines) + "\n" + "    " * d + "y = y + 1\nreturn sum(y)"

    def shared(d: int) -> str:
        return "a = x\n" + "a = a + a\n" * d + "return sum(a)"

    def shared_tuple(d: int) -> str:
        return "a = x\nb = x\n" + "a, b = a + b, a * b\n" * d + "return sum(a + b)"

    def where_nest(d: int) -> str:
        e = "x"
        for _ in range(d):
            e = f"where(x > 1, {e}, x)"
        return f"sum({e})"

    def boolop(d: int) -> str:
        e = "x > 0"
        for i in range(d):
            e = f"(x > {i} and ({e} or x < {i}))"
        return f"sum(where({e}, x, 0))"

    def cmp_shared(d: int) -> str:
        return "c = x < x\n" + "c = c < c\n" * d + "return sum(x) + sum(c)"

    return {
        "parens": lambda d: "sum(" + "(" * d + "x" + ")" * d + ")",
        "calls": lambda d: "sum(" + "sin(" * d + "x" + ")" * d + ")",
        "subscripts": lambda d: "sum(x" + "[0:3]" * d + ")",
        "none-subscripts": lambda d: "sum(x" + "[None]" * d + ")",
        "unary": lambda d: "sum(" + "-" * d + "x)",
        "unary-mixed": lambda d: "sum(" + "-+" * d + "x)",
        "not": lambda d: "sum(where(" + "not " * d + "x > 1, x, 0))",
        "chained-cmp": chained,
        "chained-flat": lambda d: "sum(x) + sum(" + " < ".join(["x"] * (d + 1)) + ")",
        "boolop-nest": boolop,
        "boolop-flat": lambda d: "sum(where(" + " and ".join(["x > 0"] * (d + 1)) + ", x, 0))",
        "binop-flat": lambda d: "sum(" + " + ".join(["x"] * (d + 1)) + ")",
        "pow-chain": lambda d: "sum(" + " ** ".join(["x"] * (d + 1)) + ")",
        "list-nest": lambda d: "sum(x) + sum(" + "[" * d + "1" + "]" * d + ")",
        "where-nest": where_nest,
        "if-nest": ifs,
        "while-nest": whiles,
        "for-nest": fors,
        "shared-nodes": shared,
        "shared-tuple": shared_tuple,
        "cmp-shared": cmp_shared,
        "long-flat": lambda d: "a = x\n" + "a = a + 1\n" * d + "return sum(a)",
        "many-outputs": lambda d: "return " + ", ".join(["sum(x)"] * (d + 1)),
        "many-names": lambda d: "".join(f"v{i} = x\n" for i in range(d)) + "return sum(x)",
    }


def graph_chain(n: int) -> dict[str, Any]:
    nodes = [{"id": "n0", "op": "add", "inputs": ["x", "x"]}]
    nodes += [{"id": f"n{i}", "op": "add", "inputs": [f"n{i - 1}", "x"]} for i in range(1, n)]
    nodes.append({"id": "out", "op": "sum", "inputs": [f"n{n - 1}"]})
    return {"nodes": nodes, "outputs": ["out"]}


def graph_shared(n: int) -> dict[str, Any]:
    """n_i = n_{i-1} + n_{i-1}: 2^n paths, n nodes."""
    nodes = [{"id": "n0", "op": "add", "inputs": ["x", "x"]}]
    nodes += [
        {"id": f"n{i}", "op": "add", "inputs": [f"n{i - 1}", f"n{i - 1}"]} for i in range(1, n)
    ]
    nodes.append({"id": "out", "op": "sum", "inputs": [f"n{n - 1}"]})
    return {"nodes": nodes, "outputs": ["out"]}


def graph_shared_cmp(n: int) -> dict[str, Any]:
    nodes = [{"id": "n0", "op": "less", "inputs": ["x", "x"]}]
    nodes += [
        {"id": f"n{i}", "op": "less", "inputs": [f"n{i - 1}", f"n{i - 1}"]} for i in range(1, n)
    ]
    nodes.append({"id": "s", "op": "sum", "inputs": [f"n{n - 1}"]})
    nodes.append({"id": "t", "op": "sum", "inputs": ["x"]})
    nodes.append({"id": "out", "op": "add", "inputs": ["s", "t"]})
    return {"nodes": nodes, "outputs": ["out"]}


def graph_fanin(n: int) -> dict[str, Any]:
    nodes = [{"id": "c", "op": "concatenate", "inputs": [["x"] * n]}]
    nodes.append({"id": "out", "op": "sum", "inputs": ["c"]})
    return {"nodes": nodes, "outputs": ["out"]}


def graph_fanout(n: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": f"s{i}", "op": "sin", "inputs": ["x"]} for i in range(n)]
    nodes.append({"id": "c", "op": "stack", "inputs": [[f"s{i}" for i in range(n)]]})
    nodes.append({"id": "out", "op": "sum", "inputs": ["c"]})
    return {"nodes": nodes, "outputs": ["out"]}


def graph_outputs(n: int) -> dict[str, Any]:
    return {"nodes": [{"id": "s", "op": "sum", "inputs": ["x"]}], "outputs": ["s"] * n}


GRAPHS: dict[str, Callable[[int], dict[str, Any]]] = {
    "graph-chain": graph_chain,
    "graph-shared": graph_shared,
    "graph-shared-cmp": graph_shared_cmp,
    "graph-fanin": graph_fanin,
    "graph-fanout": graph_fanout,
    "graph-outputs": graph_outputs,
}

ENDPOINTS = ("/grad", "/jacobian", "/hessian")


def nest_probes() -> Iterator[Probe]:
    """Every construct at a few fixed depths, on the endpoints with different passes."""
    for name, make in nest_constructs().items():
        for depth in (19, 60, 200, 1000, 5000):
            text = make(depth)
            if len(text) > 200_000:
                continue
            for path in ENDPOINTS:
                yield Probe("nest", f"{name}@{depth}{path}", expr(text), path=path, item="A1")
    for name, make_graph in GRAPHS.items():
        for n in (20, 60, 1000, 9000, 12000):
            for path in ENDPOINTS:
                body = doc({"graph": make_graph(n), "inputs": {"x": [1.0, 2.0, 3.0]}})
                yield Probe("nest", f"{name}@{n}{path}", body, path=path, item="A1/A4")
    # Documents built before they are counted (A4).
    yield Probe(
        "nest",
        "graph-1e6-nodes",
        lambda: doc({"graph": graph_chain(1_000_000), "inputs": {"x": [1.0]}}),
        item="A4",
        timeout=60,
    )
    yield Probe(
        "nest",
        "graph-1e5-outputs",
        lambda: doc({"graph": graph_outputs(100_000), "inputs": {"x": [1.0]}}),
        item="A4",
    )
    yield Probe(
        "nest",
        "empty-lists-28MiB",
        lambda: b'{"expression":"sum(x)","inputs":{"x":[' + b"[]," * (9 * MIB) + b"[]]}}",
        item="A4",
        timeout=60,
    )
    yield Probe(
        "nest",
        "empty-dicts-28MiB",
        lambda: b'{"expression":"sum(x)","inputs":{"x":[1.0]},"z":[' + b"{}," * (9 * MIB) + b"{}]}",
        item="A4",
        timeout=60,
    )
    yield Probe(
        "nest",
        "zeros-28MiB",
        lambda: b'{"expression":"sum(x)","inputs":{"x":[' + b"0," * (14 * MIB) + b"0]}}",
        item="A4",
        timeout=60,
    )
    yield Probe(
        "nest",
        "short-strings-28MiB",
        lambda: b'{"expression":"sum(x)","inputs":{"x":[1.0]},"z":[' + b'"",' * (9 * MIB) + b'""]}',
        item="A4",
        timeout=60,
    )
    yield Probe(
        "nest",
        "deep-json-list",
        b'{"expression":"sum(x)","inputs":{"x":' + b"[" * 100_000 + b"1" + b"]" * 100_000 + b"}}",
        item="A4",
    )
    yield Probe(
        "nest",
        "deep-json-dict",
        b'{"expression":"sum(x)","inputs":{"x":[1.0]},"z":'
        + b'{"a":' * 100_000
        + b"1"
        + b"}" * 100_000
        + b"}",
        item="A4",
    )
    yield Probe(
        "nest",
        "deep-json-graph-attrs",
        b'{"graph":{"nodes":[{"id":"s","op":"sum","inputs":["x"],"attrs":{"axis":'
        + b"[" * 50_000
        + b"0"
        + b"]" * 50_000
        + b'}}],"outputs":["s"]},"inputs":{"x":[1.0]}}',
        item="A4",
    )
    yield Probe(
        "nest",
        "many-inputs",
        lambda: doc(
            {
                "expression": "sum(x)",
                "inputs": {f"v{i}": 1.0 for i in range(200_000)} | {"x": [1.0]},
            }
        ),
        item="A4",
    )
    yield Probe(
        "nest", "long-name", expr("sum(" + "a" * 90_000 + ")", {"a" * 90_000: [1.0]}), item="A1"
    )
    yield Probe(
        "nest",
        "many-wrt",
        doc({"expression": "sum(x)", "inputs": {"x": [1.0]}, "wrt": ["x"] * 200_000}),
        item="A4",
    )
    yield Probe("nest", "long-number", expr("sum(x) + " + "9" * 90_000), item="A1")
    yield Probe("nest", "long-float", expr("sum(x) + 0." + "9" * 90_000), item="A1")
    yield Probe("nest", "int-pow", expr("sum(x) + 9 ** 9 ** 9 ** 9"), item="A1")
    yield Probe("nest", "int-shift", expr("sum(x) + (1 << 100000)"), item="A1")
    yield Probe(
        "nest", "big-int-arith", expr("sum(reshape(x, [3 * 10 ** 18 * 10 ** 18]))"), item="A1"
    )
    yield Probe(
        "nest",
        "range-huge",
        expr("s = 0\nfor i in range(10 ** 18):\n    s = s + 1\nreturn sum(x) + s"),
        item="A1",
    )
    yield Probe(
        "nest", "while-true", expr("y = x\nwhile True:\n    y = y + 0\nreturn sum(y)"), item="A1"
    )


def scale_constructs() -> dict[str, Callable[[int], bytes]]:
    out: dict[str, Callable[[int], bytes]] = {}
    for name, make in nest_constructs().items():
        out[name] = lambda d, make=make: expr(make(d))  # type: ignore[misc]
    for name, make_graph in GRAPHS.items():
        out[name] = lambda n, g=make_graph: doc({"graph": g(n), "inputs": {"x": [1.0, 2.0, 3.0]}})  # type: ignore[misc]
    return out


def _pre_pool_seconds(
    port: int, monitor: Monitor, baseline_mb: float, body: bytes, before: float
) -> float:
    """The least of ``before`` and a new timing of the work before the pool for ``body``."""
    again = fire(port, monitor, Probe("scale", "again", body), baseline_mb)
    return min(before, max(0.0, again.seconds - again.compute_s))


def scale_probe(
    port: int, monitor: Monitor, baseline_mb: float, deadline: float
) -> Iterator[Result]:
    """Each construct at doubling depths: a step whose time more than triples is superlinear."""
    for name, make in scale_constructs().items():
        previous: tuple[int, float, int] | None = None
        for depth in (4, 8, 12, 16, 20, 24, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
            if time.monotonic() > deadline:
                return
            body = make(depth)
            if len(body) > 250_000:
                break
            for path in ("/grad", "/hessian"):
                result = fire(
                    port,
                    monitor,
                    Probe("scale", f"{name}@{depth}{path}", body, path=path, item="A1"),
                    baseline_mb,
                )
                # Work before the pool: the wall time less what the computation itself took
                # (timing_ms.total; the op cap bounds that part).
                t = max(0.0, result.seconds - result.compute_s)
                # Only like with like: a refusal (413) is timed whole, an answer less its work.
                if previous is not None and path == "/grad" and previous[2] == result.status:
                    d0, t0, _ = previous
                    growth = (t / max(t0, 0.02)) / (depth / d0)
                    if t > 0.3 and growth > 2.0:
                        # The machine is shared: time both depths again before saying so.
                        t0 = _pre_pool_seconds(port, monitor, baseline_mb, make(d0), t0)
                        t = _pre_pool_seconds(port, monitor, baseline_mb, body, t)
                        growth = (t / max(t0, 0.02)) / (depth / d0)
                    if t > 0.3 and growth > 2.0:
                        result.failures.append(
                            f"superlinear: {t0:.3f} s at {d0} -> {t:.3f} s at {depth}"
                        )
                if path == "/grad":
                    previous = (depth, t, result.status)
                yield result
            if result.seconds > 6 or result.status not in (200,):
                break


# --------------------------------------------------------------------------- memory bombs


def b64_input(
    shape: list[int], nbytes: int | None = None, dtype: str = "float64"
) -> dict[str, Any]:
    size = 8 if dtype == "float64" else 4
    n = nbytes if nbytes is not None else size * math.prod(shape)
    return {"dtype": dtype, "shape": shape, "b64": base64.b64encode(b"\0" * n).decode()}


def _bomb(text: str) -> Callable[[], bytes]:
    """A request body for ``text`` over a 30,000-element x, built when fired."""
    return lambda: expr(text, {"x": b64_input([30_000])})


def memory_probes() -> Iterator[Probe]:
    big = 10**9
    x1 = {"x": [[1.0]]}
    zeros = lambda n: b64_input([n])  # noqa: E731
    yield Probe(
        "memory",
        "index-2-arrays-1x1",
        lambda: expr(
            "sum(x[reshape(i, [-1, 1]), j])",
            {
                "x": [[1.0]],
                "i": {**zeros(20_000), "requires_grad": False},
                "j": {**zeros(20_000), "requires_grad": False},
            },
        ),
        item="A2",
    )
    yield Probe(
        "memory",
        "index-none-arrays",
        lambda: expr(
            "sum(x[i[:, None], i[None, :]])",
            {"x": [[1.0]], "i": {**zeros(20_000), "requires_grad": False}},
        ),
        item="A2",
    )
    yield Probe(
        "memory",
        "index-literal-arrays",
        lambda: expr("sum(x[" + str([[0] * 3000]) + ", " + str([[0]] * 3000) + "])", x1),
        item="A2",
    )
    yield Probe(
        "memory",
        "index-array-1e5-on-big",
        lambda: expr(
            "sum(x[i])",
            {"x": b64_input([100_000, 40]), "i": {**zeros(100_000), "requires_grad": False}},
        ),
        item="A2",
    )
    yield Probe(
        "memory",
        "index-then-none",
        lambda: expr(
            "sum(x[i][:, None] * x[i][None, :])",
            {"x": [1.0], "i": {**zeros(20_000), "requires_grad": False}},
        ),
        item="A2",
    )
    yield Probe(
        "memory",
        "index-jacobian",
        lambda: expr(
            "x[i]", {"x": b64_input([3000]), "i": {**zeros(30_000), "requires_grad": False}}
        ),
        path="/jacobian",
        item="A2/A3",
    )
    for name, text in [
        ("broadcast-outer-add", "sum(reshape(x, [-1, 1]) + reshape(x, [1, -1]))"),
        ("outer", "sum(outer(x, x))"),
        ("einsum-3", "sum(einsum('i,j,k->ijk', x, x, x))"),
        ("tile", "sum(tile(x, [100000, 100000]))"),
        ("repeat", f"sum(repeat(x, {big}))"),
        ("repeat-array-counts", "sum(repeat(x, [1000000000, 1000000000, 1000000000]))"),
        ("zeros", "sum(x) + sum(zeros([100000, 100000]))"),
        ("ones-3d", "sum(x) + sum(ones([5000, 5000, 5000]))"),
        ("full", "sum(full([100000, 100000], x[0]))"),
        ("eye", "sum(x) + sum(eye(1000000))"),
        ("eye-M", "sum(x) + sum(eye(1, 10000000000))"),
        ("arange", "sum(x) + sum(arange(1e12))"),
        ("arange-step", "sum(x) + sum(arange(0, 1, 1e-12))"),
        ("linspace", "sum(linspace(x[0], 1.0, 10000000000))"),
        ("broadcast_to", "sum(broadcast_to(x[0], [100000, 100000]))"),
        ("broadcast_to-neg", "sum(broadcast_to(x[0], [-1, 10]))"),
        ("diag-big", "sum(diag(repeat(x, 100000)))"),
        (
            "expand-then-mul",
            "sum(x[:, None, None] * x[None, :, None] * repeat(x, 10000000)[None, None, :])",
        ),
        ("zeros_like-big", "sum(zeros_like(tile(x, [100000, 100000])))"),
        ("reshape-overflow", "sum(reshape(x, [4294967296, 4294967296, 0]))"),
        ("zeros-overflow", "sum(x) + sum(zeros([4294967296, 4294967296]))"),
        ("zeros-neg", "sum(x) + sum(zeros([-1]))"),
        ("ones-overflow-0", "sum(x) + sum(ones([0, 4294967296, 4294967296, 4294967296]))"),
        ("tensordot-big", "sum(tensordot(tile(x, [1000]), tile(x, [1000]), axes=0))"),
        (
            "matmul-big",
            "sum(matmul(reshape(repeat(x, 100000), [-1, 1]), reshape(repeat(x, 100000), [1, -1])))",
        ),
        ("loop-grow", "y = x\nfor i in range(40):\n    y = concatenate([y, y])\nreturn sum(y)"),
        ("loop-tile", "y = x\nfor i in range(40):\n    y = tile(y, 2)\nreturn sum(y)"),
    ]:
        yield Probe("memory", name, _bomb(text), item="A2/A3")
    # Derivatives and answers that would be huge.
    yield Probe(
        "memory",
        "jacobian-8000",
        lambda: expr("sin(x)", {"x": b64_input([8000])}),
        path="/jacobian",
        item="A3",
    )
    yield Probe(
        "memory",
        "jacobian-7000-reverse",
        lambda: expr("sin(x)", {"x": b64_input([7000])}, mode="reverse"),
        path="/jacobian",
        item="A3",
    )
    yield Probe(
        "memory",
        "hessian-7000",
        lambda: expr("sum(sin(x))", {"x": b64_input([7000])}),
        path="/hessian",
        item="A3",
    )
    yield Probe(
        "memory",
        "hessian-3000-b64",
        lambda: expr("sum(sin(x))", {"x": b64_input([3000])}, encoding="b64"),
        path="/hessian",
        item="A3",
    )
    yield Probe(
        "memory",
        "jvp-broadcast-133B",
        expr("broadcast_to(x, [4000, 4000])", {"x": [1.0]}, tangents={"x": [1.0]}),
        path="/jvp",
        item="A3",
    )
    yield Probe(
        "memory",
        "grad-value-huge",
        expr("y = broadcast_to(x, [5000, 5000])\nreturn sum(x), y", {"x": [1.0]}),
        path="/grad",
        item="A3",
    )
    yield Probe(
        "memory",
        "vjp-outer-answer",
        lambda: expr("outer(x, x)", {"x": b64_input([5000])}, cotangent=b64_input([5000, 5000])),
        path="/vjp",
        item="A3",
    )
    yield Probe(
        "memory",
        "value-20M",
        expr("tile(x, [20000000])", {"x": [1.0]}, cotangent=None),
        path="/jvp",
        item="A5",
    )
    yield Probe(
        "memory",
        "jvp-30M",
        expr("broadcast_to(x, [6000, 5000])", {"x": [1.0]}, tangents={"x": [1.0]}),
        path="/jvp",
        item="A5",
    )
    yield Probe(
        "memory",
        "hvp-batch-huge",
        lambda: expr(
            "sum(sin(x))", {"x": b64_input([5000])}, vectors_batch={"x": b64_input([5000, 5000])}
        ),
        path="/hvp",
        item="A3",
    )
    yield Probe(
        "memory",
        "jvp-tangents-batch-huge",
        lambda: expr(
            "outer(x, x)", {"x": b64_input([1000])}, tangents_batch={"x": b64_input([100, 1000])}
        ),
        path="/jvp",
        item="A3",
    )
    yield Probe(
        "memory",
        "batch-outer",
        lambda: expr("outer(x, x)", {"x": b64_input([200, 1000])}, batch=["x"]),
        path="/jacobian",
        item="A3",
    )
    yield Probe(
        "memory",
        "graph-json-huge-answer",
        lambda: doc(
            {
                "graph": {
                    "nodes": [
                        {
                            "id": "b",
                            "op": "broadcast_to",
                            "inputs": ["x"],
                            "attrs": {"shape": [4000, 4000]},
                        }
                    ],
                    "outputs": ["b"],
                },
                "inputs": {"x": [1.0]},
                "tangents": {"x": [1.0]},
            }
        ),
        path="/jvp",
        item="A3",
    )
    # b64 inputs with huge shapes and zero dimensions.
    for name, shape in [
        ("zero-huge", [0, 10**12]),
        ("huge-zero", [10**12, 10**12, 0]),
        ("overflow", [2**32, 2**32]),
        ("overflow-64", [2**62, 4]),
        ("negative", [-1, 4]),
        ("neg-neg", [-2, -2]),
        ("many-dims", [1] * 100),
        ("many-dims-0", [0] * 40),
        ("float-dim", [1.5]),
        ("bool-dim", [True]),
        ("str-dim", ["3"]),
        ("big-int", [10**30]),
    ]:
        for path in ("/grad", "/jacobian", "/hessian"):
            body = doc(
                {
                    "expression": "sum(x * x)",
                    "inputs": {"x": {"dtype": "float64", "shape": shape, "b64": ""}},
                }
            )
            yield Probe("memory", f"b64-{name}{path}", body, path=path, item="A6")
    yield Probe(
        "memory",
        "b64-zero-huge-expr",
        doc(
            {
                "expression": "sum(x) + sum(x[None] * x[:, None])",
                "inputs": {"x": {"dtype": "float64", "shape": [0, 10**9], "b64": ""}},
            }
        ),
        item="A6",
    )
    yield Probe(
        "memory",
        "b64-zero-reshape",
        doc(
            {
                "expression": "sum(reshape(x, [-1]))",
                "inputs": {"x": {"dtype": "float64", "shape": [0, 10**9], "b64": ""}},
            }
        ),
        item="A6",
    )
    yield Probe(
        "memory",
        "b64-zero-tangent",
        doc(
            {
                "expression": "x",
                "inputs": {"x": [1.0]},
                "tangents": {"x": {"dtype": "float64", "shape": [0, 10**12], "b64": ""}},
            }
        ),
        path="/jvp",
        item="A6",
    )
    yield Probe(
        "memory",
        "b64-zero-cotangent",
        doc(
            {
                "expression": "x",
                "inputs": {"x": [1.0]},
                "cotangent": {"dtype": "float64", "shape": [0, 10**12], "b64": ""},
            }
        ),
        path="/vjp",
        item="A6",
    )
    yield Probe(
        "memory",
        "b64-zero-vectors",
        doc(
            {
                "expression": "sum(x)",
                "inputs": {"x": [1.0]},
                "vectors": {"x": {"dtype": "float64", "shape": [10**12, 0], "b64": ""}},
            }
        ),
        path="/hvp",
        item="A6",
    )
    yield Probe(
        "memory",
        "b64-zero-function-constant",
        doc(
            {
                "expression": "sum(x) + sum(c)",
                "constants": {"c": {"dtype": "float64", "shape": [0, 10**12], "b64": ""}},
            }
        ),
        path="/functions",
        item="A6",
    )
    # A worker that hit its cap must serve the next request right (A5).
    yield Probe(
        "memory",
        "cap-then-small",
        lambda: expr("sum(exp(x[:, None] * x[None, :]))", {"x": b64_input([7000])}),
        item="A5",
    )
    yield Probe(
        "memory",
        "after-cap-big-body",
        lambda: expr("sum(x * x)", {"x": b64_input([40_000])}),
        expect=(200,),
        item="A5",
    )
    yield Probe(
        "memory",
        "after-cap-json-body",
        lambda: expr("sum(x * x)", {"x": [1.0] * 100_000}),
        expect=(200,),
        item="A5",
    )


# --------------------------------------------------------------------------- malformed bodies

FIELDS = (
    "expression",
    "graph",
    "inputs",
    "wrt",
    "include_graph",
    "check",
    "encoding",
    "mode",
    "cotangent",
    "cotangents",
    "tangents",
    "tangents_batch",
    "vectors",
    "vectors_batch",
    "batch",
    "function",
)
WRONG = [
    None,
    1,
    1.5,
    -1,
    "s",
    "",
    [],
    {},
    True,
    [None],
    {"a": 1},
    [[1]],
    "x" * 5000,
    10**30,
    [1e308],
]
PATHS = ("/grad", "/vjp", "/jvp", "/jacobian", "/hessian", "/hvp")


def malformed_probes() -> Iterator[Probe]:
    base = {"expression": "sum(x * x)", "inputs": {"x": [1.0, 2.0]}}
    for path in PATHS:
        for name in FIELDS:
            for i, value in enumerate(WRONG):
                body = doc({**base, name: value})
                yield Probe("malformed", f"wrong-{name}-{i}{path}", body, path=path, item="type")
    # Wrong types inside an input object and inside a graph node.
    for i, value in enumerate(WRONG):
        for key in ("data", "dtype", "shape", "b64", "requires_grad"):
            obj: dict[str, Any] = {"data": [1.0, 2.0], "dtype": "float64"}
            if key in ("shape", "b64"):
                obj = {
                    "dtype": "float64",
                    "shape": [2],
                    "b64": base64.b64encode(b"\0" * 16).decode(),
                }
            obj[key] = value
            yield Probe(
                "malformed", f"input-{key}-{i}", doc({**base, "inputs": {"x": obj}}), item="type"
            )
        for key in ("id", "op", "inputs", "attrs"):
            node: dict[str, Any] = {"id": "s", "op": "sum", "inputs": ["x"]}
            node[key] = value
            yield Probe(
                "malformed",
                f"node-{key}-{i}",
                doc({"graph": {"nodes": [node], "outputs": ["s"]}, "inputs": {"x": [1.0]}}),
                item="type",
            )
        yield Probe(
            "malformed",
            f"graph-nodes-{i}",
            doc({"graph": {"nodes": value, "outputs": ["s"]}, "inputs": {"x": [1.0]}}),
            item="type",
        )
        yield Probe(
            "malformed",
            f"graph-outputs-{i}",
            doc(
                {
                    "graph": {
                        "nodes": [{"id": "s", "op": "sum", "inputs": ["x"]}],
                        "outputs": value,
                    },
                    "inputs": {"x": [1.0]},
                }
            ),
            item="type",
        )
        yield Probe(
            "malformed", f"input-value-{i}", doc({**base, "inputs": {"x": value}}), item="type"
        )
        yield Probe(
            "malformed",
            f"attr-value-{i}",
            doc(
                {
                    "graph": {
                        "nodes": [
                            {"id": "s", "op": "sum", "inputs": ["x"], "attrs": {"axis": value}}
                        ],
                        "outputs": ["s"],
                    },
                    "inputs": {"x": [1.0]},
                }
            ),
            item="type",
        )
    # Strings in arrays: only "nan", "inf", "-inf" are numbers (A7).
    for text in [
        "1.5",
        "NaN",
        "infinity",
        "Infinity",
        "Inf",
        "+inf",
        " inf",
        "-nan",
        "1e5",
        "0x10",
        "",
        "nan ",
        "INF",
        "-Infinity",
        "1_0",
    ]:
        for where in ("inputs", "tangents", "cotangent", "vectors", "data"):
            path = {
                "inputs": "/grad",
                "tangents": "/jvp",
                "cotangent": "/vjp",
                "vectors": "/hvp",
                "data": "/grad",
            }[where]
            req: dict[str, Any] = {
                "expression": "sum(x * x)" if where != "cotangent" else "x * x",
                "inputs": {"x": [1.0, 2.0]},
            }
            if where == "inputs":
                req["inputs"] = {"x": [1.0, text]}
            elif where == "data":
                req["inputs"] = {"x": {"data": [[1.0, text]], "dtype": "float32"}}
            elif where == "cotangent":
                req["cotangent"] = [1.0, text]
            else:
                req[where] = {"x": [1.0, text]}
            yield Probe(
                "malformed",
                f"string-{text!r}-in-{where}",
                doc(req),
                path=path,
                expect=(422,),
                item="A7",
            )
    for text in ["nan", "inf", "-inf"]:
        yield Probe(
            "malformed",
            f"documented-{text}",
            doc({**base, "inputs": {"x": [1.0, text]}}),
            expect=(200,),
            item="A7",
        )
    # Look-alike names (A7): non-ASCII identifiers with a lone CR, CRLF, tabs, several lines.
    for sep in ("\r", "\r\n", "\n", "\n\n", "\x0c", "\x0b", "\u2028", "\u0085"):
        for name in ("\uff58", "\u0445", "\u03bf", "x\u0301", "\u2170", "\U0001d431", "\u212a"):
            text = f"y = x{sep}return sum({name})"
            yield Probe(
                "malformed",
                f"lookalike-{name!r}-sep{sep!r}",
                expr(text, {"x": [1.0], name: [1.0]}),
                expect=(422,),
                item="A7",
            )
        yield Probe(
            "malformed",
            f"lookalike-assign-sep{sep!r}",
            expr(f"\uff58 = x{sep}return sum(\uff58)"),
            expect=(422,),
            item="A7",
        )
    yield Probe(
        "malformed", "lookalike-input-key", expr("sum(x)", {"x": [1.0], "\uff58": [2.0]}), item="A7"
    )
    # Bytes that are not UTF-8 JSON.
    raws = {
        "latin1-in-string": b'{"expression":"sum(x)\xe9","inputs":{"x":[1.0]}}',
        "lone-surrogate": b'{"expression":"sum(x)\\ud800","inputs":{"x":[1.0]}}',
        "overlong-utf8": b'{"expression":"sum(x\xc0\xafx)","inputs":{"x":[1.0]}}',
        "utf16": '{"expression":"sum(x)","inputs":{"x":[1.0]}}'.encode("utf-16"),
        "utf8-bom": b'\xef\xbb\xbf{"expression":"sum(x)","inputs":{"x":[1.0]}}',
        "nul-bytes": b'{"expression":"sum(x)\x00","inputs":{"x":[1.0]}}',
        "escaped-nul": b'{"expression":"sum(x)\\u0000","inputs":{"x":[1.0]}}',
        "bare-nan": b'{"expression":"sum(x)","inputs":{"x":[NaN]}}',
        "bare-infinity": b'{"expression":"sum(x)","inputs":{"x":[Infinity]}}',
        "1e400": b'{"expression":"sum(x)","inputs":{"x":[1e400]}}',
        "-1e400": b'{"expression":"sum(x)","inputs":{"x":[-1e400, 1.0]}}',
        "1e-400": b'{"expression":"sum(x)","inputs":{"x":[1e-400]}}',
        "int-400-digits": b'{"expression":"sum(x)","inputs":{"x":[' + b"9" * 400 + b"]}}",
        "int-5000-digits": b'{"expression":"sum(x)","inputs":{"x":[' + b"9" * 5000 + b"]}}",
        "1e400-cotangent": b'{"expression":"x","inputs":{"x":[1.0]},"cotangent":[1e400]}',
        "1e400-attr": b'{"graph":{"nodes":[{"id":"s","op":"clip","inputs":["x"],"attrs":{"a_min":-1e400,"a_max":1e400}}],"outputs":["s"]},"inputs":{"x":[1.0]}}',
        "1e400-shape": b'{"expression":"sum(x)","inputs":{"x":{"dtype":"float64","shape":[1e400],"b64":""}}}',
        "big-int-axis": b'{"graph":{"nodes":[{"id":"s","op":"sum","inputs":["x"],"attrs":{"axis":'
        + b"9" * 400
        + b'}}],"outputs":["s"]},"inputs":{"x":[1.0]}}',
        "duplicate-keys": b'{"expression":"sum(x)","expression":"sum(x*2)","inputs":{"x":[1.0]}}',
        "duplicate-input": b'{"expression":"sum(x)","inputs":{"x":[1.0],"x":[2.0, 3.0]}}',
        "trailing-garbage": b'{"expression":"sum(x)","inputs":{"x":[1.0]}} xyz',
        "trailing-comma": b'{"expression":"sum(x)","inputs":{"x":[1.0,]}}',
        "comments": b'{"expression":"sum(x)", /* c */ "inputs":{"x":[1.0]}}',
        "single-quotes": b"{'expression':'sum(x)','inputs':{'x':[1.0]}}",
        "empty": b"",
        "whitespace": b"   \n ",
        "null": b"null",
        "array": b"[1,2,3]",
        "number": b"1",
        "string": b'"sum(x)"',
        "truncated": b'{"expression":"sum(x)","inputs":{"x":[1.0',
        "ragged": b'{"expression":"sum(x)","inputs":{"x":[[1.0],[1.0,2.0]]}}',
        "ragged-deep": b'{"expression":"sum(x)","inputs":{"x":[[[1.0]],[1.0]]}}',
        "empty-inner": b'{"expression":"sum(x)","inputs":{"x":[[],[]]}}',
        "bools": b'{"expression":"sum(x)","inputs":{"x":[true, false]}}',
        "nulls": b'{"expression":"sum(x)","inputs":{"x":[null]}}',
        "objects-in-list": b'{"expression":"sum(x)","inputs":{"x":[{}]}}',
        "dtype-float16": b'{"expression":"sum(x)","inputs":{"x":{"data":[1.0],"dtype":"float16"}}}',
        "dtype-int64": b'{"expression":"sum(x)","inputs":{"x":{"data":[1],"dtype":"int64"}}}',
        "dtype-complex": b'{"expression":"sum(x)","inputs":{"x":{"data":[1],"dtype":"complex128"}}}',
        "dtype-object": b'{"expression":"sum(x)","inputs":{"x":{"data":[1],"dtype":"object"}}}',
        "dtype-be": b'{"expression":"sum(x)","inputs":{"x":{"data":[1],"dtype":">f8"}}}',
        "b64-bad-chars": b'{"expression":"sum(x)","inputs":{"x":{"dtype":"float64","shape":[1],"b64":"!!!!!!!!!!!="}}}',
        "b64-bad-length": b'{"expression":"sum(x)","inputs":{"x":{"dtype":"float64","shape":[2],"b64":"AAAAAAAAAAA="}}}',
        "b64-nan-bytes": (
            '{"expression":"sum(x)","inputs":{"x":{"dtype":"float64","shape":[1],"b64":"'
            + base64.b64encode(b"\xff" * 8).decode()
            + '"}}}'
        ).encode(),
        "b64-url-alphabet": b'{"expression":"sum(x)","inputs":{"x":{"dtype":"float64","shape":[1],"b64":"____________"}}}',
        "b64-whitespace": b'{"expression":"sum(x)","inputs":{"x":{"dtype":"float64","shape":[1],"b64":"AAAA AAAA AAA="}}}',
        "b64-and-data": b'{"expression":"sum(x)","inputs":{"x":{"dtype":"float64","shape":[1],"b64":"AAAAAAAAAAA=","data":[1.0]}}}',
        "data-shape-mismatch": b'{"expression":"sum(x)","inputs":{"x":{"data":[1.0, 2.0],"shape":[3]}}}',
        "extra-field": b'{"expression":"sum(x)","inputs":{"x":[1.0]},"unknown":1}',
        "both-functions": b'{"expression":"sum(x)","graph":{"nodes":[],"outputs":[]},"inputs":{"x":[1.0]}}',
        "neither-function": b'{"inputs":{"x":[1.0]}}',
        "graph-missing-ref": b'{"graph":{"nodes":[{"id":"s","op":"sum","inputs":["nope"]}],"outputs":["s"]},"inputs":{"x":[1.0]}}',
        "graph-output-missing": b'{"graph":{"nodes":[{"id":"s","op":"sum","inputs":["x"]}],"outputs":["nope"]},"inputs":{"x":[1.0]}}',
        "graph-cycle": b'{"graph":{"nodes":[{"id":"a","op":"sin","inputs":["b"]},{"id":"b","op":"sin","inputs":["a"]}],"outputs":["a"]},"inputs":{"x":[1.0]}}',
        "graph-self": b'{"graph":{"nodes":[{"id":"a","op":"sin","inputs":["a"]}],"outputs":["a"]},"inputs":{"x":[1.0]}}',
        "graph-id-is-input": b'{"graph":{"nodes":[{"id":"x","op":"sin","inputs":["x"]}],"outputs":["x"]},"inputs":{"x":[1.0]}}',
        "graph-inf-attr": b'{"graph":{"nodes":[{"id":"s","op":"norm","inputs":["x"],"attrs":{"ord":"inf"}}],"outputs":["s"]},"inputs":{"x":[1.0, -3.0]}}',
        "graph-nan-attr": b'{"graph":{"nodes":[{"id":"s","op":"clip","inputs":["x"],"attrs":{"a_min":"nan","a_max":"inf"}}],"outputs":["s"]},"inputs":{"x":[1.0, -3.0]}}',
        "graph-getitem-bad": b'{"graph":{"nodes":[{"id":"s","op":"getitem","inputs":["x"],"attrs":{"index":[{"a":1}]}}],"outputs":["s"]},"inputs":{"x":[1.0, -3.0]}}',
        "graph-getitem-str": b'{"graph":{"nodes":[{"id":"s","op":"getitem","inputs":["x"],"attrs":{"index":["nope"]}}],"outputs":["s"]},"inputs":{"x":[1.0, -3.0]}}',
        "graph-einsum-bad": b'{"graph":{"nodes":[{"id":"s","op":"einsum","inputs":["x"],"attrs":{"subscripts":"i->ii"}}],"outputs":["s"]},"inputs":{"x":[1.0, -3.0]}}',
        "einsum-ellipsis-bomb": b'{"expression":"sum(einsum(\'...,...->...\', x, x))","inputs":{"x":[1.0, -3.0]}}',
        "einsum-many-letters": (
            '{"expression":"sum(einsum(\''
            + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[:52]
            + '->\', x))","inputs":{"x":[1.0]}}'
        ).encode(),
        "mean-empty": b'{"expression":"mean(x)","inputs":{"x":{"dtype":"float64","shape":[0],"b64":""}}}',
        "var-empty": b'{"expression":"var(x)","inputs":{"x":{"dtype":"float64","shape":[0],"b64":""}}}',
        "std-empty-axis": b'{"expression":"sum(std(x, axis=0))","inputs":{"x":{"dtype":"float64","shape":[0, 3],"b64":""}}}',
        "var-ddof-n": b'{"expression":"var(x, ddof=2)","inputs":{"x":[1.0, 2.0]}}',
        "var-ddof-big": b'{"expression":"var(x, ddof=5)","inputs":{"x":[1.0, 2.0]}}',
        "std-ddof-n": b'{"expression":"std(x, ddof=2)","inputs":{"x":[1.0, 2.0]}}',
        "var-ddof-neg": b'{"expression":"var(x, ddof=-1)","inputs":{"x":[1.0, 2.0]}}',
        "max-empty": b'{"expression":"max(x)","inputs":{"x":{"dtype":"float64","shape":[0],"b64":""}}}',
        "prod-empty": b'{"expression":"prod(x)","inputs":{"x":{"dtype":"float64","shape":[0],"b64":""}}}',
        "logsumexp-empty": b'{"expression":"logsumexp(x)","inputs":{"x":{"dtype":"float64","shape":[0],"b64":""}}}',
        "norm-empty": b'{"expression":"norm(x)","inputs":{"x":{"dtype":"float64","shape":[0],"b64":""}}}',
        "softmax-empty": b'{"expression":"sum(softmax(x))","inputs":{"x":{"dtype":"float64","shape":[0],"b64":""}}}',
        "inv-empty": b'{"expression":"sum(inv(x))","inputs":{"x":{"dtype":"float64","shape":[0,0],"b64":""}}}',
        "det-empty": b'{"expression":"det(x)","inputs":{"x":{"dtype":"float64","shape":[0,0],"b64":""}}}',
        "cholesky-empty": b'{"expression":"sum(cholesky(x))","inputs":{"x":{"dtype":"float64","shape":[0,0],"b64":""}}}',
        "hessian-where-float": b'{"expression":"sum(where(x, x, 0))","inputs":{"x":[1.0, 0.0, 2.0]}}',
        "norm-ord0": b'{"expression":"norm(x, ord=0)","inputs":{"x":[1.0, 0.0, 2.0]}}',
        "norm-ord-neg": b'{"expression":"norm(x, ord=-1)","inputs":{"x":[1.0, 0.0, 2.0]}}',
        "norm-ord-str": b'{"expression":"norm(x, ord=\'fro\')","inputs":{"x":[[1.0, 0.0], [2.0, 1.0]]}}',
        "norm-ord-nuc": b'{"expression":"norm(x, ord=\'nuc\')","inputs":{"x":[[1.0, 0.0], [2.0, 1.0]]}}',
        "norm-ord-3-matrix": b'{"expression":"norm(x, ord=3)","inputs":{"x":[[1.0, 0.0], [2.0, 1.0]]}}',
        "norm-axis-3": b'{"expression":"sum(norm(x, axis=(0, 1, 2)))","inputs":{"x":[[[1.0]]]}}',
        "power-zero-neg": b'{"expression":"sum(power(x, -1.5))","inputs":{"x":[0.0, -1.0]}}',
        "inv-singular": b'{"expression":"sum(inv(x))","inputs":{"x":[[1.0, 1.0], [1.0, 1.0]]}}',
        "det-singular": b'{"expression":"det(x)","inputs":{"x":[[1.0, 1.0], [1.0, 1.0]]}}',
        "cholesky-not-pd": b'{"expression":"sum(cholesky(x))","inputs":{"x":[[-1.0, 0.0], [0.0, 1.0]]}}',
        "solve-singular": b'{"expression":"sum(solve(x, x))","inputs":{"x":[[1.0, 1.0], [1.0, 1.0]]}}',
        "slogdet-singular": b'{"expression":"s, l = slogdet(x)\\nreturn l","inputs":{"x":[[1.0, 1.0], [1.0, 1.0]]}}',
        "index-oob": b'{"expression":"x[5]","inputs":{"x":[1.0, 2.0]}}',
        "index-float": b'{"expression":"x[0.5]","inputs":{"x":[1.0, 2.0]}}',
        "index-float-array": b'{"expression":"sum(x[i])","inputs":{"x":[1.0, 2.0],"i":[0.5]}}',
        "index-huge": b'{"expression":"x[99999999999999999999999]","inputs":{"x":[1.0, 2.0]}}',
        "index-array-oob": b'{"expression":"sum(x[[0, 7]])","inputs":{"x":[1.0, 2.0]}}',
        "index-array-neg-oob": b'{"expression":"sum(x[[0, -7]])","inputs":{"x":[1.0, 2.0]}}',
        "index-too-many": b'{"expression":"sum(x[0, 0, 0])","inputs":{"x":[1.0, 2.0]}}',
        "index-two-ellipsis": b'{"expression":"sum(x[..., ...])","inputs":{"x":[1.0, 2.0]}}',
        "slice-step-0": b'{"expression":"sum(x[::0])","inputs":{"x":[1.0, 2.0]}}',
        "slice-huge": b'{"expression":"sum(x[:99999999999999999999:99999999999999999999])","inputs":{"x":[1.0, 2.0]}}',
        "bool-index": b'{"expression":"sum(x[x > 1])","inputs":{"x":[1.0, 2.0]}}',
        "reshape-bad": b'{"expression":"sum(reshape(x, [3]))","inputs":{"x":[1.0, 2.0]}}',
        "reshape-two-neg": b'{"expression":"sum(reshape(x, [-1, -1]))","inputs":{"x":[1.0, 2.0]}}',
        "transpose-bad-axes": b'{"expression":"sum(transpose(x, [0, 0]))","inputs":{"x":[[1.0, 2.0]]}}',
        "axis-oob": b'{"expression":"sum(sum(x, axis=5))","inputs":{"x":[1.0, 2.0]}}',
        "axis-dup": b'{"expression":"sum(sum(x, axis=(0, 0)))","inputs":{"x":[[1.0, 2.0]]}}',
        "axis-float": b'{"expression":"sum(sum(x, axis=0.5))","inputs":{"x":[1.0, 2.0]}}',
        "axis-huge": b'{"expression":"sum(sum(x, axis=99999999999999999999))","inputs":{"x":[1.0, 2.0]}}',
        "swapaxes-oob": b'{"expression":"sum(swapaxes(x, 0, 9))","inputs":{"x":[1.0, 2.0]}}',
        "squeeze-non1": b'{"expression":"sum(squeeze(x, axis=0))","inputs":{"x":[1.0, 2.0]}}',
        "concat-mismatch": b'{"expression":"sum(concatenate([x, reshape(x, [1, 2])]))","inputs":{"x":[1.0, 2.0]}}',
        "concat-empty": b'{"expression":"sum(x) + sum(concatenate([]))","inputs":{"x":[1.0, 2.0]}}',
        "stack-empty": b'{"expression":"sum(x) + sum(stack([]))","inputs":{"x":[1.0, 2.0]}}',
        "einsum-bad": b'{"expression":"sum(einsum(\'ij->k\', x))","inputs":{"x":[[1.0, 2.0]]}}',
        "einsum-not-string": b'{"expression":"sum(einsum(1, x))","inputs":{"x":[[1.0, 2.0]]}}',
        "trace-1d": b'{"expression":"trace(x)","inputs":{"x":[1.0, 2.0]}}',
        "diag-3d": b'{"expression":"sum(diag(x))","inputs":{"x":[[[1.0, 2.0]]]}}',
        "inv-nonsquare": b'{"expression":"sum(inv(x))","inputs":{"x":[[1.0, 2.0]]}}',
        "det-1d": b'{"expression":"det(x)","inputs":{"x":[1.0, 2.0]}}',
        "solve-mismatch": b'{"expression":"sum(solve(x, [1.0, 2.0, 3.0]))","inputs":{"x":[[1.0, 0.0],[0.0, 1.0]]}}',
        "tensordot-bad-axes": b'{"expression":"sum(tensordot(x, x, axes=5))","inputs":{"x":[1.0, 2.0]}}',
        "tensordot-neg-axes": b'{"expression":"sum(tensordot(x, x, axes=-1))","inputs":{"x":[1.0, 2.0]}}',
        "tile-neg": b'{"expression":"sum(tile(x, -1))","inputs":{"x":[1.0, 2.0]}}',
        "repeat-neg": b'{"expression":"sum(repeat(x, -1))","inputs":{"x":[1.0, 2.0]}}',
        "repeat-float": b'{"expression":"sum(repeat(x, 1.5))","inputs":{"x":[1.0, 2.0]}}',
        "repeat-array-traced": b'{"expression":"sum(repeat(x, x))","inputs":{"x":[1.0, 2.0]}}',
        "arange-traced": b'{"expression":"sum(arange(x[0]))","inputs":{"x":[1.0, 2.0]}}',
        "arange-nan": b'{"expression":"sum(x) + sum(arange(nan))","inputs":{"x":[1.0, 2.0]}}',
        "arange-inf": b'{"expression":"sum(x) + sum(arange(inf))","inputs":{"x":[1.0, 2.0]}}',
        "linspace-neg": b'{"expression":"sum(linspace(x[0], 1.0, -5))","inputs":{"x":[1.0, 2.0]}}',
        "linspace-traced-num": b'{"expression":"sum(linspace(0.0, 1.0, x[0]))","inputs":{"x":[1.0, 2.0]}}',
        "eye-neg": b'{"expression":"sum(x) + sum(eye(-3))","inputs":{"x":[1.0, 2.0]}}',
        "full-nan-shape": b'{"expression":"sum(full([nan], x[0]))","inputs":{"x":[1.0, 2.0]}}',
        "zeros-inf-shape": b'{"expression":"sum(x) + sum(zeros(inf))","inputs":{"x":[1.0, 2.0]}}',
        "zeros-dtype-str": b'{"expression":"sum(x) + sum(zeros(3, dtype=\'int8\'))","inputs":{"x":[1.0, 2.0]}}',
        "clip-kw": b'{"expression":"sum(clip(x, a_min=0.5, a_max=1.5))","inputs":{"x":[1.0, 2.0]}}',
        "clip-none": b'{"expression":"sum(clip(x, None, None))","inputs":{"x":[1.0, 2.0]}}',
        "where-1arg": b'{"expression":"sum(where(x > 1))","inputs":{"x":[1.0, 2.0]}}',
        "cond-nonscalar": b'{"expression":"if x > 1:\\n    y = x\\nelse:\\n    y = -x\\nreturn sum(y)","inputs":{"x":[1.0, 2.0]}}',
        "cond-nan": b'{"expression":"if sum(x) > nan:\\n    y = x\\nelse:\\n    y = -x\\nreturn sum(y)","inputs":{"x":[1.0, 2.0]}}',
        "return-nothing": b'{"expression":"y = x","inputs":{"x":[1.0, 2.0]}}',
        "return-in-loop": b'{"expression":"for i in range(3):\\n    return sum(x)","inputs":{"x":[1.0, 2.0]}}',
        "return-twice": b'{"expression":"return sum(x)\\nreturn sum(x)","inputs":{"x":[1.0, 2.0]}}',
        "unpack-mismatch": b'{"expression":"a, b = x\\nreturn a","inputs":{"x":[1.0, 2.0, 3.0]}}',
        "unpack-scalar": b'{"expression":"a, b = sum(x)\\nreturn a","inputs":{"x":[1.0, 2.0, 3.0]}}',
        "range-float": b'{"expression":"s = x\\nfor i in range(1.5):\\n    s = s + 1\\nreturn sum(s)","inputs":{"x":[1.0, 2.0]}}',
        "range-traced": b'{"expression":"s = x\\nfor i in range(x[0]):\\n    s = s + 1\\nreturn sum(s)","inputs":{"x":[1.0, 2.0]}}',
        "range-step0": b'{"expression":"s = x\\nfor i in range(0, 3, 0):\\n    s = s + 1\\nreturn sum(s)","inputs":{"x":[1.0, 2.0]}}',
        "loop-var-used": b'{"expression":"s = x\\nfor i in range(3):\\n    s = s * i\\nreturn sum(s) + i","inputs":{"x":[1.0, 2.0]}}',
        "unused-var": b'{"expression":"return sum(y)","inputs":{"x":[1.0, 2.0]}}',
        "keyword-unknown": b'{"expression":"sum(x, foo=1)","inputs":{"x":[1.0, 2.0]}}',
        "keyword-dup": b'{"expression":"sum(x, axis=0, axis=0)","inputs":{"x":[1.0, 2.0]}}',
        "positional-too-many": b'{"expression":"sum(x, 0, False, 1, 2)","inputs":{"x":[1.0, 2.0]}}',
        "call-nothing": b'{"expression":"sum()","inputs":{"x":[1.0, 2.0]}}',
        "int-index-traced": b'{"expression":"x[x[0]]","inputs":{"x":[1.0, 2.0]}}',
        "matmul-scalar": b'{"expression":"sum(x @ 2)","inputs":{"x":[1.0, 2.0]}}',
        "list-arith": b'{"expression":"sum([1, 2] * x)","inputs":{"x":[1.0, 2.0]}}',
        "list-ragged-literal": b'{"expression":"sum(x) + sum([[1], [1, 2]])","inputs":{"x":[1.0, 2.0]}}',
        "tuple-output-empty": b'{"expression":"return ()","inputs":{"x":[1.0, 2.0]}}',
        "float-mod-zero": b'{"expression":"sum(x % 0)","inputs":{"x":[1.0, 2.0]}}',
        "floordiv-zero": b'{"expression":"sum(x // 0)","inputs":{"x":[1.0, 2.0]}}',
        "pow-overflow": b'{"expression":"sum(x ** 1e308)","inputs":{"x":[10.0, 2.0]}}',
        "int-literal-overflow": b'{"expression":"sum(x) + 10 ** 400","inputs":{"x":[1.0, 2.0]}}',
        "float-literal-inf": b'{"expression":"sum(x) + 1e400","inputs":{"x":[1.0, 2.0]}}',
        "wrt-unknown": b'{"expression":"sum(x)","inputs":{"x":[1.0, 2.0]},"wrt":["y"]}',
        "wrt-empty": b'{"expression":"sum(x)","inputs":{"x":[1.0, 2.0]},"wrt":[]}',
        "wrt-constant": b'{"expression":"sum(x)","inputs":{"x":{"data":[1.0, 2.0],"requires_grad":false}},"wrt":["x"]}',
        "all-constant": b'{"expression":"sum(x)","inputs":{"x":{"data":[1.0, 2.0],"requires_grad":false}}}',
        "no-inputs": b'{"expression":"sum(ones(3))","inputs":{}}',
        "check-huge": b'{"expression":"sum(sin(x))","inputs":{"x":{"dtype":"float64","shape":[200000],"b64":"'
        + base64.b64encode(b"\0" * 1_600_000)
        + b'"},"check":true}',
    }
    for name, body_bytes in raws.items():
        for path in ("/grad", "/hessian", "/jacobian"):
            yield Probe("malformed", f"{name}{path}", body_bytes, path=path, item="A6/A7")
    # Specific endpoints.
    yield Probe(
        "malformed",
        "jacobian-size0-reverse",
        doc(
            {
                "expression": "x[2:, 0]",
                "inputs": {"x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]},
                "mode": "reverse",
            }
        ),
        path="/jacobian",
        expect=(200,),
        item="A6",
    )
    yield Probe(
        "malformed",
        "jacobian-size0-forward",
        doc(
            {
                "expression": "x[2:, 0]",
                "inputs": {"x": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]},
                "mode": "forward",
            }
        ),
        path="/jacobian",
        expect=(200,),
        item="A6",
    )
    yield Probe(
        "malformed",
        "jacobian-size0-input",
        doc(
            {
                "expression": "sum(x) + y",
                "inputs": {"x": {"dtype": "float64", "shape": [0, 3], "b64": ""}, "y": [1.0]},
            }
        ),
        path="/jacobian",
        expect=(200,),
        item="A6",
    )
    yield Probe(
        "malformed",
        "hessian-size0-input",
        doc(
            {
                "expression": "sum(x) + sum(y * y)",
                "inputs": {"x": {"dtype": "float64", "shape": [0, 3], "b64": ""}, "y": [1.0]},
            }
        ),
        path="/hessian",
        expect=(200,),
        item="A6",
    )
    yield Probe(
        "malformed",
        "hvp-empty-vectors",
        doc({"expression": "sum(x * x)", "inputs": {"x": [1.0]}, "vectors": {}}),
        path="/hvp",
        expect=(422,),
        item="A7",
    )
    yield Probe(
        "malformed",
        "jvp-empty-tangents",
        doc({"expression": "sum(x * x)", "inputs": {"x": [1.0]}, "tangents": {}}),
        path="/jvp",
        expect=(422,),
        item="A7",
    )
    yield Probe(
        "malformed",
        "vjp-empty-cotangents",
        doc({"expression": "x * x", "inputs": {"x": [1.0]}, "cotangents": []}),
        path="/vjp",
        expect=(422,),
        item="A7",
    )
    yield Probe(
        "malformed",
        "jvp-empty-tangents-batch",
        doc({"expression": "x * x", "inputs": {"x": [1.0]}, "tangents_batch": {}}),
        path="/jvp",
        expect=(422,),
        item="A7",
    )
    yield Probe(
        "malformed",
        "hvp-empty-vectors-batch",
        doc({"expression": "sum(x * x)", "inputs": {"x": [1.0]}, "vectors_batch": {}}),
        path="/hvp",
        expect=(422,),
        item="A7",
    )
    yield Probe(
        "malformed",
        "batch-empty",
        doc({"expression": "sum(x * x)", "inputs": {"x": [1.0]}, "batch": []}),
        path="/grad",
        item="A7",
    )
    yield Probe(
        "malformed",
        "batch-scalar-input",
        doc({"expression": "sum(x * x)", "inputs": {"x": 1.0}, "batch": ["x"]}),
        path="/grad",
        item="A7",
    )
    yield Probe(
        "malformed",
        "batch-mismatch",
        doc(
            {
                "expression": "sum(x * y)",
                "inputs": {"x": [1.0, 2.0], "y": [1.0, 2.0, 3.0]},
                "batch": ["x", "y"],
            }
        ),
        path="/grad",
        item="A7",
    )
    yield Probe(
        "malformed",
        "batch-size0",
        doc(
            {
                "expression": "sum(x * x)",
                "inputs": {"x": {"dtype": "float64", "shape": [0, 3], "b64": ""}},
                "batch": ["x"],
            }
        ),
        path="/grad",
        item="A6",
    )
    yield Probe(
        "malformed",
        "tangent-wrong-shape",
        doc({"expression": "x * x", "inputs": {"x": [1.0, 2.0]}, "tangents": {"x": [1.0]}}),
        path="/jvp",
        expect=(422,),
        item="type",
    )
    yield Probe(
        "malformed",
        "tangent-unknown-name",
        doc({"expression": "x * x", "inputs": {"x": [1.0, 2.0]}, "tangents": {"y": [1.0]}}),
        path="/jvp",
        expect=(422,),
        item="type",
    )
    yield Probe(
        "malformed",
        "cotangent-wrong-shape",
        doc({"expression": "x * x", "inputs": {"x": [1.0, 2.0]}, "cotangent": [[1.0]]}),
        path="/vjp",
        expect=(422,),
        item="type",
    )
    yield Probe(
        "malformed",
        "cotangents-list-wrong",
        doc(
            {"expression": "return x, sum(x)", "inputs": {"x": [1.0, 2.0]}, "cotangent": [1.0, 2.0]}
        ),
        path="/vjp",
        item="type",
    )
    yield Probe(
        "malformed",
        "function-unknown",
        doc({"function": "sha256:" + "0" * 64, "inputs": {"x": [1.0]}}),
        expect=(404,),
        item="type",
    )
    yield Probe(
        "malformed",
        "function-bad-id",
        doc({"function": "../../etc/passwd", "inputs": {"x": [1.0]}}),
        item="type",
    )
    yield Probe(
        "malformed",
        "functions-get-traversal",
        b"",
        method="GET",
        path="/functions/..%2F..%2Fetc%2Fpasswd",
        item="type",
    )
    yield Probe("malformed", "jobs-get-unknown", b"", method="GET", path="/jobs/nope", item="type")
    yield Probe(
        "malformed",
        "jobs-bad-endpoint",
        doc({"endpoint": "shell", "request": {}}),
        path="/jobs",
        item="type",
    )
    yield Probe(
        "malformed",
        "jobs-nested-job",
        doc({"endpoint": "jobs", "request": {}}),
        path="/jobs",
        item="type",
    )
    yield Probe(
        "malformed",
        "jobs-request-wrong",
        doc({"endpoint": "grad", "request": [1]}),
        path="/jobs",
        item="type",
    )
    # HTTP-level oddities.
    yield Probe(
        "malformed", "content-type-text", SMALL, headers={"Content-Type": "text/plain"}, item="type"
    )
    yield Probe(
        "malformed",
        "content-type-form",
        SMALL,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        item="type",
    )
    yield Probe(
        "malformed",
        "content-encoding-gzip-bogus",
        SMALL,
        headers={"Content-Encoding": "gzip"},
        item="type",
    )
    yield Probe(
        "malformed",
        "charset-latin1",
        SMALL,
        headers={"Content-Type": "application/json; charset=latin-1"},
        item="type",
    )
    yield Probe("malformed", "method-put", SMALL, method="PUT", item="type")
    yield Probe("malformed", "method-get-grad", b"", method="GET", item="type")
    yield Probe("malformed", "method-delete-ops", b"", method="DELETE", path="/ops", item="type")
    yield Probe("malformed", "unknown-path", SMALL, path="/nope", item="type")
    yield Probe("malformed", "long-path", b"", method="GET", path="/" + "a" * 60_000, item="type")
    yield Probe("malformed", "long-query", SMALL, path="/grad?" + "a=1&" * 20_000, item="type")
    yield Probe("malformed", "big-header", SMALL, headers={"X-Big": "a" * 60_000}, item="type")
    yield Probe(
        "malformed",
        "many-headers",
        SMALL,
        headers={f"X-H{i}": "1" for i in range(500)},
        item="type",
    )
    yield Probe(
        "malformed", "bad-request-id", SMALL, headers={"X-Request-ID": "a\tb" * 200}, item="type"
    )
    yield Probe(
        "malformed",
        "options-preflight-refused",
        b"",
        method="OPTIONS",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        item="A7",
    )
    yield Probe(
        "malformed",
        "api-key-garbage",
        SMALL,
        headers={"Authorization": "Bearer " + "\u00e9" * 10, "X-API-Key": "x" * 10_000},
        item="type",
    )
    yield Probe(
        "malformed",
        "over-limit-content-length",
        lambda: b"{" + b" " * (33 * MIB) + b"}",
        expect=(413,),
        item="A7",
    )


# --------------------------------------------------------------------------- slow clients


def raw_http(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send raw bytes, read until close or the timeout; (what came back, seconds)."""
    t0 = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and _complete(out):
                    break
        except TimeoutError:
            pass
    return out, time.monotonic() - t0


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"content-length:\s*(\d+)", head, re.I)
    return bool(m) and len(body) >= int(m.group(1)) if m else False


def raw_probes(port: int) -> list[tuple[str, str, bytes]]:
    """(name, item, raw request) for HTTP framing oddities; the answer is read raw."""
    body = SMALL
    head = f"POST /grad HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    big_chunks = b"".join(b"%x\r\n" % MIB + b" " * MIB + b"\r\n" for _ in range(34))
    return [
        (
            "chunked-ok",
            "type",
            (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
            + b"%x\r\n" % len(body)
            + body
            + b"\r\n0\r\n\r\n",
        ),
        (
            "chunked-bad-size",
            "type",
            (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
            + b"zz\r\n"
            + body
            + b"\r\n0\r\n\r\n",
        ),
        (
            "chunked-over-limit",
            "A7",
            (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + big_chunks + b"0\r\n\r\n",
        ),
        (
            "cl-and-te",
            "type",
            (head + f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
            + b"%x\r\n" % len(body)
            + body
            + b"\r\n0\r\n\r\n",
        ),
        ("cl-negative", "type", (head + "Content-Length: -5\r\n\r\n").encode() + body),
        (
            "cl-two",
            "type",
            (head + f"Content-Length: {len(body)}\r\nContent-Length: 3\r\n\r\n").encode() + body,
        ),
        ("cl-huge", "A7", (head + "Content-Length: 99999999999999999999\r\n\r\n").encode() + body),
        (
            "http10",
            "type",
            f"POST /grad HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body,
        ),
        ("bad-version", "type", b"POST /grad HTTP/9.9\r\n\r\n"),
        ("garbage-line", "type", b"\x00\x01\x02 garbage\r\n\r\n"),
        ("header-no-colon", "type", (head + "Broken header\r\n\r\n").encode()),
        (
            "expect-100",
            "type",
            (head + f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body,
        ),
    ]


def slow_clients(port: int, seconds: float) -> list[dict[str, Any]]:
    """Slow or idle clients held open ``seconds``; which did the server cut, and when."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def hold(
        name: str, item: str, setup: Callable[[socket.socket], None], drip: bytes | None
    ) -> None:
        s = socket.create_connection((HOST, port), timeout=5)
        t0 = time.monotonic()
        closed_at = None
        try:
            setup(s)
            while time.monotonic() - t0 < seconds:
                if drip is not None:
                    try:
                        s.sendall(drip)
                    except OSError:
                        closed_at = time.monotonic() - t0
                        break
                s.settimeout(2.0)
                try:
                    chunk = s.recv(1, socket.MSG_PEEK)
                    if chunk == b"" or drip is None and chunk:
                        # Closed, or an answer (a timeout's 408) that says it gave up.
                        closed_at = time.monotonic() - t0
                        break
                except TimeoutError:
                    pass
                except OSError:
                    closed_at = time.monotonic() - t0
                    break
        finally:
            s.close()
        with lock:
            results.append({"name": name, "item": item, "closed_after_s": closed_at})

    head = f"POST /grad HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    plans: list[tuple[str, str, Callable[[socket.socket], None], bytes | None]] = [
        ("idle-connection", "A3", lambda s: None, None),
        ("slow-headers", "A3", lambda s: s.sendall(head.encode()), b"X-a: b\r\n"),
        (
            "slow-body",
            "A3",
            lambda s: s.sendall((head + "Content-Length: 100000\r\n\r\n").encode()),
            b" ",
        ),
        ("idle-after-answer", "A3", lambda s: _request_and_read(s), None),
    ]
    threads = [threading.Thread(target=hold, args=plan, daemon=True) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return results


def _request_and_read(s: socket.socket) -> None:
    s.sendall(
        f"POST /grad HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(SMALL)}\r\n\r\n".encode()
        + SMALL
    )
    s.settimeout(10)
    data = b""
    while not _complete(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk


def never_read(port: int, monitor: Monitor, root: int, count: int, hold_s: float) -> dict[str, Any]:
    """Clients that ask for a large answer and never read it: server RSS while they hold on."""
    x = base64.b64encode(np.linspace(0.1, 1.0, 2_000_000).tobytes()).decode()
    body = doc(
        {
            "expression": "x * 3.0",
            "inputs": {"x": {"dtype": "float64", "shape": [2_000_000], "b64": x}},
            "tangents": {"x": {"dtype": "float64", "shape": [2_000_000], "b64": x}},
            "include_graph": False,
        }
    )
    before = rss(root)[0]
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((HOST, port))
        s.sendall(
            f"POST /jvp HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        socks.append(s)
    t0 = time.monotonic()
    peak = before
    closed = 0
    while time.monotonic() - t0 < hold_s:
        peak = max(peak, rss(root)[0])
        time.sleep(0.5)
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {
        "clients": count,
        "server_mb_before": round(before),
        "server_mb_peak": round(peak),
        "closed_by_server": closed,
        "held_s": hold_s,
    }


def concurrent_big_bodies(port: int, root: int, count: int) -> dict[str, Any]:
    """``count`` clients each sending a 28 MiB body of empty lists at once: peak server RSS."""
    body = b'{"expression":"sum(x)","inputs":{"x":[' + b"[]," * (9 * MIB) + b"[]]}}"
    before = rss(root)[0]
    statuses: list[int] = []
    peak = [before]
    halt = threading.Event()

    def sample() -> None:
        while not halt.is_set():
            peak[0] = max(peak[0], rss(root)[0])
            time.sleep(0.1)

    def one() -> None:
        try:
            statuses.append(request_once(port, "POST", "/grad", body, 120)[0])
        except OSError:
            statuses.append(0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    halt.set()
    return {
        "clients": count,
        "statuses": statuses,
        "server_mb_before": round(before),
        "server_mb_peak": round(peak[0]),
    }


# --------------------------------------------------------------------------- fuzz

UNARY = {
    # op: (text template, domain) -- domain "any", "pos" (x > 0), "unit" (|x| < 1)
    "sin": "any",
    "cos": "any",
    "tan": "unit",
    "exp": "any",
    "expm1": "any",
    "tanh": "any",
    "sinh": "any",
    "cosh": "any",
    "arctan": "any",
    "sigmoid": "any",
    "softplus": "any",
    "negative": "any",
    "square": "any",
    "abs": "any",
    "relu": "any",
    "sign": "any",
    "sqrt": "pos",
    "log": "pos",
    "log1p": "pos",
    "log2": "pos",
    "log10": "pos",
    "arcsin": "unit",
    "arccos": "unit",
}
BINARY = [
    "add",
    "subtract",
    "multiply",
    "divide",
    "power",
    "maximum",
    "minimum",
    "arctan2",
    "+",
    "-",
    "*",
    "/",
    "**",
    "//",
    "%",
]
REDUCE = ["sum", "mean", "prod", "max", "min", "var", "std", "norm", "logsumexp"]


class Gen:
    """Random programs (text) over named inputs of known shapes; shapes tracked with NumPy."""

    def __init__(self, rng: random.Random, inputs: dict[str, np.ndarray]) -> None:
        self.rng = rng
        self.inputs = inputs

    def leaf(self) -> tuple[str, tuple[int, ...]]:
        name = self.rng.choice(list(self.inputs))
        return name, self.inputs[name].shape

    def expr(self, depth: int) -> tuple[str, tuple[int, ...]]:
        r = self.rng
        if depth <= 0 or r.random() < 0.2:
            return self.leaf()
        kind = r.choice(
            [
                "unary",
                "unary",
                "binary",
                "binary",
                "reduce",
                "shape",
                "index",
                "linalg",
                "misc",
                "const",
            ]
        )
        a, sa = self.expr(depth - 1)
        if kind == "unary":
            op = r.choice(list(UNARY))
            dom = UNARY[op]
            if dom == "pos":
                a = f"(1.5 + square({a}))"
            elif dom == "unit":
                a = f"(0.5 * tanh({a}))"
            return f"{op}({a})", sa
        if kind == "binary":
            b, sb = self.expr(depth - 1)
            try:
                shape = np.broadcast_shapes(sa, sb)
            except ValueError:
                b, sb = r.choice(["2.5", "0.7", "-1.3"]), ()
                shape = sa
            op = r.choice(BINARY)
            if op in ("divide", "/", "//", "%", "arctan2"):  # away from 0 (and arctan2's (0, 0))
                b = f"(1.5 + square({b}))"
            if op in ("power", "**"):
                a = f"(1.5 + square({a}))"
                b = r.choice(["2", "3", "0.5", "-1.5", f"(0.5 * tanh({b}))", "0.0"])
                shape = (
                    np.broadcast_shapes(sa, sb) if b not in ("2", "3", "0.5", "-1.5", "0.0") else sa
                )
            if op in ("+", "-", "*", "/", "**", "//", "%"):
                return f"({a} {op} {b})", tuple(shape)
            return f"{op}({a}, {b})", tuple(shape)
        if kind == "reduce":
            op = r.choice(REDUCE)
            if op == "prod" and sa and math.prod(sa) > 6:
                op = "sum"
            if sa and r.random() < 0.6:
                axis = r.randrange(-len(sa), len(sa))
                keep = r.random() < 0.3
                extra = ""
                if op in ("var", "std") and r.random() < 0.3 and sa[axis] > 1:
                    extra = ", ddof=1"
                if op == "norm":
                    if r.random() < 0.3:
                        extra = (
                            f", ord={r.choice(['0', '1', '2', 'inf', '-inf', '3', '-1', '0.5'])}"
                        )
                    if op == "norm" and r.random() < 0.3 and len(sa) >= 2:
                        ax2 = (axis + 1) % len(sa)
                        ax1 = axis % len(sa)
                        o = r.choice(
                            ["None", "'fro'", "1", "-1", "inf", "-inf", "2", "-2", "'nuc'"]
                        )
                        shape = tuple(d for i, d in enumerate(sa) if i not in (ax1, ax2))
                        if keep:
                            shape = tuple(1 if i in (ax1, ax2) else d for i, d in enumerate(sa))
                        return f"norm({a}, ord={o}, axis=({ax1}, {ax2}), keepdims={keep})", shape
                if op == "std" or op == "norm":
                    a = f"(1.0 + square({a}))" if op == "norm" else a
                shape = (
                    tuple(1 if i == axis % len(sa) else d for i, d in enumerate(sa))
                    if keep
                    else tuple(d for i, d in enumerate(sa) if i != axis % len(sa))
                )
                return f"{op}({a}, axis={axis}, keepdims={keep}{extra})", shape
            if op == "norm" and len(sa) == 2 and r.random() < 0.5:
                o = r.choice(["2", "-2", "'nuc'", "1", "inf", "'fro'"])
                return f"norm({a}, ord={o})", ()
            return f"{op}({a})", ()
        if kind == "shape":
            choice = r.choice(
                [
                    "reshape",
                    "transpose",
                    "expand",
                    "squeeze",
                    "flip",
                    "tile",
                    "repeat",
                    "concat",
                    "stack",
                    "broadcast",
                    "swap",
                ]
            )
            n = math.prod(sa)
            if choice == "reshape":
                return f"reshape({a}, [-1])", (n,)
            if choice == "transpose":
                return f"transpose({a})", tuple(reversed(sa))
            if choice == "expand":
                ax = r.randrange(0, len(sa) + 1)
                return f"expand_dims({a}, {ax})", sa[:ax] + (1,) + sa[ax:]
            if choice == "squeeze":
                return f"squeeze(expand_dims({a}, 0), axis=0)", sa
            if choice == "flip":
                return f"flip({a})", sa
            if choice == "tile":
                return f"tile({a}, 2)", (sa[:-1] + (2 * sa[-1],)) if sa else (2,)
            if choice == "repeat":
                return f"repeat({a}, 2)", (2 * n,)
            if choice == "concat" and sa:
                return f"concatenate([{a}, {a}], axis=0)", (2 * sa[0],) + sa[1:]
            if choice == "stack":
                return f"stack([{a}, sin({a})], axis=0)", (2,) + sa
            if choice == "broadcast":
                return f"broadcast_to({a}, {list((2,) + sa)})", (2,) + sa
            if choice == "swap" and len(sa) >= 2:
                return f"swapaxes({a}, 0, 1)", (sa[1], sa[0]) + sa[2:]
            return a, sa
        if kind == "index" and sa:
            return self.index(a, sa)
        if kind == "linalg":
            return self.linalg(a, sa)
        if kind == "misc":
            choice = r.choice(
                [
                    "where",
                    "clip",
                    "clipkw",
                    "softmax",
                    "logsoftmax",
                    "einsum",
                    "cmp-where",
                    "full",
                    "linspace",
                    "mean-list",
                ]
            )
            if choice in ("where", "cmp-where"):
                b, sb = self.expr(depth - 1)
                try:
                    shape = np.broadcast_shapes(sa, sb)
                except ValueError:
                    b, shape = "0.0", sa
                return f"where({a} > 0.1, {a}, {b})", tuple(shape)
            if choice == "clip":
                return f"clip({a}, -0.7, 0.8)", sa
            if choice == "clipkw":
                return f"clip({a}, a_min=-0.6, a_max=0.9)", sa
            if choice in ("softmax", "logsoftmax") and sa:
                return (
                    f"{'softmax' if choice == 'softmax' else 'log_softmax'}({a}, axis={r.randrange(len(sa))})",
                    sa,
                )
            if choice == "detach":
                return f"(detach({a}) * {a})", sa
            if choice == "einsum" and len(sa) == 2 and sa[0] == sa[1] and r.random() < 0.5:
                form = r.choice(
                    [("ii->i", (sa[0],)), ("ii", ()), ("ij,jk->ik", sa), ("ij->ji", sa)]
                )
                operands = f"{a}, {a}" if "," in form[0] else a
                return f"einsum('{form[0]}', {operands})", form[1]
            if choice == "einsum" and sa:
                letters = "ijkl"[: len(sa)]
                if r.random() < 0.3:
                    return f"einsum('...,...->...', {a}, sin({a}))", sa
                return f"einsum('{letters},{letters}->{letters[0]}', {a}, {a})", (sa[0],)
            if choice == "full":
                return f"full({list(sa)}, sum({a}))", sa
            if choice == "linspace" and not sa:
                return f"linspace({a}, 2.0, 4)", (4,)
            if choice == "mean-list" and not sa:
                return f"mean([{a}, {a} * 2.0])", ()
            return a, sa
        if kind == "const":
            c = r.choice(["zeros_like", "ones_like", "arange"])
            if c == "arange":
                return f"({a} + 0.1 * reshape(arange({math.prod(sa)}), {list(sa)}))", sa
            return f"({a} + {c}({a}))", sa
        return a, sa

    def index(self, a: str, sa: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        r = self.rng
        parts: list[str] = []
        count = r.randrange(1, 4)  # one length for every index array: they must broadcast
        for d in sa:
            c = r.choice(["int", "slice", "colon", "array", "array", "none", "rev"])
            if c == "int":
                parts.append(str(r.randrange(-d, d)))
            elif c == "slice":
                lo = r.randrange(0, d)
                parts.append(f"{lo}:{r.randrange(lo + 1, d + 1)}")
            elif c == "rev":
                parts.append("::-1")
            elif c == "array":
                parts.append(str([r.randrange(-d, d) for _ in range(count)]))
            elif c == "none":
                # A new axis, then this dimension's own index: x[2, None, [0, 1]] (B1's form).
                parts.append("None")
                own = r.choice(
                    [":", str(r.randrange(-d, d)), str([r.randrange(-d, d) for _ in range(count)])]
                )
                parts.append(own)
            else:
                parts.append(":")
        if r.random() < 0.2:
            parts.insert(r.randrange(len(parts) + 1), "...")
        text = f"{a}[{', '.join(parts)}]"
        shape = _index_shape(sa, parts)
        if shape and r.random() < 0.3:
            # Index the result again (chained advanced indexing).
            return self.index(text, shape)
        return text, shape

    def linalg(self, a: str, sa: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        r = self.rng
        if len(sa) == 1:
            c = r.choice(["dot", "outer", "inner", "diag", "tensordot"])
            if c == "dot":
                return f"dot({a}, {a})", ()
            if c == "inner":
                return f"inner({a}, sin({a}))", ()
            if c == "outer":
                return f"outer({a}, cos({a}))", (sa[0], sa[0])
            if c == "diag":
                return f"diag({a})", (sa[0], sa[0])
            return f"tensordot({a}, {a}, axes=1)", ()
        if len(sa) == 2:
            n, m = sa
            c = r.choice(
                [
                    "matmul",
                    "trace",
                    "diag",
                    "det",
                    "inv",
                    "solve",
                    "slogdet",
                    "cholesky",
                    "tensordot",
                ]
            )
            if c == "matmul":
                return f"({a} @ transpose({a}))", (n, n)
            if c == "trace":
                return f"trace({a})", ()
            if c == "diag":
                return f"diag({a})", (min(n, m),)
            if c == "tensordot":
                return f"tensordot({a}, {a}, axes=2)", ()
            spd = f"({a} @ transpose({a}) + 3.0 * eye({n}))"
            if c == "det":
                return f"det({spd})", ()
            if c == "inv":
                return f"inv({spd})", (n, n)
            if c == "solve":
                return f"solve({spd}, {a})", (n, m)
            if c == "slogdet":
                return f"slogdet({spd})[1]", ()
            return f"cholesky({spd})", (n, n)
        return a, sa


def _index_shape(sa: tuple[int, ...], parts: list[str]) -> tuple[int, ...]:
    """The shape NumPy gives (computed by indexing a small zeros array)."""
    index: list[Any] = []
    for p in parts:
        if p == "None":
            index.append(None)
        elif p == "...":
            index.append(Ellipsis)
        elif p == ":":
            index.append(slice(None))
        elif p == "::-1":
            index.append(slice(None, None, -1))
        elif p.startswith("["):
            index.append(json.loads(p))
        elif ":" in p:
            lo, hi = p.split(":")
            index.append(slice(int(lo), int(hi)))
        else:
            index.append(int(p))
    return tuple(np.zeros(sa)[tuple(index)].shape)


SHAPES = [(), (3,), (2, 3), (4,), (2, 2), (3, 3), (1,), (2, 1, 3), (2, 3, 4), (3, 2)]


@dataclass
class FuzzCase:
    endpoint: str
    body: dict[str, Any]
    text: str
    inputs: dict[str, np.ndarray]
    out_shape: tuple[int, ...]
    options: dict[str, Any]
    graph: dict[str, Any] | None = None


def _control_flow(rng: random.Random, text: str, first: str) -> str:
    """Now and then, the expression inside a program with a branch or a loop."""
    form = rng.random()
    if form < 0.08:
        return f"if sum({first}) > 0:\n    out = {text}\nelse:\n    out = 2.0 * {text}\nreturn out"
    if form < 0.14:
        return f"out = {text}\nfor i in range(3):\n    out = out * 0.5 + sin(out)\nreturn out"
    if form < 0.18:
        return f"out = {text}\nk = 0\nwhile k < 2:\n    out -= 0.1 * out\n    k += 1\nreturn out"
    if form < 0.22:
        return f"a, b = {text}, {first}\na, b = b, a\nreturn b"
    return text


GRAPH_UNARY = ["sin", "cos", "tanh", "sigmoid", "softplus", "arctan", "square", "negative", "exp"]


def random_graph(rng: random.Random, names: list[str], scalar: bool) -> dict[str, Any]:
    """A JSON graph over the inputs: elementwise ops, literals, attrs (non-finite as strings)."""
    nodes: list[dict[str, Any]] = []
    pool = list(names)
    for i in range(rng.randrange(1, 6)):
        nid = f"n{i}"
        kind = rng.random()
        node: dict[str, Any]
        if kind < 0.4:
            node = {"id": nid, "op": rng.choice(GRAPH_UNARY), "inputs": [rng.choice(pool)]}
        elif kind < 0.75:
            op = rng.choice(["add", "subtract", "multiply", "maximum", "minimum"])
            other: Any = rng.choice(
                pool + [2.5, -0.5] if op in ("maximum", "minimum") else pool + [2.5]
            )
            node = {"id": nid, "op": op, "inputs": [rng.choice(pool), other]}
        elif kind < 0.9:
            bounds = rng.choice([(-0.5, 0.7), ("-inf", 0.3), (-0.2, "inf")])
            node = {
                "id": nid,
                "op": "clip",
                "inputs": [rng.choice(pool)],
                "attrs": {"a_min": bounds[0], "a_max": bounds[1]},
            }
        else:
            node = {"id": nid, "op": "where", "inputs": [rng.choice(pool), rng.choice(pool), 0.0]}
            cond = {"id": f"c{i}", "op": "greater", "inputs": [rng.choice(pool), 0.1]}
            nodes.append(cond)
            node["inputs"][0] = cond["id"]
        nodes.append(node)
        pool.append(nid)
    last = pool[-1]
    if scalar or rng.random() < 0.3:
        op, attrs = rng.choice(
            [
                ("sum", {}),
                ("norm", {"ord": rng.choice([1, 2, "inf", "-inf"])}),
                ("logsumexp", {}),
                ("mean", {}),
            ]
        )
        nodes.append({"id": "out", "op": op, "inputs": [last], "attrs": attrs})
        last = "out"
    return {"nodes": nodes, "outputs": [last]}


def random_case(rng: random.Random) -> FuzzCase | None:
    """A random request to a random endpoint, or None when the program is not usable."""
    from engine.lang import compile_graph, compile_source

    n_inputs = rng.choice([1, 1, 2, 3])
    names = ["x", "y", "z"][:n_inputs]
    inputs = {
        n: np.asarray(
            np.random.default_rng(rng.randrange(2**32)).uniform(-1.0, 1.0, rng.choice(SHAPES))
        )
        for n in names
    }
    if rng.random() < 0.2:
        # Exact zeros and ties: where prod, power, norm, max and the kinks are tested.
        for arr in inputs.values():
            if arr.size:
                flat = arr.reshape(-1)
                flat[rng.randrange(flat.size)] = rng.choice([0.0, 0.0, flat[0]])
        zeros = True
    else:
        zeros = False
    gen = Gen(rng, inputs)
    try:
        text, shape = gen.expr(rng.choice([1, 2, 3, 3, 4]))
    except (IndexError, ValueError):  # an index form NumPy refuses (arrays that do not broadcast)
        return None
    endpoint = rng.choice(["/grad", "/vjp", "/jvp", "/jacobian", "/hessian", "/hvp"])
    if endpoint in ("/grad", "/hessian", "/hvp") and shape != ():
        text = f"sum({rng.choice(['sin', 'tanh', 'square', 'exp'])}({text}))"
        shape = ()
    text = _control_flow(rng, text, names[0])
    graph = None
    if rng.random() < 0.2:
        graph, text = random_graph(rng, names, scalar=endpoint in ("/grad", "/hessian", "/hvp")), ""
    try:
        program = compile_graph(graph) if graph is not None else compile_source(text)
        value = program.run({k: v for k, v in inputs.items()})
    except Exception:  # noqa: BLE001 (the generator's slips: a program the language refuses)
        return None
    shape = np.shape(value)
    value = np.asarray(value)
    if rng.random() < 0.15:
        value32 = np.asarray(program.run({k: v.astype(np.float32) for k, v in inputs.items()}))
        if not np.all(np.isfinite(value32)):
            return None
        want_f32 = True
    else:
        want_f32 = False
    if (
        value.shape != shape
        or not np.all(np.isfinite(value))
        or value.size > 200
        or value.size == 0
    ):
        return None
    used = [n for n in names if n in program.free_names]
    if not used:
        return None
    body: dict[str, Any] = {"expression": text} if graph is None else {"graph": graph}
    body["inputs"] = {}
    options: dict[str, Any] = {"zeros": zeros}
    for n in names:
        if n not in used:
            continue
        arr = inputs[n]
        dtype = "float32" if want_f32 and rng.random() < 0.7 else "float64"
        const = len(used) > 1 and rng.random() < 0.15
        form = rng.choice(["list", "data", "b64"])
        if dtype == "float32":
            inputs[n] = arr.astype(np.float32).astype(np.float64)
        if form == "list" and dtype == "float64" and not const:
            body["inputs"][n] = arr.tolist()
        elif form == "b64":
            raw = inputs[n].astype(dtype).astype("<" + ("f8" if dtype == "float64" else "f4"))
            body["inputs"][n] = {
                "dtype": dtype,
                "shape": list(arr.shape),
                "b64": base64.b64encode(raw.tobytes()).decode(),
            }
        else:
            body["inputs"][n] = {"data": inputs[n].tolist(), "dtype": dtype}
        if const:
            body["inputs"][n]["requires_grad"] = False
        options.setdefault("dtypes", {})[n] = dtype
        options.setdefault("const", {})[n] = const
    diff = [n for n in used if not options["const"][n]]
    if rng.random() < 0.2 and len(diff) > 1:
        diff = diff[:1]
        body["wrt"] = diff
    if not diff:
        return None
    options["diff"] = diff
    consts = [n for n in used if options["const"][n]]
    if endpoint in ("/vjp", "/grad") and text and "\n" not in text and rng.random() < 0.2:
        # Several outputs: /grad sums the scalar outputs' gradients, /vjp takes a cotangent each.
        second = f"cos({text})" if endpoint == "/vjp" else f"sum(cos({text}))"
        text = f"{text}, {second}"
        body["expression"] = text
        options["multi"] = True
    if endpoint == "/vjp":
        shapes = [shape, shape if options.get("multi") else None]
        cts = [
            np.random.default_rng(rng.randrange(2**32)).uniform(-1, 1, sh).tolist()
            for sh in shapes
            if sh is not None
        ]
        body["cotangent"] = cts if options.get("multi") else cts[0]
    # A direction for a constant too, now and then (B8): it must not be differentiated.
    directed = diff + (consts if consts and rng.random() < 0.4 else [])
    options["const_direction"] = directed != diff
    if endpoint in ("/jvp", "/hvp"):
        body["tangents" if endpoint == "/jvp" else "vectors"] = {
            n: np.random.default_rng(rng.randrange(2**32)).uniform(-1, 1, inputs[n].shape).tolist()
            for n in directed
        }
    if endpoint == "/jacobian":
        body["mode"] = rng.choice(["auto", "forward", "reverse"])
    body["include_graph"] = rng.random() < 0.5
    if rng.random() < 0.3:
        body["encoding"] = "b64"
    if rng.random() < 0.1:
        body["check"] = True
    return FuzzCase(endpoint, body, text, inputs, shape, options, graph)


def decode(value: Any) -> np.ndarray:
    if isinstance(value, dict) and "b64" in value:
        dt = np.dtype("<f8" if value["dtype"] == "float64" else "<f4")
        return (
            np.frombuffer(base64.b64decode(value["b64"]), dtype=dt)
            .reshape(value["shape"])
            .astype(np.float64)
        )

    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return [conv(i) for i in v]
        if isinstance(v, str):
            return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
        return v

    return np.asarray(conv(value), dtype=np.float64)


def fd_reference(case: FuzzCase, h: float, shift: float = 0.0) -> dict[str, Any]:
    """The endpoint's derivative by central finite differences of the program, in float64,
    at the case's point with every differentiated input moved by ``shift``."""
    from engine.lang import compile_graph, compile_source

    program = compile_graph(case.graph) if case.graph else compile_source(case.text)
    base = {k: v.astype(np.float64) for k, v in case.inputs.items()}
    for name in case.options["diff"]:
        # Along a fixed direction of mixed signs and sizes, so that ties (x == y) break too.
        direction = np.random.default_rng(len(name)).uniform(0.5, 1.5, base[name].shape)
        signs = np.where(np.arange(base[name].size).reshape(base[name].shape) % 2, -1.0, 1.0)
        base[name] = base[name] + shift * direction * signs

    def f(point: dict[str, np.ndarray]) -> np.ndarray:
        out = program.run(point)
        if case.options.get("multi"):
            # Several outputs: the scalar whose gradient the endpoint gives.
            if case.endpoint == "/grad":
                return np.asarray(sum(np.asarray(o, dtype=np.float64) for o in out))
            cts = case.body["cotangent"]
            return np.asarray(
                sum(
                    np.sum(np.asarray(c) * np.asarray(o, dtype=np.float64))
                    for c, o in zip(cts, out, strict=True)
                )
            )
        return np.asarray(out, dtype=np.float64)

    def jac(name: str) -> np.ndarray:
        x = base[name]
        cols = []
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = h
            plus = dict(base)
            plus[name] = x + e.reshape(x.shape)
            minus = dict(base)
            minus[name] = x - e.reshape(x.shape)
            cols.append((f(plus) - f(minus)) / (2 * h))
        out_shape = () if case.options.get("multi") else case.out_shape
        j = np.stack(cols, axis=-1) if cols else np.zeros(out_shape + (0,))
        return j.reshape(out_shape + x.shape)

    diff = case.options["diff"]
    ep = case.endpoint
    if ep in ("/grad", "/jacobian", "/vjp", "/jvp"):
        jacs = {n: jac(n) for n in diff}
        if ep == "/grad":
            return {n: jacs[n].reshape(base[n].shape) for n in diff}
        if ep == "/jacobian":
            return jacs
        if ep == "/vjp" and case.options.get("multi"):
            return {n: jacs[n].reshape(base[n].shape) for n in diff}
        if ep == "/vjp":
            ct = np.asarray(case.body["cotangent"], dtype=np.float64)
            return {n: np.tensordot(ct, jacs[n], axes=ct.ndim) for n in diff}
        total = np.zeros(case.out_shape)
        for n in diff:
            t = np.asarray(case.body["tangents"][n], dtype=np.float64)
            total = total + np.tensordot(jacs[n], t, axes=t.ndim)
        return {"jvp": total}
    # Second order: Hessian blocks by central differences of the value.
    hess: dict[str, dict[str, np.ndarray]] = {}
    for a in diff:
        hess[a] = {}
        for b in diff:
            xa, xb = base[a], base[b]
            block = np.zeros((xa.size, xb.size))
            for i in range(xa.size):
                for j in range(xb.size):
                    vals = []
                    for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                        point = dict(base)
                        pa = point[a].copy().reshape(-1)
                        pa[i] += si * h
                        point[a] = pa.reshape(xa.shape)
                        pb = point[b].copy().reshape(-1)
                        pb[j] += sj * h
                        point[b] = pb.reshape(xb.shape)
                        vals.append(float(f(point)))
                    block[i, j] = (vals[0] - vals[1] - vals[2] + vals[3]) / (4 * h * h)
            hess[a][b] = block.reshape(xa.shape + xb.shape)
    if ep == "/hessian":
        return hess
    out = {}
    for a in diff:
        acc = np.zeros(base[a].shape)
        for b in diff:
            v = np.asarray(case.body["vectors"][b], dtype=np.float64)
            acc = acc + np.tensordot(hess[a][b], v, axes=v.ndim)
        out[a] = acc
    return out


def answer_parts(case: FuzzCase, answer: dict[str, Any]) -> dict[str, Any]:
    ep = case.endpoint
    key = {
        "/grad": "gradients",
        "/jacobian": "jacobian",
        "/vjp": "vjp",
        "/hvp": "hvp",
        "/hessian": "hessian",
    }.get(ep)
    if ep == "/jvp":
        return {"jvp": decode(answer["jvp"])}
    assert key is not None
    if ep == "/hessian":
        return {a: {b: decode(v) for b, v in row.items()} for a, row in answer[key].items()}
    return {n: decode(v) for n, v in answer[key].items()}


def _scale(want: Any) -> float:
    if isinstance(want, dict):
        return max((_scale(v) for v in want.values()), default=0.0)
    return float(np.max(np.abs(np.asarray(want)), initial=0.0))


def _spread(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: _spread(a[k], b[k]) for k in a}
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0))


def compare(got: Any, want: Any, tol: float, path: str = "", slack: Any = 0.0) -> list[str]:
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [
                f"{path}: names {sorted(got) if isinstance(got, dict) else got!r}, expected {sorted(want)}"
            ]
        out: list[str] = []
        for k in want:
            sub = slack[k] if isinstance(slack, dict) else slack
            out += compare(got[k], want[k], tol, f"{path}/{k}", sub)
        return out
    g, w = np.asarray(got), np.asarray(want)
    if g.shape != w.shape:
        if g.size == w.size == 0:
            return []
        return [f"{path}: shape {g.shape}, expected {w.shape}"]
    if not np.all(np.isfinite(g)):
        return [f"{path}: non-finite {g.ravel()[:6].tolist()}"]
    err = np.max(np.abs(g - w), initial=0.0)
    scale = 1.0 + np.max(np.abs(w), initial=0.0)
    if err > tol * scale + 4 * float(slack):
        return [f"{path}: max error {err:.3g} (scale {scale:.3g})"]
    return []


KINK_OPS = re.compile(
    r"abs|relu|sign|maximum|minimum|clip|max\(|min\(|norm|where|arctan2|//|%|floor_divide|remainder|\"max\"|\"min\""
)


def _kink_convention(case: FuzzCase) -> bool:
    """An input with an exact zero (or a tie) and an op with a kink: the derivative there is a
    convention (PyTorch's: relu'(0) = 0, abs'(0) = 0, ties shared), which differences cannot see."""
    if not case.options.get("zeros"):
        return False
    source = case.text or json.dumps(case.graph)
    return bool(KINK_OPS.search(source))


def answer_checks(case: FuzzCase, answer: dict[str, Any]) -> list[str]:
    """What an answer must say beside its numbers: dtypes, warnings, graph, check."""
    bad: list[str] = []
    if case.body.get("encoding") == "b64":
        bad += _dtype_checks(case, answer)
    if case.options.get("multi") and case.endpoint == "/grad" and not answer.get("warnings"):
        bad.append("several scalar outputs summed without a warning (B12)")
    graph = answer.get("graph")
    if case.body.get("include_graph") and isinstance(graph, dict) and not graph.get("truncated"):
        ids = {n["id"] for n in graph["nodes"]}
        if not set(graph["outputs"]) <= ids:
            bad.append(f"graph outputs {graph['outputs']} name no node (B9)")
        traced = [n for n in graph["nodes"] if n["requires_grad"]]
        if not traced:
            bad.append("graph: no node requires grad (B9)")
        if any(not n["is_leaf"] and n["grad_fn"] is None for n in traced):
            bad.append("graph: a traced non-leaf node has no grad_fn (B9)")
    return bad


def _dtype_checks(case: FuzzCase, answer: dict[str, Any]) -> list[str]:
    """README's rule: a derivative w.r.t. x is in x's dtype; a Hessian block in result_type."""
    dtypes = case.options["dtypes"]
    key = {"/grad": "gradients", "/jacobian": "jacobian", "/vjp": "vjp", "/hvp": "hvp"}.get(
        case.endpoint
    )
    bad = []
    if key is not None:
        for name, arr in answer.get(key, {}).items():
            if isinstance(arr, dict) and arr.get("dtype") != dtypes.get(name):
                bad.append(
                    f"{key}[{name}] is {arr.get('dtype')}, input is {dtypes.get(name)} (B10)"
                )
    if case.endpoint == "/hessian":
        for a, row in answer.get("hessian", {}).items():
            for b, arr in row.items():
                want = str(np.result_type(np.dtype(dtypes[a]), np.dtype(dtypes[b])))
                if isinstance(arr, dict) and arr.get("dtype") != want:
                    bad.append(f"hessian[{a}][{b}] is {arr.get('dtype')}, expected {want} (B10)")
    return bad


def fuzz_one(
    port: int, conn: list[http.client.HTTPConnection], rng: random.Random
) -> dict[str, Any] | None:
    case = None
    for _ in range(50):
        case = random_case(rng)
        if case is not None:
            break
    if case is None:
        return None
    body = doc(case.body)
    # uvicorn closes a connection idle for 5 s: a fresh one after the reference's work.
    conn[0].close()
    conn[0] = http.client.HTTPConnection(HOST, port, timeout=30)
    t0 = time.monotonic()
    try:
        status, ctype, data = send(conn[0], "POST", case.endpoint, body, {})
    except (OSError, http.client.HTTPException) as exc:
        conn[0].close()
        conn[0] = http.client.HTTPConnection(HOST, port, timeout=30)
        status, ctype, data = 0, "", str(exc).encode()
    seconds = time.monotonic() - t0
    record: dict[str, Any] = {
        "endpoint": case.endpoint,
        "status": status,
        "seconds": round(seconds, 3),
        "failures": [],
    }
    bad: list[str] = record["failures"]
    if status != 200:
        if status >= 500 or status == 0 or not ctype.startswith(PROBLEM):
            bad.append(f"status {status} {ctype}")
        elif status in (422, 413) and not (status == 422 and case.options["const_direction"]):
            bad.append(f"status {status} on a valid program")
        record["answer"] = data[:400].decode("utf-8", "replace")
    else:
        try:
            answer = strict_json(data)
        except ValueError as exc:
            bad.append(f"not strict JSON: {exc}")
            answer = None
        if answer is not None:
            f32 = any(d == "float32" for d in case.options["dtypes"].values())
            second = case.endpoint in ("/hessian", "/hvp")
            h = 2e-4 if second else 1e-6
            tol = (3e-3 if f32 else 1e-4) if second else (2e-3 if f32 else 1e-5)
            try:
                want = fd_reference(case, h)
                # A kink (relu at 0, a branch) near the point: the derivative just left of it
                # and just right of it differ. Such points are skipped; elsewhere their
                # difference (the derivative's own change) is slack for the comparison.
                left, right = fd_reference(case, h, -3 * h), fd_reference(case, h, 3 * h)
                kink = compare(left, right, tol * 10)
                want2 = right
                got = answer_parts(case, answer)
            except Exception as exc:  # noqa: BLE001
                bad.append(f"reference or answer unreadable: {type(exc).__name__}: {exc}")
                kink, got, want = [], None, None
            if _kink_convention(case):
                kink = ["an exact zero or tie fed to an op with a kink: its convention decides"]
            if not kink and got is not None:
                bad += compare(got, want, tol, slack=_spread(want, want2))
                if not case.options.get("multi"):
                    value = decode(answer["value"])
                    if value.shape != case.out_shape and value.size != 0:
                        bad.append(f"value shape {value.shape}, expected {case.out_shape}")
                check = answer.get("check")
                if not bad and isinstance(check, dict) and not case.options.get("zeros"):
                    # Our differences agree with the answer: the service's own should too.
                    err = check.get("max_abs_error")
                    if not isinstance(err, int | float) or err > 1e-2 * (1 + _scale(want)):
                        bad.append(f"the answer is right but its check reports {check}")
            bad += answer_checks(case, answer)
            record["kink_skipped"] = bool(kink)
            if bad:
                record["answer"] = data[:600].decode("utf-8", "replace")
    if bad:
        record["request"] = body.decode()[:2000]
    return record


def fuzz(port: int, seconds: float, seed: int) -> list[dict[str, Any]]:
    # Programs evaluated here for reference may overflow: such points are skipped, silently.
    warnings.simplefilter("ignore", RuntimeWarning)
    rng = random.Random(seed)
    conn = [http.client.HTTPConnection(HOST, port, timeout=30)]
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        record = fuzz_one(port, conn, rng)
        if record is not None:
            records.append(record)
    conn[0].close()
    return records


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=300.0, help="time for the fuzz (after the hostile probes)"
    )
    parser.add_argument(
        "--only",
        default="hostile,scale,slow,fuzz",
        help="classes to run: nest,memory,malformed,raw,scale,slow,fuzz (hostile = the first four)",
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--slow-seconds", type=float, default=40.0, help="how long slow clients hold on"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="probe a server already on this port (no server started)",
    )
    parser.add_argument("--match", default="", help="only probes whose name contains this")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if "hostile" in only:
        only |= {"nest", "memory", "malformed", "raw"}
    OUT.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    proc = None if args.port else start_server(port)
    if proc is not None:
        wait_ready(port, proc)
        root = proc.pid
    else:
        root = int(
            subprocess.run(
                [
                    "sh",
                    "-c",
                    f"ss -ltnpH 'sport = :{port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2",
                ],
                capture_output=True,
                text=True,
            ).stdout.strip()
            or 0
        )
    monitor = Monitor(port, root)
    monitor.start()
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "env": SERVER_ENV}
    failures: list[str] = []
    results: list[Result] = []
    try:
        time.sleep(1.0)
        baseline = rss(root)[0]
        report["baseline_server_mb"] = round(baseline)
        slow_thread = None
        slow_out: list[list[dict[str, Any]]] = []
        if "slow" in only:
            slow_thread = threading.Thread(
                target=lambda: slow_out.append(slow_clients(port, args.slow_seconds)), daemon=True
            )
            slow_thread.start()
        generators: list[Iterator[Probe]] = []
        if "nest" in only:
            generators.append(nest_probes())
        if "memory" in only:
            generators.append(memory_probes())
        if "malformed" in only:
            generators.append(malformed_probes())
        for gen in generators:
            for probe in gen:
                if args.match and args.match not in probe.name:
                    continue
                result = fire(port, monitor, probe, baseline)
                results.append(result)
                if result.failures:
                    line = f"[{result.cls}/{result.item}] {result.name}: {'; '.join(result.failures)} -> {result.status} {result.detail[:160]!r}"
                    failures.append(line)
                    print(line, flush=True)
                if proc is not None and proc.poll() is not None:
                    failures.append("the server exited")
                    raise SystemExit("the server exited")
        if "raw" in only:
            for name, item, data in raw_probes(port):
                if args.match and args.match not in name:
                    continue
                t0 = time.monotonic()
                try:
                    out, secs = raw_http(port, data, timeout=15)
                except OSError as exc:
                    out, secs = str(exc).encode(), time.monotonic() - t0
                status_line = out.split(b"\r\n", 1)[0].decode("latin-1")
                w = monitor.window(t0, time.monotonic())
                bad = []
                m = re.match(r"HTTP/1\.[01] (\d+)", status_line)
                status = int(m.group(1)) if m else 0
                if status >= 500:
                    bad.append(f"status {status}")
                if (
                    status >= 400
                    and b"problem+json" not in out.split(b"\r\n\r\n")[0]
                    and status not in (400,)
                ):
                    bad.append("error not problem+json")
                if w["health_max_s"] > HEALTH_BOUND_S:
                    bad.append("/healthz blocked")
                results.append(
                    Result(
                        "raw",
                        name,
                        item,
                        status,
                        "",
                        round(secs, 3),
                        len(data),
                        out[:300].decode("latin-1"),
                        w["health_max_s"],
                        int(w["health_failures"]),
                        w["server_mb"],
                        w["worker_mb"],
                        True,
                        bad,
                    )
                )
                if bad:
                    line = f"[raw/{item}] {name}: {'; '.join(bad)} -> {status_line!r}"
                    failures.append(line)
                    print(line, flush=True)
        if "scale" in only:
            for result in scale_probe(port, monitor, baseline, time.monotonic() + 900):
                if args.match and args.match not in result.name:
                    continue
                results.append(result)
                if result.failures:
                    line = f"[scale/A1] {result.name}: {'; '.join(result.failures)} -> {result.status} {result.detail[:120]!r}"
                    failures.append(line)
                    print(line, flush=True)
        if "slow" in only:
            report["never_read"] = never_read(port, monitor, root, 6, 20.0)
            if (
                report["never_read"]["server_mb_peak"] - report["never_read"]["server_mb_before"]
                > SERVER_RSS_BUDGET_MB
            ):
                failures.append(
                    f"[slow/A3] never-read answers pin server memory: {report['never_read']}"
                )
            report["concurrent_big_bodies"] = concurrent_big_bodies(port, root, 6)
            cb = report["concurrent_big_bodies"]
            if cb["server_mb_peak"] - cb["server_mb_before"] > 2 * SERVER_RSS_BUDGET_MB or any(
                s in (0, 500, 502) for s in cb["statuses"]
            ):
                failures.append(f"[slow/A4] concurrent large bodies: {cb}")
            if slow_thread is not None:
                slow_thread.join(args.slow_seconds + 60)
                report["slow_clients"] = slow_out[0] if slow_out else []
                for item in report["slow_clients"]:
                    if item["closed_after_s"] is None:
                        failures.append(
                            f"[slow/{item['item']}] {item['name']}: still open after {args.slow_seconds} s"
                        )
            for line in failures:
                if line.startswith("[slow"):
                    print(line, flush=True)
        if "fuzz" in only:
            records = fuzz(port, args.seconds, args.seed)
            report["fuzz"] = {
                "requests": len(records),
                "by_endpoint": Counter(r["endpoint"] for r in records),
                "by_status": Counter(str(r["status"]) for r in records),
                "kink_skipped": sum(1 for r in records if r.get("kink_skipped")),
                "failures": [r for r in records if r["failures"]],
            }
            for r in report["fuzz"]["failures"]:
                line = f"[fuzz] {r['endpoint']}: {'; '.join(r['failures'])} :: {r.get('request', '')[:300]}"
                failures.append(line)
                print(line, flush=True)
    finally:
        monitor.halt.set()
        if proc is not None:
            stop_server(proc)
    by_class = Counter(r.cls for r in results)
    failed_by_class = Counter(r.cls for r in results if r.failures)
    report["probes"] = {
        "total": len(results),
        "by_class": by_class,
        "failed_by_class": failed_by_class,
    }
    report["results"] = [asdict(r) for r in results]
    report["failures"] = failures
    # One file per run (several runs may go side by side); probe.json is the latest.
    text = json.dumps(report, indent=1, default=str)
    (OUT / f"probe-{'-'.join(sorted(only))}-{time.strftime('%H%M%S')}.json").write_text(text)
    (OUT / "probe.json").write_text(text)
    print(
        json.dumps(
            {
                "probes": report["probes"],
                "fuzz": {k: v for k, v in report.get("fuzz", {}).items() if k != "failures"},
                "failures": len(failures),
            },
            default=str,
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
