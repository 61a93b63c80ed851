"""RESULTS.md and the charts, from the JSON the runs left in bench/out/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.workloads import W5_OPS_PER_STEP, W5_STEPS

# Headline columns: a peer, and which entries (by row name) stand for it (the fastest one wins).
PEERS: list[tuple[str, Callable[[str], bool]]] = [
    ("hand NumPy", lambda n: n == "numpy (hand)"),
    ("autograd", lambda n: n == "autograd"),
    ("torch", lambda n: n in ("torch", "torch (eager)")),
    ("torch.func", lambda n: n.startswith("torch.func")),
    ("jax", lambda n: n.startswith("jax") and n != "jax (first call)"),
    # a function JAX has not compiled yet: what a service pays per new program
    ("jax, first call", lambda n: n == "jax (first call)"),
]
OURS_ROW = {"W6": "ours (auto)"}


def fmt_time(s: float | None) -> str:
    """Seconds as µs, ms or s with three significant digits."""
    if s is None:
        return "–"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_ratio(r: float | None) -> str:
    """A ratio like 0.83×; under 1 means ours is faster."""
    return "–" if r is None else f"{r:.2f}×" if r < 10 else f"{r:.3g}×"


def _median(row: dict[str, Any], kind: str) -> float | None:
    t = row.get(kind)
    return None if t is None else float(t["median_s"])


def ours_row(case: dict[str, Any]) -> dict[str, Any] | None:
    """The row that stands for our engine in a case."""
    name = OURS_ROW.get(case["workload"], "ours")
    return next((r for r in case["rows"] if r["name"] == name), None)


def peer_time(case: dict[str, Any], match: Callable[[str], bool]) -> tuple[float, str] | None:
    """The fastest gradient among a peer's rows, with that row's name."""
    found = [(_median(r, "gradient"), r["name"]) for r in case["rows"] if match(r["name"])]
    timed = [(t, n) for t, n in found if t is not None]
    return min(timed) if timed else None


def ratios(case: dict[str, Any]) -> dict[str, float | None]:
    """Our gradient time divided by each peer's."""
    ours = ours_row(case)
    ours_t = _median(ours, "gradient") if ours else None
    out: dict[str, float | None] = {}
    for peer, match in PEERS:
        pt = peer_time(case, match)
        out[peer] = ours_t / pt[0] if ours_t is not None and pt else None
    return out


def floor_time(case: dict[str, Any]) -> float | None:
    """The plain NumPy forward."""
    row = next((r for r in case["rows"] if r["framework"] == "numpy"), None)
    return _median(row, "forward") if row else None


def headline_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per case: floor, our gradient, and ours / each peer."""
    rows = []
    for case in results["cases"]:
        ours = ours_row(case)
        ours_t = _median(ours, "gradient") if ours else None
        r = ratios(case)
        rows.append(
            [case["key"], fmt_time(floor_time(case)), fmt_time(ours_t)]
            + [fmt_ratio(r[p]) for p, _ in PEERS]
        )
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


HEADLINE_HEADER = ["case", "NumPy forward", "ours: gradient"] + [f"ours / {p}" for p, _ in PEERS]


def headline_text(results: dict[str, Any]) -> str:
    """The headline table (ratio under 1: ours is faster)."""
    return table(HEADLINE_HEADER, headline_rows(results))


def detail_rows(case: dict[str, Any]) -> list[list[str]]:
    """Every row of one case: forward, gradient, gradient/forward, ours/this, agreement."""
    ours = ours_row(case)
    ours_t = _median(ours, "gradient") if ours else None
    out = []
    for r in case["rows"]:
        f, g = _median(r, "forward"), _median(r, "gradient")
        ratio = g / f if f and g else None
        vs = ours_t / g if ours_t and g else None
        agree = "–" if r.get("agreement") is None else f"{r['agreement']:.1e}"
        extra = ""
        if case["workload"] == "W5" and g is not None:
            extra = f"{g / (W5_STEPS * W5_OPS_PER_STEP) * 1e6:.2f} µs/op"
        elif case["workload"] == "W1" and g is not None:
            extra = f"{1 / g:,.0f} VJPs/s"
        wall = r["gradient"]["wall_median_s"] if r.get("gradient") else None
        out.append(
            [
                r["name"],
                fmt_time(f),
                fmt_time(g),
                fmt_time(wall),
                fmt_ratio(ratio),
                fmt_ratio(vs),
                agree,
                extra,
                r.get("note", ""),
            ]
        )
    return out


DETAIL_HEADER = [
    "entry",
    "forward",
    "gradient",
    "gradient (wall clock)",
    "gradient / forward",
    "ours / this",
    "rel. error vs ours",
    "rate",
    "note",
]


# ---- targets --------------------------------------------------------------------------------


def _case(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((c for c in results["cases"] if c["key"] == key), None)


def _grad(case: dict[str, Any] | None, name: str) -> float | None:
    if case is None:
        return None
    row = next((r for r in case["rows"] if r["name"] == name), None)
    return _median(row, "gradient") if row else None


def _vs(
    results: dict[str, Any], key: str, ours: str, peers: list[str], factor: float = 1.0
) -> tuple[str, bool | None]:
    case = _case(results, key)
    o = _grad(case, ours)
    times = {p: _grad(case, p) for p in peers}
    if o is None or any(t is None for t in times.values()):
        return "not measured", None
    text = f"ours {fmt_time(o)}; " + ", ".join(f"{p} {fmt_time(t)}" for p, t in times.items())
    return text, all(o <= factor * t for t in times.values() if t is not None)


def engine_targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Issue 6's in-process targets: (target, measured, met)."""
    out: list[tuple[str, str, bool | None]] = []
    out.append(
        ("W4 no slower than autograd and torch", *_vs(results, "W4", "ours", ["autograd", "torch"]))
    )
    w5 = _grad(_case(results, "W5"), "ours")
    per_op = None if w5 is None else w5 / (W5_STEPS * W5_OPS_PER_STEP)
    out.append(
        (
            "W5 under 5 µs per recorded op",
            "not measured" if per_op is None else f"{per_op * 1e6:.2f} µs/op",
            None if per_op is None else per_op < 5e-6,
        )
    )
    text, met = _vs(results, "W6 n=256", "ours (auto)", ["torch.func.jacfwd"])
    o = _grad(_case(results, "W6 n=256"), "ours (auto)")
    out.append(
        (
            "W6 n=256 under 1 ms and faster than torch.func.jacfwd",
            text,
            None if met is None or o is None else met and o < 1e-3,
        )
    )
    text, met = _vs(results, "W7", "ours", ["torch.func.hessian"])
    o = _grad(_case(results, "W7"), "ours")
    out.append(
        (
            "W7 under 3 ms and faster than torch.func.hessian",
            text,
            None if met is None or o is None else met and o < 3e-3,
        )
    )
    out.append(
        (
            "W2 n=10^6 within 2× of the hand-written gradient",
            *_vs(results, "W2 n=10^6", "ours", ["numpy (hand)"], 2.0),
        )
    )
    out.append(
        (
            "W3 within 10% of the hand-written gradient",
            *_vs(results, "W3 n=10^6", "ours", ["numpy (hand)"], 1.1),
        )
    )
    w1 = _grad(_case(results, "W1"), "ours")
    out.append(("W1 under 60 µs in process", fmt_time(w1), None if w1 is None else w1 < 60e-6))
    return out


def _met(m: bool | None) -> str:
    return "not measured" if m is None else "**met**" if m else "**not met**"


def targets_text(targets: list[tuple[str, str, bool | None]]) -> str:
    """The targets as a Markdown table."""
    return table(["target", "measured", ""], [[t, m, _met(ok)] for t, m, ok in targets])


# ---- charts ---------------------------------------------------------------------------------


def chart_ratios(results: dict[str, Any], path: Path) -> None:
    """Grouped bars: ours / each peer per case, log scale, a line at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = results["cases"]
    # the first-call column (compile time) stays in the tables: its bars would dwarf the rest
    peers = [
        p
        for p, _ in PEERS
        if p != "jax, first call" and any(ratios(c)[p] is not None for c in cases)
    ]
    fig, ax = plt.subplots(figsize=(12, 6))
    width = 0.8 / max(len(peers), 1)
    x = np.arange(len(cases))
    for i, peer in enumerate(peers):
        vals = [ratios(c)[peer] for c in cases]
        heights = [v if v is not None else np.nan for v in vals]
        ax.bar(x + (i - (len(peers) - 1) / 2) * width, heights, width, label=f"ours / {peer}")
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(x, [c["key"] for c in cases], rotation=30, ha="right")
    ax.set_ylabel("our gradient time / peer's (log; below 1 = ours faster)")
    ax.set_title("Gradient time: ours over each peer, per workload")
    # Below the axes, so no bar hides behind it.
    ax.legend(fontsize=8, ncol=len(peers), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_w6(results: dict[str, Any], path: Path) -> bool:
    """Jacobian time against n for every W6 row (log-log); False if W6 was not run."""
    cases = [c for c in results["cases"] if c["workload"] == "W6"]
    if not cases:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["name"] for c in cases for r in c["rows"] if r["gradient"]))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name in names:
        pts = [
            (c["n"], float(r["gradient"]["median_s"]))
            for c in cases
            for r in c["rows"]
            if r["name"] == name and r["gradient"]
        ]
        style = "-o" if name.startswith("ours") else "--s"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
    floor = [(c["n"], t) for c in cases if (t := floor_time(c)) is not None]
    ax.plot([p[0] for p in floor], [p[1] for p in floor], ":k", label="NumPy forward (floor)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([c["n"] for c in cases], [str(c["n"]) for c in cases])
    ax.set_yscale("log")
    ax.set_xlabel("n (W is n×n)")
    ax.set_ylabel("seconds per full Jacobian (log)")
    ax.set_title("W6: Jacobian of tanh(W@x+b), cost vs n")
    ax.legend(fontsize=8)
    ax.grid(which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---- the document ---------------------------------------------------------------------------


def _machine_text(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; "
        f"Python {m['python']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- OpenBLAS overrides in the calling shell: {m['blas_env']} (the timing children "
        "run with both unset; see bench/README.md)",
        _malloc_text(meta.get("malloc", "default")),
    ]
    seen = set()
    for fw, libs in meta["blas"].items():
        for lib in libs:
            desc = (
                f"{lib['internal_api']} {lib['version']} ({lib['prefix']}, "
                f"kernel {lib.get('architecture')}, {lib['num_threads']} threads)"
            )
            if desc not in seen:
                seen.add(desc)
                lines.append(f"- BLAS/threads seen by the {fw} child: {desc}")
    return "\n".join(lines)


def _malloc_text(malloc: str) -> str:
    if malloc == "service":
        from bench.machine import service_malloc_env

        env = " ".join(f"{k}={v}" for k, v in service_malloc_env().items())
        return (
            f"- glibc malloc: every framework's timing process runs with `{env}`, as the "
            "service's pool workers do (freed memory is kept, so a new 8 MB array does not "
            "page-fault afresh); `--malloc default` times glibc's own thresholds"
        )
    return "- glibc malloc: its default thresholds (`--malloc default`)"


def engine_section(results: dict[str, Any]) -> str:
    """Headline, targets, per-case details and machine: the in-process part."""
    meta = results["meta"]
    clock = (
        "CPU time of the process (all its threads)" if meta["clock"] == "cpu" else "wall-clock time"
    )
    threads = (
        f"{meta['threads']} core(s) and thread(s) per framework"
        if meta["threads"] > 0
        else "the libraries' default threads"
    )
    load = (
        f"load average {meta['load_average_before'][0]:.1f} before, "
        f"{meta['load_average_after'][0]:.1f} after"
    )
    parts = [
        f"Run {meta['date']} on commit {meta.get('commit', '?')} (engine/ and app/), "
        f"{'--quick' if meta['quick'] else 'full'} mode, "
        f"{meta['seconds']} s; {load}. Medians of timeit-style loops ({meta.get('rounds', 1)} "
        f"round(s) pooled) on the **{clock}**, "
        f"{threads}, garbage collector {'on' if meta.get('gc', True) else 'paused'}; "
        "float64; fixed seeds. Every answer was checked against ours (normwise "
        "relative error ≤ 1e-8) before any time was taken. The per-case tables also give the "
        "wall-clock median of the gradient.",
        "",
        "## Headline: our gradient time divided by each peer's (under 1: ours is faster)",
        "",
        headline_text(results),
        "",
        'For W6 ours is `jacobian(mode="auto")` and each peer column is its fastest entry '
        "(see the details). W1's gradient is a VJP (forward included); W2-W5, W8 are "
        "value-and-gradient; W6 a full Jacobian; W7 a full Hessian. The `jax` column is "
        "jitted JAX after compilation; `jax, first call` jits a fresh function each call "
        "(trace, compile, run): what a service pays for a program it has not compiled "
        "before, where ours pays a parse of about 0.3 ms (then a cache hit).",
        "",
        "![ours over each peer](ratios.png)",
        "",
        "## Issue 6's targets (in process)",
        "",
        targets_text(engine_targets(results)),
        "",
        "## Per case",
    ]
    for case in results["cases"]:
        parts += [
            "",
            f"### {case['key']}: {case['title']}",
            "",
            f"Answer compared: `{case['answer']}`.",
            "",
            table(DETAIL_HEADER, detail_rows(case)),
        ]
    if any(c["workload"] == "W6" for c in results["cases"]):
        parts += ["", "![W6 cost vs n](w6_scaling.png)"]
    parts += ["", "## Machine", "", _machine_text(meta)]
    return "\n".join(parts)


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_all(bench_dir: Path) -> Path:
    """Write RESULTS.md (and the charts) from whatever bench/out/ holds."""
    out = bench_dir / "out"
    results = _load(out / "results.json")
    parts = [
        "# Benchmark results",
        "",
        "Written by `python -m bench.run` (and `bench.http`, `bench.load`); do not edit by hand.",
        "",
    ]
    if results:
        chart_ratios(results, bench_dir / "ratios.png")
        chart_w6(results, bench_dir / "w6_scaling.png")
        parts.append(engine_section(results))
    from bench import http_report

    http = _load(out / "http.json")
    if http:
        parts += ["", http_report.http_section(http, results)]
    load = _load(out / "load.json")
    if load:
        parts += ["", http_report.load_section(load)]
    path = bench_dir / "RESULTS.md"
    kept = _kept_realuse_section(path)  # bench.realuse writes it; no other run has its data
    path.write_text("\n".join(parts) + "\n" + kept)
    if results and not results["meta"]["quick"] and _every_case(results):
        for readme in (bench_dir / "README.md", bench_dir.parent / "README.md"):
            _update_readme(readme, results)
    return path


# Around the "Real use" section, which ``bench.realuse`` writes and every other run keeps.
REALUSE_START, REALUSE_END = "<!-- realuse-section:start -->", "<!-- realuse-section:end -->"


def _kept_realuse_section(path: Path) -> str:
    """The "Real use" section of RESULTS.md as ``bench.realuse`` last wrote it, markers and all."""
    text = path.read_text() if path.exists() else ""
    if REALUSE_START not in text or REALUSE_END not in text:
        return ""
    block = text.split(REALUSE_START, 1)[1].split(REALUSE_END, 1)[0]
    return f"\n{REALUSE_START}{block}{REALUSE_END}\n"


def _every_case(results: dict[str, Any]) -> bool:
    """Whether the run timed every case (an ``--only`` run must not shrink the headline)."""
    from bench.workloads import all_cases

    return {c["key"] for c in results["cases"]} >= {c.key for c in all_cases()}


README_START, README_END = "<!-- headline:start -->", "<!-- headline:end -->"


def _update_readme(readme: Path, results: dict[str, Any]) -> None:
    """Put the headline table of a full run between the README's markers."""
    if not readme.exists():
        return
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = f"Run {results['meta']['date']} (ratio under 1: ours is faster).\n\n" + headline_text(
        results
    )
    readme.write_text(f"{head}{README_START}\n{block}\n{README_END}{tail}")
