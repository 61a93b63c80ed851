"""``bench.realuse``: its byte counting, its reports, and a whole run at tiny sizes against a real
server (so the script cannot rot; nothing is timed against a limit here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench import realuse, report
from bench.realuse import CountingTransport, Row, Run, Sizes


def test_counting_transport_counts_every_byte_both_ways() -> None:
    answer = b'{"value": 1.0}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answer, headers={"content-type": "application/json"})

    counter = CountingTransport(httpx.MockTransport(handler))
    with httpx.Client(base_url="http://127.0.0.1:9", transport=counter) as client:
        body = b'{"expression": "x", "inputs": {"x": 1}}'
        request = client.build_request("POST", "/grad", content=body)
        client.send(request)
        client.get("/healthz")
    sent = b"POST /grad HTTP/1.1\r\n"
    sent += b"".join(k + b": " + v + b"\r\n" for k, v in request.headers.raw) + b"\r\n" + body
    get = b"GET /healthz HTTP/1.1\r\n"
    get_headers = client.build_request("GET", "/healthz").headers.raw
    get += b"".join(k + b": " + v + b"\r\n" for k, v in get_headers) + b"\r\n"
    assert counter.traffic.calls == 2
    assert counter.traffic.sent == len(sent) + len(get)
    received = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 14\r\n\r\n"
    assert counter.traffic.received == 2 * (len(received) + len(answer))


def test_replace_block_replaces_between_markers_or_appends() -> None:
    text = "head\n<!-- a -->\nold\n<!-- b -->\ntail\n"
    assert realuse.replace_block(text, "<!-- a -->", "<!-- b -->", "new") == (
        "head\n<!-- a -->\nnew\n<!-- b -->\ntail\n"
    )
    assert realuse.replace_block("head\n", "<!-- a -->", "<!-- b -->", "new") == (
        "head\n\n<!-- a -->\nnew\n<!-- b -->\n"
    )


def test_other_runs_keep_the_real_use_section(tmp_path: Path) -> None:
    """``bench.run``/``bench.http`` rewrite RESULTS.md from their JSON; the section stays."""
    (tmp_path / "out").mkdir()
    section = f"{report.REALUSE_START}\n## Real use (issue 16)\n\nfigures\n{report.REALUSE_END}"
    old = f"# Benchmark results\n\nold engine section\n\n{section}\n"
    (tmp_path / "RESULTS.md").write_text(old)
    text = report.write_all(tmp_path).read_text()
    assert section in text and "old engine section" not in text


def _run(old_sent: int, new_sent: int, store_sent: int, batch_s: float) -> Run:
    run = Run(Sizes())
    task = "logistic regression 2000 x 20, L-BFGS-B"
    run.rows += [
        Row(task, "numpy", 0.01, x_error=0.0),
        Row(task, "old", 0.2, calls=16, sent=old_sent, x_error=0.0),
        Row(task, "new", 0.1, calls=17, sent=new_sent, store_sent=store_sent, x_error=0.0),
        Row("per-sample grads", "new", 0.01, calls=2, x_error=1e-16),
    ]

    def call(wall_s: float, compute_s: float) -> dict[str, Any]:
        timing = {"total": compute_s * 1e3}
        return {"wall_s": wall_s, "compute_s": compute_s, "timing_ms": timing, "received": 100}

    run.single_calls = {
        "floor": call(0.002, 0.0001),
        "single": call(0.004, 0.001),
        "batch": call(batch_s, 0.002),
        "batch_small_answer": call(0.003, 0.002),
        "repeats": 3,
    }
    return run


def test_targets_are_judged_on_the_runs_own_ratios() -> None:
    met = {t["target"]: t["met"] for t in realuse.targets(_run(7_000_000, 460_000, 450_000, 0.005))}
    assert list(met.values()) == [True, True, True]
    # 9x fewer bytes, and a batch slower than 2 x (1 ms + 2 ms): both targets missed
    missed = realuse.targets(_run(9_000_000, 1_000_000, 450_000, 0.0061))
    assert [t["met"] for t in missed] == [False, False, True]


def test_a_failed_way_fails_the_optimum_target() -> None:
    run = _run(7_000_000, 460_000, 450_000, 0.005)
    run.rows[2].ok, run.rows[2].error = False, "another optimum"
    assert realuse.targets(run)[-1]["met"] is False


def test_check_optimum_refuses_another_optimum() -> None:
    class Result:
        def __init__(self, x: list[float], fun: float) -> None:
            self.x, self.fun, self.nit = np.asarray(x), fun, 3

    row = Row("t", "old", 0.0)
    realuse.check_optimum(row, Result([1.0, 1.0 + 1e-7], 1e-12), Result([1.0, 1.0], 0.0))
    assert row.ok and row.x_error == pytest.approx(1e-7)
    realuse.check_optimum(row, Result([-1.0, 1.0], 3.98), Result([1.0, 1.0], 0.0))
    assert not row.ok and "another optimum" in (row.error or "")


@pytest.mark.server
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """Every task, every way, through a real server (tiny sizes): all agree, all counted."""
    assert realuse.main(["--quick", "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "realuse.json").read_text())
    rows = {(r["task"], r["way"]): r for r in run["rows"]}
    failed = [(key, r["error"]) for key, r in rows.items() if not r["ok"]]
    assert not failed
    tasks = {task for task, _ in rows}
    assert len(tasks) == 5  # three Rosenbrock methods, the regression, per-sample gradients
    for task in tasks:
        assert {"numpy", "torch.func", "old", "new"} <= {way for t, way in rows if t == task}
        assert rows[(task, "old")]["calls"] > 0 and rows[(task, "old")]["sent"] > 0
    per_sample = next(t for t in tasks if t.startswith("per-sample"))
    assert rows[(per_sample, "old")]["calls"] == realuse.QUICK.mlp_samples
    assert rows[(per_sample, "new")]["calls"] == 2  # the store, then one batch request
    logistic = next(t for t in tasks if t.startswith("logistic"))
    assert rows[(logistic, "new")]["sent"] < rows[(logistic, "old")]["sent"]
    assert run["single_calls"]["batch"]["wall_s"] > 0
    assert run["single_calls"]["batch"]["received"] > run["single_calls"]["single"]["received"]


def test_reports_render_the_rows_and_the_targets(tmp_path: Path) -> None:
    run = _run(7_000_000, 460_000, 450_000, 0.005)
    run.targets = realuse.targets(run)
    text = realuse.markdown(run)
    assert "| logistic regression 2000 x 20, L-BFGS-B | new |" in text
    assert "2.0x time, 0.9x calls, 15x bytes" in text  # against the old way, from the rows
    assert text.count("| yes |") == 3
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{realuse.README_START}\nold\n{realuse.README_END}\nrest\n")
    (tmp_path / "RESULTS.md").write_text("# Benchmark results\n\nother sections\n")
    realuse.write_reports(run, tmp_path, readme)
    assert "| logistic regression 2000 x 20, L-BFGS-B | 200.0 ms, 16 calls" in readme.read_text()
    assert readme.read_text().endswith("rest\n") and "\nold\n" not in readme.read_text()
    results = (tmp_path / "RESULTS.md").read_text()
    assert results.startswith("# Benchmark results\n\nother sections") and text in results


def test_a_saved_run_loads_back_for_report_only(tmp_path: Path) -> None:
    from dataclasses import asdict

    run = _run(7_000_000, 460_000, 450_000, 0.005)
    run.targets = realuse.targets(run)
    (tmp_path / "realuse.json").write_text(json.dumps(asdict(run)))
    assert realuse.load_run(tmp_path / "realuse.json") == run
