"""Jobs (POST /jobs) across real uvicorn processes: two servers sharing the embedded store
and two sharing a real Redis (submit through one, poll and stream through the other), a
job past the synchronous time limit, small requests while jobs run, cancel, a killed
job worker, the job time limit, expiry, API keys, queue limits, a restart."""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from app.store import StoreConfig
from app.store.sqlite_store import SqliteStore
from tests.redis_server import redis_server
from tests.servers import running

pytestmark = pytest.mark.timeout(300)

# A loop that runs until cancelled, killed or stopped by the job time limit.
ENDLESS = "s = x\nfor i in range(1000000):\n    s = sin(s) * 0.5 + x\nreturn sum(s)"
ENDLESS_JOB = {
    "endpoint": "grad",
    "request": {"expression": ENDLESS, "inputs": {"x": [0.1, 0.2]}, "include_graph": False},
}
SMALL_JOB = {
    "endpoint": "grad",
    "request": {"expression": "sum(x ** 2)", "inputs": {"x": [1.0, 2.0]}},
}
FINAL = ("done", "failed", "cancelled")


@contextmanager
def servers(count: int, **settings: str) -> Iterator[list[str]]:
    """``count`` uvicorn processes with these AUTODIFF_ settings; yields their URLs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTODIFF_")}
    env.update(
        {
            "AUTODIFF_WORKERS": "1",
            "AUTODIFF_JOB_WORKERS": "1",
            "AUTODIFF_LOG_LEVEL": "warning",
            "AUTODIFF_MAX_ITERATIONS": "2000000",
        }
    )
    env.update({f"AUTODIFF_{k.upper()}": v for k, v in settings.items()})
    with running(count, env) as urls:
        yield urls


def submit(url: str, job: dict[str, Any], **headers: str) -> str:
    r = httpx.post(f"{url}/jobs", json=job, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/jobs/{r.json()['id']}"
    assert r.json()["status"] in ("queued", "running")
    return str(r.json()["id"])


def get(url: str, job_id: str, **headers: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/jobs/{job_id}", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_for(
    url: str, job_id: str, statuses: tuple[str, ...] = FINAL, timeout: float = 120, **headers: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(url, job_id, **headers)
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} was not {statuses} within {timeout} s: {job}")


def events(url: str, job_id: str, timeout: float = 120) -> list[tuple[str, str]]:
    """The SSE stream as (event name or ':' for a comment, data) until it ends."""
    out: list[tuple[str, str]] = []
    name = ""
    with httpx.stream("GET", f"{url}/jobs/{job_id}/events", timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(":"):
                out.append((":", line))
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((name, line.removeprefix("data: ")))
    return out


def hessian_job(n: int) -> dict[str, Any]:
    x = np.linspace(-1.0, 1.0, n)
    return {
        "endpoint": "hessian",
        "request": {
            "expression": "sum(sin(x) ** 2) * sum(x)",
            "inputs": {"x": x.tolist()},
            "include_graph": False,
        },
    }


def expected_hessian(n: int) -> np.ndarray:
    x = np.linspace(-1.0, 1.0, n)
    b = np.sum(x)  # f = a * b with a = sum(sin(x)^2), da/dx = sin(2x)
    da = np.sin(2 * x)
    return np.diag(2 * np.cos(2 * x)) * b + np.outer(da, np.ones(n)) + np.outer(np.ones(n), da)


def job_progress_pid(store_dir: Path, job_id: str) -> int:
    """The pid of the job worker running ``job_id`` (its progress entry names it)."""
    store = SqliteStore(StoreConfig(directory=str(store_dir)))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = store.get_meta(f"job:{job_id}:progress")
            if meta is not None and "pid" in orjson.loads(meta):
                return int(orjson.loads(meta)["pid"])
            time.sleep(0.1)
    finally:
        store.close()
    pytest.fail("the job's worker never reported its progress")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _shared(urls: list[str]) -> None:
    """Submit through one server, poll and stream through the other: the same answer."""
    first, second = urls
    n = 200
    job_id = submit(first, hessian_job(n))
    stream = events(second, job_id)
    names = [name for name, _ in stream if name != ":"]
    assert names[-1] == "done", names
    assert set(names[:-1]) <= {"progress"}
    done = orjson.loads(stream[-1][1])
    progress = [orjson.loads(d)["progress"] for name, d in stream if name == "progress"]
    assert all(p["unit"] in ("chunks", "steps") for p in progress)
    assert done["progress"]["unit"] == "chunks"
    assert done["progress"]["done"] == done["progress"]["total"] > 1  # chunked: real units
    polled = get(second, job_id)
    assert polled["status"] == "done"
    for answer in (done["result"], polled["result"]):
        np.testing.assert_allclose(
            np.array(answer["hessian"]["x"]["x"]), expected_hessian(n), rtol=1e-10, atol=1e-10
        )
    # the synchronous endpoint's own answer, the same
    sync = httpx.post(f"{first}/hessian", json=hessian_job(n)["request"], timeout=60).json()
    assert sync["hessian"] == polled["result"]["hessian"]
    assert sync["value"] == polled["result"]["value"]


def test_two_servers_share_jobs_in_the_embedded_store(tmp_path: Path) -> None:
    with servers(2, store_dir=str(tmp_path)) as urls:
        _shared(urls)


def test_two_servers_share_jobs_in_a_real_redis(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url, servers(2, store_url=url) as urls:
        _shared(urls)
        # and a job another replica runs is cancelled through this one
        job_id = submit(urls[0], ENDLESS_JOB)
        wait_for(urls[1], job_id, ("running",))
        r = httpx.delete(f"{urls[1]}/jobs/{job_id}", timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert wait_for(urls[0], submit(urls[0], SMALL_JOB))["status"] == "done"


def test_past_the_synchronous_limit_a_job_completes(tmp_path: Path) -> None:
    # 2 s of loop here when the machine is idle (8 s when busy): past the limit of 0.5 s
    loop = ENDLESS.replace("1000000", "40000")
    request = {"expression": loop, "inputs": {"x": [0.1, 0.2]}, "include_graph": False}
    with servers(1, store_dir=str(tmp_path), time_limit_s="0.5") as (url,):
        sync = httpx.post(f"{url}/grad", json=request, timeout=60)
        assert sync.status_code == 504, sync.text
        job_id = submit(url, {"endpoint": "grad", "request": request})
        job = wait_for(url, job_id)
        assert job["status"] == "done", job
        assert len(job["result"]["gradients"]["x"]) == 2
        assert job["progress"]["unit"] == "iterations"  # a loop reports its iterations


def _latencies(url: str, count: int = 40) -> tuple[float, float]:
    health, grad = [], []
    with httpx.Client(timeout=30) as client:
        small = {"expression": "sum(x * x)", "inputs": {"x": [1.0, 2.0]}, "include_graph": False}
        for _ in range(count):
            t = time.perf_counter()
            assert client.get(f"{url}/healthz").status_code == 200
            health.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert client.post(f"{url}/grad", json=small).status_code == 200
            grad.append(time.perf_counter() - t)
    return statistics.median(health), statistics.median(grad)


def test_small_requests_stay_fast_while_jobs_run(tmp_path: Path) -> None:
    with servers(1, store_dir=str(tmp_path)) as (url,):
        _latencies(url, 10)  # warm
        idle_health, idle_grad = _latencies(url)
        job_id = submit(url, ENDLESS_JOB)
        waiting = submit(url, ENDLESS_JOB)
        wait_for(url, job_id, ("running",))
        busy_health, busy_grad = _latencies(url)
        for j in (job_id, waiting):
            httpx.delete(f"{url}/jobs/{j}", timeout=30)
    print(
        f"median ms idle/busy: healthz {idle_health * 1e3:.2f}/{busy_health * 1e3:.2f}, "
        f"grad {idle_grad * 1e3:.2f}/{busy_grad * 1e3:.2f}"
    )
    # loosely: a job on its own (niced) worker leaves the small requests near their idle
    # latency; 2 cores shared with other work here, so only a gross slowdown fails
    assert busy_health < max(10 * idle_health, 0.02)
    assert busy_grad < max(10 * idle_grad, 0.05)


def test_cancel_frees_the_worker_and_a_killed_worker_fails_its_job(tmp_path: Path) -> None:
    with servers(1, store_dir=str(tmp_path)) as (url,):
        # cancel a running job: its worker process is killed, the next job runs
        job_id = submit(url, ENDLESS_JOB)
        running = wait_for(url, job_id, ("running",))
        assert running["progress"]["unit"] in ("steps", "iterations")
        pid = job_progress_pid(tmp_path, job_id)
        r = httpx.delete(f"{url}/jobs/{job_id}", timeout=30)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), "the cancelled job's worker process still runs"
        assert wait_for(url, submit(url, SMALL_JOB), timeout=30)["status"] == "done"
        assert get(url, job_id)["status"] == "cancelled"
        # DELETE of a finished job leaves it as it is
        assert httpx.delete(f"{url}/jobs/{job_id}", timeout=30).json()["status"] == "cancelled"

        # a job worker killed mid-job: the job fails with a clear error, the next one runs
        job_id = submit(url, ENDLESS_JOB)
        wait_for(url, job_id, ("running",))
        os.kill(job_progress_pid(tmp_path, job_id), signal.SIGKILL)
        failed = wait_for(url, job_id, timeout=30)
        assert failed["status"] == "failed"
        assert failed["error"]["status"] == 502
        assert "worker process died" in failed["error"]["detail"]
        assert "result" not in failed
        assert wait_for(url, submit(url, SMALL_JOB), timeout=30)["status"] == "done"

        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'autodiff_jobs_total{status="cancelled"} 1.0' in metrics
        assert 'autodiff_jobs_total{status="failed"} 1.0' in metrics
        assert 'autodiff_jobs_total{status="done"} 2.0' in metrics
        assert "autodiff_job_duration_seconds_count" in metrics
        assert "autodiff_jobs_queued 0.0" in metrics
        assert "autodiff_jobs_running 0.0" in metrics


def test_the_job_time_limit_kills_the_job_and_frees_its_worker(tmp_path: Path) -> None:
    with servers(1, store_dir=str(tmp_path), job_time_limit_s="1.5") as (url,):
        job_id = submit(url, ENDLESS_JOB)
        failed = wait_for(url, job_id, timeout=30)
        assert failed["status"] == "failed"
        assert failed["error"]["status"] == 504
        assert "job_time_limit_s" in failed["error"]["detail"]
        assert failed["finished_at"] - failed["started_at"] < 10
        assert wait_for(url, submit(url, SMALL_JOB), timeout=30)["status"] == "done"


def test_finished_jobs_expire(tmp_path: Path) -> None:
    with servers(1, store_dir=str(tmp_path), job_ttl_s="1.5") as (url,):
        job_id = submit(url, SMALL_JOB)
        done = wait_for(url, job_id, timeout=30)
        assert done["status"] == "done"
        assert done["expires_at"] == pytest.approx(done["finished_at"] + 1.5)
        time.sleep(2.0)
        r = httpx.get(f"{url}/jobs/{job_id}", timeout=30)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("unknown-job")


def test_a_job_belongs_to_its_key_and_the_queues_are_limited(tmp_path: Path) -> None:
    a, b = {"X-API-Key": "key-a"}, {"Authorization": "Bearer key-b"}
    limits = {"job_queue_per_key": "1", "job_queue_size": "2"}
    with servers(1, store_dir=str(tmp_path), api_keys="key-a,key-b", **limits) as (url,):
        assert httpx.post(f"{url}/jobs", json=SMALL_JOB, timeout=30).status_code == 401
        job_id = submit(url, SMALL_JOB, **a)
        assert wait_for(url, job_id, **a)["status"] == "done"
        for method in ("GET", "DELETE"):
            r = httpx.request(method, f"{url}/jobs/{job_id}", headers=b, timeout=30)
            assert r.status_code == 404, (method, r.text)
        r = httpx.get(f"{url}/jobs/{job_id}/events", headers=b, timeout=30)
        assert r.status_code == 404
        assert httpx.get(f"{url}/jobs/{job_id}", timeout=30).status_code == 401

        running = submit(url, ENDLESS_JOB, **a)  # takes the one job worker
        wait_for(url, running, ("running",), **a)
        queued = submit(url, ENDLESS_JOB, **a)
        r = httpx.post(f"{url}/jobs", json=ENDLESS_JOB, headers=a, timeout=30)
        assert r.status_code == 503 and "job_queue_per_key" in r.json()["detail"]
        assert int(r.headers["retry-after"]) > 0
        other = submit(url, ENDLESS_JOB, **b)  # another key still may: 2 waiting in all
        r = httpx.post(f"{url}/jobs", json=SMALL_JOB, headers=b, timeout=30)
        assert r.status_code == 503 and "job_queue_size" in r.json()["detail"]
        # a cancelled queued job leaves the queue's count
        assert httpx.delete(f"{url}/jobs/{queued}", headers=a, timeout=30).status_code == 200
        assert get(url, queued, **a)["status"] == "cancelled"
        again = submit(url, ENDLESS_JOB, **a)
        for job, key in ((running, a), (other, b), (again, a)):
            httpx.delete(f"{url}/jobs/{job}", headers=key, timeout=30)


def test_a_restart_keeps_finished_results_and_fails_running_jobs(tmp_path: Path) -> None:
    with servers(1, store_dir=str(tmp_path)) as (url,):
        done_id = submit(url, hessian_job(30))
        done = wait_for(url, done_id)
        running_id = submit(url, ENDLESS_JOB)
        wait_for(url, running_id, ("running",))
    with servers(1, store_dir=str(tmp_path)) as (url,):
        assert get(url, done_id)["result"] == done["result"]
        failed = get(url, running_id)
        assert failed["status"] == "failed"
        assert "stopped before it finished" in failed["error"]["detail"]


def test_events_send_keep_alives_and_time_out(tmp_path: Path) -> None:
    with servers(1, store_dir=str(tmp_path), job_events_timeout_s="2") as (url,):
        running = submit(url, ENDLESS_JOB)
        wait_for(url, running, ("running",))
        job_id = submit(url, ENDLESS_JOB)  # waits behind it: nothing changes
        started = time.monotonic()
        stream = events(url, job_id, timeout=30)
        assert time.monotonic() - started < 10
        names = [name for name, _ in stream]
        assert names[0] == "progress"
        assert orjson.loads(stream[0][1])["status"] == "queued"
        assert ":" in names  # keep-alive comments while nothing changes
        assert names[-1] == "timeout"
        for job in (job_id, running):
            httpx.delete(f"{url}/jobs/{job}", timeout=30)


def test_results_too_large_for_the_store(tmp_path: Path) -> None:
    with servers(1, store_dir=str(tmp_path), job_max_result_mb="1") as (url,):
        # a Hessian's size is known from the inputs: refused at once, naming the limit
        r = httpx.post(f"{url}/jobs", json=hessian_job(400), timeout=30)
        assert r.status_code == 413 and "job_max_result_mb" in r.json()["detail"], r.text
        # a Jacobian's output size is known only once it runs: the job fails with a 413
        jac = {
            "endpoint": "jacobian",
            "request": {
                "expression": "outer(x, x)",
                "inputs": {"x": np.linspace(0, 1, 60).tolist()},
                "include_graph": False,
            },
        }
        failed = wait_for(url, submit(url, jac), timeout=60)
        assert failed["status"] == "failed", failed
        assert failed["error"]["status"] == 413
        # an invalid request is refused at once with its usual status
        bad = {"endpoint": "jacobian", "request": {"expression": "sum(x", "inputs": {"x": [1]}}}
        assert httpx.post(f"{url}/jobs", json=bad, timeout=30).status_code == 422
        r = httpx.post(f"{url}/jobs", json={"endpoint": "nope", "request": {}}, timeout=30)
        assert r.status_code == 422
        r = httpx.post(f"{url}/jobs", json={"endpoint": "grad", "request": {}}, timeout=30)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][:2] == ["body", "request"]
        assert httpx.get(f"{url}/jobs/job_{'0' * 32}", timeout=30).status_code == 404
        assert httpx.get(f"{url}/jobs/nonsense", timeout=30).status_code == 422


def test_a_job_past_its_memory_cap_fails_and_frees_its_worker(tmp_path: Path) -> None:
    # 400 MiB of float64 under a 300 MiB job cap; the synchronous pool keeps its own cap
    big = {
        "endpoint": "grad",
        "request": {
            "expression": "sum(x * ones((50000000,)))",
            "inputs": {"x": [1.0]},
            "include_graph": False,
        },
    }
    with servers(1, store_dir=str(tmp_path), job_memory_mb="300") as (url,):
        failed = wait_for(url, submit(url, big), timeout=60)
        assert failed["status"] == "failed", failed
        assert failed["error"]["status"] == 413
        assert "300 MiB" in failed["error"]["detail"], failed["error"]
        assert wait_for(url, submit(url, SMALL_JOB), timeout=30)["status"] == "done"
