"""One command for issue 6: check every framework against ours, time them, write RESULTS.md.

    .venv/bin/python -m bench.run [--quick] [--only W4,W6] [--frameworks ours,torch] [--http]

The parent checks every answer against ours first. Each framework is then timed in its own
long-lived child process (``--child``), so one framework's thread pools (OpenMP, XLA) never
spin beside another's measurements; the parent asks every child in turn to time one case,
pools the rounds and writes the report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine, report
from bench.check import DisagreementError, compare
from bench.entries import FRAMEWORKS, Entry, flat_numpy
from bench.timing import CLOCKS, FULL, QUICK, Timing, measure, merge
from bench.workloads import Case, select

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
TIMING_BUDGET_S = 900.0


def _module(framework: str) -> Any:
    return importlib.import_module(f"bench.fw_{framework}")


def available(wanted: str | None) -> list[str]:
    """The frameworks to run: the installed ones, narrowed by ``--frameworks``."""
    names = [f.strip() for f in wanted.split(",")] if wanted else list(FRAMEWORKS)
    unknown = set(names) - set(FRAMEWORKS)
    if unknown:
        raise SystemExit(f"--frameworks: unknown {sorted(unknown)}; known: {FRAMEWORKS}")
    chosen = []
    for name in names:
        if _module(name).version():
            chosen.append(name)
        else:
            print(f"[bench] {name}: not installed, skipped", file=sys.stderr)
    return chosen


def _entries(case: Case, frameworks: list[str]) -> list[Entry]:
    out: list[Entry] = []
    for fw in frameworks:
        out.extend(_module(fw).entries(case))
    return out


def check_case(case: Case, frameworks: list[str]) -> dict[str, float]:
    """Every entry's forward against the NumPy floor and gradient against ours; raise if off."""
    entries = _entries(case, frameworks)
    graded = [e for e in entries if e.gradient is not None]
    if not graded:
        return {}
    ref_entry = next((e for e in graded if e.framework == "ours"), graded[0])
    if ref_entry.framework != "ours":
        print(
            f"[bench] {case.key}: our engine is not available; checking against "
            f"{ref_entry.name} instead",
            file=sys.stderr,
        )
    assert ref_entry.gradient is not None
    ref = flat_numpy(ref_entry.gradient())
    floor = next((e for e in entries if e.framework == "numpy"), None)
    floor_value = flat_numpy(floor.forward()) if floor and floor.forward else None
    errors: dict[str, float] = {}
    for e in entries:
        if floor_value is not None and e.forward is not None:
            compare(case.key, f"{e.name} (forward)", floor_value, flat_numpy(e.forward()))
        if e.gradient is not None:
            errors[e.name] = compare(case.key, e.name, ref, flat_numpy(e.gradient())).max_rel_error
    return errors


def check_all(cases: list[Case], frameworks: list[str]) -> dict[str, dict[str, float]]:
    """The agreement of every case; a disagreement stops the run before any time is reported."""
    out = {}
    for case in cases:
        try:
            out[case.key] = check_case(case, frameworks)
        except DisagreementError as exc:
            msg = f"[bench] AGREEMENT CHECK FAILED, no times reported:\n  {exc}"
            raise SystemExit(msg) from exc
        worst = max(out[case.key].values(), default=0.0)
        print(
            f"[bench] check {case.key}: {len(out[case.key])} answers agree "
            f"(worst relative error {worst:.1e})",
            file=sys.stderr,
        )
    return out


# ---- the timing child ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """How to time: repeats, which clock, how many threads each library may use."""

    quick: bool
    clock: str
    threads: int
    gc_on: bool = True
    rounds: int = 1
    malloc: str = "service"

    def flags(self) -> list[str]:
        """The same options as command-line flags (for the child processes)."""
        return (["--quick"] if self.quick else []) + [
            "--clock",
            self.clock,
            "--threads",
            str(self.threads),
            "--gc",
            "on" if self.gc_on else "off",
        ]


def time_entries(case: Case, entries: list[Entry], opts: Options) -> list[dict[str, Any]]:
    """Median forward and gradient times of each entry (a shared forward is timed once)."""
    budget = QUICK if opts.quick else FULL
    forwards: dict[int, Timing] = {}
    rows = []
    for e in entries:
        fwd = None
        if e.forward is not None:
            if id(e.forward) not in forwards:
                forwards[id(e.forward)] = measure(e.forward, budget, opts.clock, opts.gc_on)
            fwd = forwards[id(e.forward)]
        grad = None
        if e.gradient is not None:
            grad = measure(e.gradient, budget, opts.clock, opts.gc_on)
        rows.append(
            {
                "name": e.name,
                "framework": e.framework,
                "note": e.note,
                "forward": fwd.as_dict() if fwd else None,
                "gradient": grad.as_dict() if grad else None,
            }
        )
        g = f"{grad.median_s * 1e3:.4g} ms" if grad else "-"
        f = f"{fwd.median_s * 1e3:.4g} ms" if fwd else "-"
        print(
            f"[bench]   {case.key:<12} {e.name:<22} forward {f:>12}  gradient {g:>12}",
            file=sys.stderr,
        )
    return rows


REPLY = "BENCHJSON "
READY = "BENCHREADY"


def child_main(framework: str, opts: Options) -> None:
    """Serve timing requests for one framework: a case key per stdin line, JSON rows back.

    Staying alive between cases lets the parent time every framework on one case before
    moving on, so a burst of other work on the machine hits all of them alike.
    """
    if opts.threads > 0:
        # Before any framework starts a thread (they inherit this): XLA's runtime may run
        # independent ops side by side on its own threads whatever its flags say.
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cores[: opts.threads])
    module = _module(framework)
    if framework == "torch" and opts.threads > 0:
        import torch

        torch.set_num_threads(opts.threads)
    # Import the framework now (version() does) and say so: the parent starts timing only
    # when every child is ready, so no import (seconds of CPU for torch or jax) runs beside
    # a measurement: it took 40% of the wall clock of round 1's first cases.
    module.version()
    print(READY, flush=True)
    built: dict[str, tuple[Case, list[Entry]]] = {}  # later rounds reuse jitted functions
    for line in sys.stdin:
        key = line.strip()
        if not key:
            break
        if key not in built:
            (case,) = [c for c in select(key) if c.key == key]
            built[key] = (case, module.entries(case))
        rows = time_entries(*built[key], opts)
        print(REPLY + json.dumps(rows), flush=True)
    # After the framework's imports loaded their libraries: which BLAS, how many threads.
    print(
        REPLY + json.dumps({"version": module.version(), "blas": machine.blas_info()}), flush=True
    )


class Child:
    """One framework's timing process (OpenBLAS overrides dropped, threads capped)."""

    def __init__(self, framework: str, opts: Options) -> None:
        cmd = [sys.executable, "-m", "bench.run", "--child", framework, *opts.flags()]
        self.framework = framework
        env = machine.bench_env(opts.threads, opts.malloc)
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def wait_ready(self) -> None:
        """Block until the child has imported its framework."""
        assert self.proc.stdout is not None
        for out in self.proc.stdout:
            if out.strip() == READY:
                return
        raise RuntimeError(
            f"the {self.framework} timing process exited ({self.proc.wait()}) before it was ready"
        )

    def ask(self, line: str) -> Any:
        """Send one line; the JSON of the child's reply (other output is skipped)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        for out in self.proc.stdout:
            if out.startswith(REPLY):
                return json.loads(out[len(REPLY) :])
        raise RuntimeError(
            f"the {self.framework} timing process exited "
            f"({self.proc.wait()}) without answering {line!r}"
        )

    def finish(self) -> dict[str, Any]:
        """Version and BLAS details; the child exits."""
        info = dict(self.ask(""))
        self.proc.wait(timeout=60)
        return info


def _kill_all(children: list[Child]) -> None:
    for child in children:
        child.proc.kill()


def merge_rounds(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One framework's rows for one case, from several rounds, with their samples pooled."""
    merged = []
    for rows in zip(*rounds, strict=True):
        row = dict(rows[0])
        for kind in ("forward", "gradient"):
            if row[kind] is not None:
                row[kind] = merge([r[kind] for r in rows])
        merged.append(row)
    return merged


def time_all(cases: list[Case], frameworks: list[str], opts: Options) -> dict[str, Any]:
    """Case by case, every framework in turn, each in its own long-lived process.

    With several rounds the whole sweep repeats (frameworks in reverse order every other
    round) and each entry's samples are pooled, so a slow spell on the machine is spread
    over all frameworks instead of landing on one.
    """
    children = [Child(fw, opts) for fw in frameworks]
    out: dict[str, Any] = {fw: {"cases": {}} for fw in frameworks}
    # A hung child must not hang the run: past the budget every child is killed, and the
    # parent's next read fails loudly.
    watchdog = threading.Timer(TIMING_BUDGET_S, _kill_all, [children])
    watchdog.daemon = True
    watchdog.start()
    try:
        for child in children:
            child.wait_ready()
        samples: dict[tuple[str, str], list[Any]] = {}
        for r in range(opts.rounds):
            order = children if r % 2 == 0 else children[::-1]
            for case in cases:
                print(f"[bench] round {r + 1}/{opts.rounds}: timing {case.key}...", file=sys.stderr)
                for child in order:
                    samples.setdefault((child.framework, case.key), []).append(child.ask(case.key))
        for (fw, key), rounds in samples.items():
            out[fw]["cases"][key] = merge_rounds(rounds)
        for child in children:
            out[child.framework].update(child.finish())
    finally:
        watchdog.cancel()
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
    return out


# ---- the parent -------------------------------------------------------------------------------


def assemble(
    cases: list[Case],
    agreement: dict[str, dict[str, float]],
    timings: dict[str, dict[str, Any]],
    opts: Options,
    started: float,
    load_before: tuple[float, float, float],
) -> dict[str, Any]:
    """One JSON document with everything the report needs."""
    out_cases = []
    for case in cases:
        rows = []
        for doc in timings.values():
            for row in doc["cases"].get(case.key, []):
                row = dict(row, agreement=agreement.get(case.key, {}).get(row["name"]))
                rows.append(row)
        out_cases.append(
            {
                "key": case.key,
                "workload": case.workload,
                "title": case.title,
                "n": case.n,
                "answer": case.answer,
                "rows": rows,
            }
        )
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": machine.git_commit(),
            "quick": opts.quick,
            "clock": opts.clock,
            "threads": opts.threads,
            "gc": opts.gc_on,
            "rounds": opts.rounds,
            "malloc": opts.malloc,
            "load_average_before": load_before,
            "load_average_after": machine.load_average(),
            "seconds": round(time.time() - started, 1),
            "machine": machine.describe(),
            "versions": {fw: doc["version"] for fw, doc in timings.items()},
            "blas": {fw: doc.get("blas", []) for fw, doc in timings.items()},
        },
        "cases": out_cases,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--only", help="workloads or cases, comma-separated (W4,W6 or 'W6 n=256')")
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    p.add_argument(
        "--clock",
        choices=CLOCKS,
        default="cpu",
        help="cpu: the process's CPU time (default; steady on a shared machine); "
        "wall: elapsed time",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="cores and threads per framework (pinned; BLAS, OpenMP, XLA); "
        "0 = the libraries' defaults on every core",
    )
    p.add_argument(
        "--gc",
        choices=("on", "off"),
        default="on",
        help="keep Python's garbage collector on while timing (default) or pause it as timeit does",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="sweeps over all cases, samples pooled (default 3; 1 with --quick)",
    )
    p.add_argument(
        "--malloc",
        choices=("service", "default"),
        default="service",
        help="service (default): every framework's process keeps freed memory as "
        "the service's workers do (glibc MALLOC_*_THRESHOLD_); default: glibc's own",
    )
    p.add_argument("--frameworks", help=f"subset of {','.join(FRAMEWORKS)} (default: installed)")
    p.add_argument("--http", action="store_true", help="also run the HTTP benchmark (bench.http)")
    p.add_argument("--no-report", action="store_true", help="print, do not write RESULTS.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Check, time, report."""
    args = parse(argv)
    # Three sweeps: this shared machine has slow spells of a minute (every framework's W3 took
    # 25-35% longer in one of two sweeps at 18:08); with three, one slow sweep holds a third
    # of the samples and no longer decides the medians.
    rounds = args.rounds or (1 if args.quick else 3)
    opts = Options(
        args.quick, args.clock, args.threads, args.gc == "on", max(1, rounds), args.malloc
    )
    if args.child:
        child_main(args.child, opts)
        return
    started = time.time()
    load_before = machine.load_average()
    cases = select(args.only)
    frameworks = available(args.frameworks)
    agreement = check_all(cases, frameworks)
    timings = time_all(cases, frameworks, opts)
    results = assemble(cases, agreement, timings, opts, started, load_before)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "results.json").write_text(json.dumps(results, indent=1))
    print(report.headline_text(results))
    if not args.no_report:
        report.write_all(BENCH_DIR)
    if args.http:
        from bench import http

        only = ["--only", args.only] if args.only else []
        http.main((["--quick"] if args.quick else []) + only)
    print(f"[bench] done in {time.time() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
