"""The HTTP and load-test sections of RESULTS.md."""

from __future__ import annotations

from typing import Any

from bench.report import table


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.3g} ms"


def _phases(t: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in t.items()) or "–"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def http_targets(doc: dict[str, Any]) -> list[list[str]]:
    """Issue 6's HTTP targets against what this run measured."""
    rows = []
    tp = {(r["name"], r["connections"]): r for r in doc.get("throughput", [])}
    w1 = next((name for name, _ in tp if "W1" in name), None)
    if w1:
        r16, r1 = tp.get((w1, 16)), tp.get((w1, 1))
        if r16:
            rows.append(
                [
                    "W1 at 16 connections: ≥ 3,000 req/s, p99 < 20 ms",
                    f"{r16['rps']:,.0f} req/s, p99 {_ms(r16['p99_ms'])}",
                    _met(r16["rps"] >= 3000 and r16["p99_ms"] < 20),
                ]
            )
        if r1:
            rows.append(
                ["W1 at 1 connection: p50 < 1 ms", _ms(r1["p50_ms"]), _met(r1["p50_ms"] < 1.0)]
            )
    for r in doc.get("large", []):
        limit = 45.0 if "json" in r["name"] else 8.0
        rows.append(
            [f"{r['name']}: p50 < {limit:g} ms", _ms(r["p50_ms"]), _met(r["p50_ms"] < limit)]
        )
    h = doc.get("healthz_under_load")
    if h:
        rows.append(
            [
                "/healthz p50 < 5 ms while large requests run",
                _ms(h["p50_ms"]),
                _met(h["p50_ms"] < 5.0),
            ]
        )
    return rows


def _in_process(results: dict[str, Any] | None) -> dict[str, float]:
    """Our in-process gradient time per case (seconds), from the last bench.run."""
    if not results:
        return {}
    out = {}
    for case in results["cases"]:
        name = "ours (auto)" if case["workload"] == "W6" else "ours"
        row = next((r for r in case["rows"] if r["name"] == name and r["gradient"]), None)
        if row:
            out[case["key"]] = float(row["gradient"]["median_s"])
    return out


def http_section(doc: dict[str, Any], results: dict[str, Any] | None = None) -> str:
    """Rates, latencies, phases, and the targets (beside the in-process times if given)."""
    meta = doc["meta"]
    parts = [
        "## Over HTTP",
        "",
        f"Run {meta['date']} ({'quick' if meta['quick'] else 'full'}, {meta.get('seconds')} s), "
        f"commit {meta['commit']}: {meta['server']} on a loopback port; load from "
        f"{meta['load_tool']} (one thread, on the same 2 cores as the server). Every answer "
        "below was first checked against our engine in process (≤ 1e-8).",
        "",
        "### Targets",
        "",
        table(["target", "measured", ""], http_targets(doc)),
        "",
        "### Rate and latency (closed loop)",
        "",
    ]
    rows = [
        [
            r["name"],
            str(r["connections"]),
            f"{r['rps']:,.0f}",
            _ms(r["p50_ms"]),
            _ms(r["p99_ms"]),
            str(r.get("non_200") or {}) + str(r.get("socket_errors") or ""),
        ]
        for r in doc.get("throughput", [])
    ]
    parts += [
        table(["request", "connections", "req/s", "p50", "p99", "non-200 / errors"], rows),
        "",
        "### W3 at n=10^5 (one connection; phases are the service's `timing_ms`)",
        "",
    ]
    rows = [
        [
            r["name"],
            f"{r['body_bytes']:,}",
            _ms(r["p50_ms"]),
            _ms(r["p99_ms"]),
            _phases(r["timing_ms"]),
        ]
        for r in doc.get("large", [])
    ]
    parts.append(
        table(["request", "body bytes", "p50", "p99", "service phases (ms, medians)"], rows)
    )
    h = doc.get("healthz_under_load")
    if h:
        bg = h["background"]
        parts += [
            "",
            f"`/healthz` while 4 connections send W3 n=10^5 (JSON) requests "
            f"({bg['rps']:.1f} req/s, p50 {_ms(bg['p50_ms'])}): p50 {_ms(h['p50_ms'])}, "
            f"p99 {_ms(h['p99_ms'])} over {h['samples']} probes.",
        ]
    parts += ["", "### Every workload through HTTP (b64 arrays, one connection)", ""]
    inproc = _in_process(results)
    rows = [
        [
            r["case"],
            r["path"],
            f"{r['body_bytes']:,}",
            _ms(r["p50_ms"]),
            _ms(r["p99_ms"]),
            _ms(inproc[r["case"]] * 1e3) if r["case"] in inproc else "–",
            _phases(r["timing_ms"]),
            f"{r['agreement']:.1e}",
        ]
        for r in doc.get("workloads", [])
    ]
    parts.append(
        table(
            [
                "case",
                "endpoint",
                "body bytes",
                "p50",
                "p99",
                "in process (bench.run)",
                "service phases (ms, medians)",
                "rel. error vs in-process",
            ],
            rows,
        )
    )
    return "\n".join(parts)


def load_section(doc: dict[str, Any]) -> str:
    """Issue 7's bounded load test."""
    res = doc["result"]
    rows = []
    for tag, counts in sorted(res["statuses"].items()):
        rows.append(
            [
                tag,
                ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())),
                ", ".join(doc["expected"].get(tag, [])),
            ]
        )
    mem = doc["memory"]
    verdict = "**passed**" if doc["passed"] else "**failed**"
    parts = [
        "## Load test (issue 7)",
        "",
        f"Run {doc['meta']['date']}: `{doc['meta']['command']}`; {res['connections']} connections "
        f"for {res['duration_s']} s with {res['tool']}, mixed requests, against "
        f"{doc['meta']['server']}. Verdict: {verdict}.",
        "",
        f"- {res['requests']:,} requests, {res['rps']:,.0f} req/s; latency p50 "
        f"{_ms(res['p50_ms'])}, p90 {_ms(res['p90_ms'])}, p99 {_ms(res['p99_ms'])}, max "
        f"{_ms(res['max_ms'])}; socket errors: {res['socket_errors'] or 'none'}",
        f"- Unexpected answers: {doc['unexpected'] or 'none'}",
        f"- Server RSS (uvicorn and its pool): after warm-up {mem['after_warmup_kib'] / 1024:.0f} "
        f"MiB, after the run {mem['after_run_kib'] / 1024:.0f} MiB "
        f"({mem['change_pct']:+.1f}%, limit ±10%)",
        "",
        table(["request kind", "statuses", "expected"], rows),
    ]
    procs = mem.get("by_process")
    if procs:
        mib = lambda v: "–" if v is None else f"{v / 1024:.0f} MiB"  # noqa: E731
        parts += [
            "",
            table(
                ["pid", "process", "RSS after warm-up", "RSS after the run"],
                [
                    [str(p["pid"]), p["role"], mib(p["before_kib"]), mib(p["after_kib"])]
                    for p in procs
                ],
            ),
        ]
    return "\n".join(parts)
