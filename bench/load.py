"""Issue 7's bounded load test: 60 s at 64 connections of mixed requests against real uvicorn.

    .venv/bin/python -m bench.load [--duration 60] [--connections 64] [--quick]

Passes when no request got an answer other than its kind's expected statuses, no socket
error or timeout happened, the service still answers a worked example correctly afterwards,
and the server's memory (uvicorn and its pool, VmRSS) after the run is within 10% of its
memory after a warm-up. Loopback only; it stops by itself. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import bodies, loadgen, report
from bench.server import Server, tree_rss_kib
from bench.workloads import Case, all_cases

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
WORKED = BENCH_DIR.parent.parent / "shared" / "examples" / "worked.json"
MEMORY_TOLERANCE = 0.10


def _worked_path() -> Path:
    for candidate in (WORKED, Path("/work/shared/examples/worked.json")):
        if candidate.exists():
            return candidate
    raise SystemExit("worked examples not found (shared/examples/worked.json)")


def worked_specs() -> tuple[list[loadgen.Spec], dict[str, list[str]]]:
    """Every worked example, expecting its documented status."""
    specs, expected = [], {}
    for ex in json.loads(_worked_path().read_text()):
        tag = f"worked-{ex['name']}"
        method, path = ex["endpoint"].split(" ", 1)
        specs.append(loadgen.Spec(tag, method, path, bodies.encode(ex["request"]), weight=2))
        expected[tag] = [str(ex["response"].get("status", 200))]
    return specs, expected


def heavy_specs() -> tuple[list[loadgen.Spec], dict[str, list[str]]]:
    """A 10^5-element gradient (JSON lists) and a 64x64 Jacobian."""
    cases = {c.key: c for c in all_cases()}
    w3 = cases["W3 n=10^6"]
    small = Case("W3 n=10^5", "W3", w3.title, w3.answer, 10**5, {"x": w3.inputs["x"][: 10**5]})
    g_path, g_body = bodies.request(small, "json")
    j_path, j_body = bodies.request(cases["W6 n=64"], "json")
    specs = [
        loadgen.Spec("grad-1e5", "POST", g_path, bodies.encode(g_body)),
        loadgen.Spec("jacobian-64", "POST", j_path, bodies.encode(j_body)),
    ]
    return specs, {"grad-1e5": ["200"], "jacobian-64": ["200"]}


def bad_specs() -> tuple[list[loadgen.Spec], dict[str, list[str]]]:
    """Requests the service must refuse with a 4xx problem, never a 5xx."""
    x = {"x": [1.0, 2.0, 3.0]}
    big = bodies.b64(np.zeros(10**5))

    def js(body: Any) -> bytes:
        return bodies.encode(body)

    specs = [
        loadgen.Spec("bad-syntax", "POST", "/grad", js({"expression": "2 * (x", "inputs": x})),
        loadgen.Spec("bad-name", "POST", "/grad", js({"expression": "foo(x)", "inputs": x})),
        loadgen.Spec("bad-nonscalar", "POST", "/grad", js({"expression": "x * 2", "inputs": x})),
        loadgen.Spec("bad-json", "POST", "/grad", b'{"expression": "sum(x)", "inputs": '),
        loadgen.Spec(
            "bad-ctype",
            "POST",
            "/grad",
            js({"expression": "sum(x)", "inputs": x}),
            content_type="text/plain",
        ),
        loadgen.Spec(
            "bad-huge-outer",
            "POST",
            "/grad",
            js({"expression": "sum(outer(x, x))", "inputs": {"x": big}}),
        ),
        loadgen.Spec("bad-path", "POST", "/nope", js({"expression": "sum(x)", "inputs": x})),
    ]
    expected = {
        "bad-syntax": ["422"],
        "bad-name": ["422"],
        "bad-nonscalar": ["422"],
        "bad-json": ["400", "422"],
        "bad-ctype": ["415", "422"],
        "bad-huge-outer": ["413"],
        "bad-path": ["404"],
    }
    return specs, expected


def mix() -> tuple[list[loadgen.Spec], dict[str, list[str]]]:
    """The whole mix and the statuses each kind may get."""
    specs: list[loadgen.Spec] = []
    expected: dict[str, list[str]] = {}
    for part in (worked_specs(), heavy_specs(), bad_specs()):
        specs += part[0]
        expected.update(part[1])
    return specs, expected


def unexpected(result: loadgen.LoadResult, expected: dict[str, list[str]]) -> dict[str, Any]:
    """Statuses outside each kind's expected set, unknown tags, and socket errors."""
    out: dict[str, Any] = {}
    for tag, counts in result.statuses.items():
        bad = {s: n for s, n in counts.items() if s not in expected.get(tag, [])}
        if bad:
            out[tag] = bad
    if result.socket_errors:
        out["socket errors"] = result.socket_errors
    return out


def still_correct(url: str) -> bool:
    """The first worked example still gives its documented answer."""
    ex = json.loads(_worked_path().read_text())[0]
    method, path = ex["endpoint"].split(" ", 1)
    r = httpx.request(method, url + path, json=ex["request"], timeout=10)
    if r.status_code != 200:
        return False
    got = np.asarray(r.json()["gradients"]["x"])
    return bool(np.allclose(got, ex["response"]["gradients"]["x"], rtol=1e-6))


def _by_process(root: int, before: dict[int, int], after: dict[int, int]) -> list[dict[str, Any]]:
    """Each process's RSS before and after (a pool worker replaced mid-run shows as two rows)."""
    rows = []
    for pid in sorted(set(before) | set(after)):
        role = "uvicorn" if pid == root else "pool/forkserver"
        rows.append(
            {"pid": pid, "role": role, "before_kib": before.get(pid), "after_kib": after.get(pid)}
        )
    return rows


def _tree_kib(pid: int) -> tuple[int, dict[int, int]]:
    tree = tree_rss_kib(pid)
    return sum(tree.values()), tree


def main(argv: list[str] | None = None) -> None:
    """Warm up, measure memory, run the load, measure again, judge, write bench/out/load.json."""
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of warm-up load")
    p.add_argument("--quick", action="store_true", help="10 s of load after 5 s of warm-up")
    p.add_argument("--no-report", action="store_true", help="do not rewrite RESULTS.md")
    p.add_argument(
        "--loadgen",
        choices=loadgen.TOOLS,
        default="auto",
        help="load generator: wrk if installed (auto), or force one",
    )
    args = p.parse_args(argv)
    loadgen.tool = args.loadgen
    if args.quick:
        args.duration, args.warmup = 10.0, 5.0
    specs, expected = mix()
    OUT_DIR.mkdir(exist_ok=True)
    with Server(OUT_DIR / "server-load.log") as srv:
        loadgen.run_load(srv.url, specs, args.connections, args.warmup)
        time.sleep(2.0)
        before, tree_before = _tree_kib(srv.pid)
        print(
            f"[load] after warm-up: {before / 1024:.0f} MiB in {len(tree_before)} processes",
            file=sys.stderr,
        )
        result = loadgen.run_load(srv.url, specs, args.connections, args.duration)
        time.sleep(2.0)
        after, tree_after = _tree_kib(srv.pid)
        healthy = httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
        correct = still_correct(srv.url)
    change = (after - before) / before
    bad = unexpected(result, expected)
    passed = not bad and healthy and correct and abs(change) <= MEMORY_TOLERANCE
    doc = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m bench.load " + " ".join(argv or sys.argv[1:]),
            "server": "uvicorn app.main:app, default settings",
        },
        "result": result.as_dict(),
        "expected": expected,
        "unexpected": bad,
        "healthy_after": healthy,
        "correct_after": correct,
        "memory": {
            "after_warmup_kib": before,
            "after_run_kib": after,
            "change_pct": 100 * change,
            "processes_before": len(tree_before),
            "processes_after": len(tree_after),
            "by_process": _by_process(srv.pid, tree_before, tree_after),
        },
        "passed": passed,
    }
    (OUT_DIR / "load.json").write_text(json.dumps(doc, indent=1))
    print(
        f"[load] {result.requests} requests, {result.rps:.0f} req/s, p50 {result.p50_ms:.3g} "
        f"ms, p99 {result.p99_ms:.3g} ms; unexpected {bad or 'none'}; memory "
        f"{before / 1024:.0f} -> {after / 1024:.0f} MiB ({100 * change:+.1f}%); healthy "
        f"{healthy}, correct {correct}: {'PASSED' if passed else 'FAILED'}",
        file=sys.stderr,
    )
    if not args.no_report:
        report.write_all(BENCH_DIR)
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
