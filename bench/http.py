"""The service over HTTP (issue 6 item 3): rates, latencies and the service's own phase times.

    .venv/bin/python -m bench.http [--quick]
    .venv/bin/python -m bench.http --w1 --rounds 3                # W1's rates only
    .venv/bin/python -m bench.http --w1 --rounds 4 --ab /tmp/A    # A (/tmp/A's app/) vs this tree
    .venv/bin/python -m bench.http --w1 --env-a K=V --env-b K=V   # one tree, two environments
    .venv/bin/python -m bench.http --large --rounds 5 [--ab /tmp/A]  # W3 n=10^5 json and b64 only

Starts ``uvicorn app.main:app`` as ``make serve`` does (two processes, default settings) on a
loopback port, checks every workload's answer against our engine in process (1e-8), then
measures. Load comes from wrk when Debian's wrk is installed, else from a bounded asyncio
httpx client.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import bodies, loadgen, machine, report
from bench.check import DisagreementError, compare
from bench.entries import flat_numpy
from bench.server import Server, cpu_seconds
from bench.workloads import Case, all_cases, select

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"


def _post(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


def _phases(docs: list[dict[str, Any]]) -> dict[str, float]:
    """Median of each ``timing_ms`` phase over the answers."""
    keys = dict.fromkeys(k for d in docs for k in d.get("timing_ms", {}))
    return {
        k: statistics.median(
            float(d["timing_ms"][k])
            for d in docs
            if isinstance(d.get("timing_ms", {}).get(k), int | float)
        )
        for k in keys
    }


def sample(
    client: httpx.Client, path: str, body: bytes, count: int, budget_s: float
) -> dict[str, Any]:
    """Sequential requests (one connection): client-side p50/p99 and the service's phases."""
    lat: list[float] = []
    docs: list[dict[str, Any]] = []
    deadline = time.perf_counter() + budget_s
    while len(lat) < count and (len(lat) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        r = _post(client, path, body)
        lat.append(time.perf_counter() - start)
        if r.status_code != 200:
            raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")
        docs.append(r.json())
    ms = np.array(lat) * 1e3
    return {
        "requests": len(lat),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "body_bytes": len(body),
        "timing_ms": _phases(docs),
    }


def _reference(case: Case) -> list[np.ndarray]:
    from bench import fw_ours

    entry = next(e for e in fw_ours.entries(case) if e.gradient is not None)
    assert entry.gradient is not None
    return flat_numpy(entry.gradient())


def check_and_time_workloads(
    client: httpx.Client, cases: list[Case], quick: bool
) -> list[dict[str, Any]]:
    """Every workload through HTTP: its answer against ours in process, then its latency."""
    rows = []
    for case in cases:
        path, body = bodies.request(case, "b64")
        raw = bodies.encode(body)
        r = _post(client, path, raw)
        if r.status_code != 200:
            raise SystemExit(f"[http] {case.key}: {path} answered {r.status_code}: {r.text[:500]}")
        try:
            err = compare(case.key, "HTTP", _reference(case), bodies.answer(case, r.json()))
        except DisagreementError as exc:
            raise SystemExit(f"[http] AGREEMENT CHECK FAILED, no times reported:\n  {exc}") from exc
        stats = sample(client, path, raw, 5 if quick else 20, 1.0 if quick else 4.0)
        rows.append({"case": case.key, "path": path, "agreement": err.max_rel_error, **stats})
        print(f"[http] {case.key:<12} {path:<10} p50 {stats['p50_ms']:.3g} ms", file=sys.stderr)
    return rows


def throughput(url: str, quick: bool) -> list[dict[str, Any]]:
    """Rate and latency of /healthz, W1 and W2 (n=4) at 1 and 16 connections."""
    if not loadgen.have_wrk():
        print(
            "[http] WARNING: wrk is not installed: the rates below are the httpx client's, "
            "which is itself the bottleneck at 16 connections (`make bench` installs wrk)",
            file=sys.stderr,
        )
    cases = {c.key: c for c in all_cases()}
    specs = [loadgen.Spec("healthz", "GET", "/healthz")]
    for key in ("W1", "W2 n=4"):
        path, body = bodies.request(cases[key], "json")
        specs.append(
            loadgen.Spec(key.replace(" ", "_").replace("=", ""), "POST", path, bodies.encode(body))
        )
    rows = []
    for spec in specs:
        for conns in (1, 16):
            res = loadgen.run_load(url, [spec], conns, 3.0 if quick else 10.0, timeout_s=10.0)
            bad = {s: n for s, n in res.statuses.get(spec.tag, {}).items() if s != "200"}
            rows.append(
                {"name": f"{spec.method} {spec.path} ({spec.tag})", **res.as_dict(), "non_200": bad}
            )
            print(
                f"[http] {spec.tag:<8} c={conns:<3} {res.rps:8.0f} req/s  p50 "
                f"{res.p50_ms:.3g} ms  p99 {res.p99_ms:.3g} ms  non-200 {bad}",
                file=sys.stderr,
            )
    return rows


def _w3_small() -> Case:
    case = select("W3")[0]
    return Case(
        "W3 n=10^5", "W3", case.title, case.answer, 10**5, {"x": case.inputs["x"][: 10**5].copy()}
    )


def large(client: httpx.Client, quick: bool) -> list[dict[str, Any]]:
    """W3 at n=10^5: latency with JSON lists and with b64, both ways."""
    small = _w3_small()
    rows = []
    for enc in ("json", "b64"):
        path, body = bodies.request(small, enc)
        raw = bodies.encode(body)
        r = _post(client, path, raw)
        compare(small.key, f"HTTP {enc}", _reference(small), bodies.answer(small, r.json()))
        stats = sample(client, path, raw, 10 if quick else 40, 3.0 if quick else 10.0)
        rows.append({"name": f"W3 n=10^5 ({enc})", **stats})
        print(
            f"[http] W3 n=10^5 {enc:<4} p50 {stats['p50_ms']:.3g} ms p99 "
            f"{stats['p99_ms']:.3g} ms {stats['timing_ms']}",
            file=sys.stderr,
        )
    return rows


def healthz_under_load(url: str, quick: bool) -> dict[str, Any]:
    """GET /healthz p50/p99 while 4 connections keep sending W3 n=10^5 (JSON lists)."""
    small = _w3_small()
    path, body = bodies.request(small, "json")
    spec = loadgen.Spec("big", "POST", path, bodies.encode(body))
    duration = 4.0 if quick else 10.0
    holder: dict[str, Any] = {}
    bg = threading.Thread(
        target=lambda: holder.update(res=loadgen.run_load(url, [spec], 4, duration, timeout_s=30.0))
    )
    bg.start()
    time.sleep(1.0)  # let the large requests pile up first
    lat: list[float] = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        while bg.is_alive() and len(lat) < 5000:
            start = time.perf_counter()
            client.get("/healthz").raise_for_status()
            lat.append(time.perf_counter() - start)
            time.sleep(0.01)
    bg.join()
    ms = np.array(lat) * 1e3
    res: loadgen.LoadResult = holder["res"]
    out = {
        "samples": len(lat),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "background": res.as_dict(),
    }
    print(
        f"[http] /healthz under load: p50 {out['p50_ms']:.3g} ms p99 {out['p99_ms']:.3g} ms "
        f"(background {res.rps:.1f} req/s)",
        file=sys.stderr,
    )
    return out


def _w1_spec() -> loadgen.Spec:
    case = next(c for c in all_cases() if c.key == "W1")
    path, body = bodies.request(case, "json")
    return loadgen.Spec("W1", "POST", path, bodies.encode(body))


def _w1_rates(srv: Server, seconds: float) -> dict[str, float]:
    spec = _w1_spec()
    out: dict[str, float] = {}
    for conns in (16, 1):
        cpu = cpu_seconds(srv.pid)
        res = loadgen.run_load(srv.url, [spec], conns, seconds, timeout_s=10.0)
        # The server's CPU per request (its processes, pool included): steadier than the
        # rate on a shared machine, where the load generator takes its share too.
        out[f"c{conns}_cpu_us"] = (cpu_seconds(srv.pid) - cpu) / max(1, res.requests) * 1e6
        bad = {s: n for s, n in res.statuses.get(spec.tag, {}).items() if s != "200"}
        if bad or res.socket_errors:
            raise SystemExit(f"[http] W1 c={conns}: non-200 {bad}, errors {res.socket_errors}")
        out[f"c{conns}_rps"], out[f"c{conns}_p50_ms"] = res.rps, res.p50_ms
        out[f"c{conns}_p99_ms"] = res.p99_ms
    return out


def large_rounds(args: argparse.Namespace) -> None:
    """W3 n=10^5 (JSON lists and b64) only, as ``large`` measures it, one fresh server per
    run; with --ab or --env-*, A and B interleave within each round. Prints every run, then
    the median of each side's p50s."""
    sides = _sides(args)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in sides}
    for r in range(args.rounds):
        for label, repo, env in sides if r % 2 == 0 else sides[::-1]:
            with (
                Server(OUT_DIR / f"server-large-{label}.log", env=env, repo=repo) as srv,
                httpx.Client(base_url=srv.url, timeout=60.0) as client,
            ):
                rows = large(client, args.quick)
            res = {row["name"]: row["p50_ms"] for row in rows}
            runs[label].append(res)
            print(
                f"[large] round {r} {label}: "
                + ", ".join(f"{k} p50 {v:.3g} ms" for k, v in res.items()),
                file=sys.stderr,
            )
    for label, got in runs.items():
        print(
            f"[large] median of {len(got)} {label}: "
            + ", ".join(
                f"{k} p50 {statistics.median(g[k] for g in got):.3g} ms "
                f"(min {min(g[k] for g in got):.3g})"
                for k in got[0]
            )
        )


def _sides(args: argparse.Namespace) -> list[tuple[str, Path, dict[str, str]]]:
    """(label, tree, environment) of each side: B is this tree; A (--ab DIR's tree, or this
    one with --env-a) only when asked for a comparison."""
    sides = [("B", REPO_DIR, _pairs(args.env_b))]
    if args.ab or args.env_a or args.env_b:
        a_repo = Path(args.ab).resolve() if args.ab else REPO_DIR
        sides.insert(0, ("A", a_repo, _pairs(args.env_a)))
    return sides


def _pairs(items: list[str] | None) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items or ())


def w1_rounds(args: argparse.Namespace) -> None:
    """W1 at 16 and 1 connections, one fresh server per run; with --ab or --env-*, A and B
    interleave within each round. Prints every run, then the best of each side."""
    sides = _sides(args)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in sides}
    for r in range(args.rounds):
        for label, repo, env in sides if r % 2 == 0 else sides[::-1]:
            with Server(OUT_DIR / f"server-w1-{label}.log", env=env, repo=repo) as srv:
                res = _w1_rates(srv, args.seconds)
            runs[label].append(res)
            print(
                f"[w1] round {r} {label}: 16 conns {res['c16_rps']:,.0f} req/s p50 "
                f"{res['c16_p50_ms']:.3g} p99 {res['c16_p99_ms']:.3g} ms, "
                f"{res['c16_cpu_us']:.0f} us CPU/req | 1 conn "
                f"{res['c1_rps']:,.0f} req/s p50 {res['c1_p50_ms']:.3g} ms, "
                f"{res['c1_cpu_us']:.0f} us CPU/req",
                file=sys.stderr,
            )
    for label, got in runs.items():
        print(
            f"[w1] best of {len(got)} {label}: 16 conns "
            f"{max(g['c16_rps'] for g in got):,.0f} req/s (p99 "
            f"{min(g['c16_p99_ms'] for g in got):.3g} ms), CPU/req min "
            f"{min(g['c16_cpu_us'] for g in got):.0f} median "
            f"{statistics.median(g['c16_cpu_us'] for g in got):.0f} us | 1 conn p50 "
            f"{min(g['c1_p50_ms'] for g in got):.3g} ms, "
            f"{max(g['c1_rps'] for g in got):,.0f} req/s"
        )


def main(argv: list[str] | None = None) -> None:
    """Start the service, check, measure, write bench/out/http.json and RESULTS.md."""
    p = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter runs")
    p.add_argument("--only", help="workloads for the per-workload table (default: all)")
    p.add_argument("--no-report", action="store_true", help="do not rewrite RESULTS.md")
    p.add_argument(
        "--loadgen",
        choices=loadgen.TOOLS,
        default="auto",
        help="load generator: wrk if installed (auto), or force one",
    )
    p.add_argument(
        "--w1",
        action="store_true",
        help="only W1 at 16 and 1 connections, fresh server per run (no files written)",
    )
    p.add_argument(
        "--large",
        action="store_true",
        help="only W3 n=10^5 with JSON lists and b64, fresh server per run (no files written)",
    )
    p.add_argument("--rounds", type=int, default=3, help="--w1, --large: runs per side")
    p.add_argument("--seconds", type=float, default=8.0, help="--w1: seconds per load run")
    p.add_argument(
        "--ab",
        metavar="DIR",
        help="--w1, --large: side A serves DIR's app/ (a copy of an "
        "older app/, with engine/ linked to this tree's), side B this tree",
    )
    p.add_argument("--env-a", action="append", metavar="K=V", help="--w1/--large: env, side A")
    p.add_argument("--env-b", action="append", metavar="K=V", help="--w1/--large: env, side B")
    args = p.parse_args(argv)
    loadgen.tool = args.loadgen
    if args.w1:
        OUT_DIR.mkdir(exist_ok=True)
        w1_rounds(args)
        return
    if args.large:
        OUT_DIR.mkdir(exist_ok=True)
        large_rounds(args)
        return
    started = time.time()
    OUT_DIR.mkdir(exist_ok=True)
    with (
        Server(OUT_DIR / "server-http.log") as srv,
        httpx.Client(base_url=srv.url, timeout=60.0) as client,
    ):
        doc: dict[str, Any] = {
            "meta": {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "quick": args.quick,
                "commit": machine.git_commit(),
                "machine": machine.describe(),
                "load_tool": "wrk" if loadgen.have_wrk() else "httpx",
                "server": "uvicorn app.main:app as make serve runs it (2 processes), "
                "default settings",
            },
            "workloads": check_and_time_workloads(client, select(args.only), args.quick),
            "large": large(client, args.quick),
        }
        doc["throughput"] = throughput(srv.url, args.quick)
        doc["healthz_under_load"] = healthz_under_load(srv.url, args.quick)
    doc["meta"]["seconds"] = round(time.time() - started, 1)
    (OUT_DIR / "http.json").write_text(json.dumps(doc, indent=1))
    if not args.no_report:
        print(f"[http] wrote {report.write_all(BENCH_DIR)}", file=sys.stderr)


if __name__ == "__main__":
    main()
