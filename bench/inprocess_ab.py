"""A/B of the in-process rule: tiny /grad latency while medium requests keep the server
thread busy, one uvicorn process per run, A and B interleaved.

    .venv/bin/python -m bench.inprocess_ab /tmp/A . 3     # A's tree against this one

Each tree needs a ``.venv`` (a symlink to this one's is enough). A background client sends
medium requests (60,000 elements in b64: the server-thread lane) without pause; the
foreground sends tiny ones (three elements: the event-loop lane) for 8 s and reports their
p50 and p90 latency.
"""

from __future__ import annotations

import base64
import os
import statistics
import subprocess
import sys
import threading
import time

import httpx
import numpy as np

X = np.linspace(0.0, 1.0, 60_000)
MEDIUM = {
    "expression": "sum(sin(x) * x + x * x)",
    "inputs": {
        "x": {"b64": base64.b64encode(X.tobytes()).decode(), "dtype": "float64", "shape": [X.size]}
    },
}
TINY = {"expression": "sum(x * x)", "inputs": {"x": [1.0, 2.0, 3.0]}}


def start(tree: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTODIFF_WORKERS": "1", "PYTHONPATH": tree}
    args = [f"{tree}/.venv/bin/uvicorn", "app.main:app", "--port", str(port)]
    proc = subprocess.Popen(
        [*args, "--log-level", "warning"],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{tree}: not ready")


def run(tree: str, port: int, seconds: float = 8.0) -> tuple[float, float, int]:
    """Tiny requests' p50 and p90 latency (ms) and count while medium ones run."""
    proc = start(tree, port)
    url = f"http://127.0.0.1:{port}/grad"
    stop = threading.Event()

    def background() -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                c.post(url, json=MEDIUM).raise_for_status()

    worker = threading.Thread(target=background)
    worker.start()
    latencies = []
    try:
        with httpx.Client() as c:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                c.post(url, json=TINY).raise_for_status()
                latencies.append(time.perf_counter() - t0)
    finally:
        stop.set()
        worker.join()
        proc.terminate()
        proc.wait()
    latencies.sort()
    p90 = latencies[int(0.9 * len(latencies))]
    return statistics.median(latencies) * 1e3, p90 * 1e3, len(latencies)


def main() -> None:
    trees = {"A": sys.argv[1], "B": sys.argv[2]}
    for rnd in range(int(sys.argv[3]) if len(sys.argv) > 3 else 3):
        for i, (name, tree) in enumerate(trees.items()):
            p50, p90, n = run(tree, 18700 + 2 * rnd + i)
            print(f"round {rnd} {name}: p50 {p50:.2f} ms  p90 {p90:.2f} ms  n={n}", flush=True)


if __name__ == "__main__":
    main()
