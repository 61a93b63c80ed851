"""Interleaved A/B of the engine alone (no HTTP): issue 6's workloads through our Python API.

    .venv/bin/python -m bench.engine_ab --a /tmp/engine-A --rounds 6          # A vs this tree
    .venv/bin/python -m bench.engine_ab --a /tmp/engine-A --b /tmp/engine-A   # A vs A: noise

Each run is a fresh interpreter whose working directory is the side's tree (so it imports
that tree's ``engine``); it times every case's forward and gradient entries (the best of 5
loops of at least 20 ms each) and prints JSON. Rounds alternate the order (AB, BA, ...) so
a load that drifts over the run hits both sides alike. The summary is, per entry, the
median over rounds of each side's time and their ratio B/A (below 1: B is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, sys, time
from bench import fw_ours
from bench.workloads import select

def per_call(fn):
    number = 1
    while True:
        t = time.perf_counter()
        for _ in range(number):
            fn()
        dt = time.perf_counter() - t
        if dt >= 0.02:
            break
        number *= 2 if dt < 0.005 else 4
    best = dt / number
    for _ in range(4):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best

out = {}
for case in select(sys.argv[1] or None):
    for e in fw_ours.entries(case):
        if e.forward is not None:
            out[f"{case.key} | {e.name} | forward"] = per_call(e.forward)
        if e.gradient is not None:
            out[f"{case.key} | {e.name} | gradient"] = per_call(e.gradient)
print(json.dumps(out))
"""


def _run(tree: Path, only: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, only],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="tree A (e.g. a git worktree of main)")
    p.add_argument("--b", default=".", help="tree B (default: this tree)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--only", default="", help="workloads or case keys, as bench.run's --only")
    args = p.parse_args(argv)
    sides = [("A", Path(args.a).resolve()), ("B", Path(args.b).resolve())]
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for label, tree in sides if r % 2 == 0 else sides[::-1]:
            runs[label].append(_run(tree, args.only))
            print(f"round {r} {label} done", file=sys.stderr, flush=True)
    keys = list(runs["A"][0])
    print(f"{'entry':58} {'A ms':>10} {'B ms':>10} {'B/A':>6}  (median of {args.rounds})")
    ratios = []
    for k in keys:
        a = statistics.median(run[k] for run in runs["A"])
        b = statistics.median(run[k] for run in runs["B"])
        ratios.append(b / a)
        print(f"{k:58} {a * 1e3:10.4f} {b * 1e3:10.4f} {b / a:6.3f}")
    gm = statistics.geometric_mean(ratios)
    print(f"geometric mean B/A {gm:.3f}; min {min(ratios):.3f}; max {max(ratios):.3f}")


if __name__ == "__main__":
    main()
