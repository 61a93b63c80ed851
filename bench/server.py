"""The real service under uvicorn as a subprocess on a loopback port, and its memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from bench.machine import bench_env

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# What `make serve` runs: two server processes, uvicorn's own access log off.
DEFAULT_ENV = {"UVICORN_WORKERS": "2"}
READY_IN_A_ROW = 10  # /readyz answers from either process: both must have their pool up


class Server:
    """``uvicorn app.main:app`` as ``make serve`` runs it (plus ``env``), as a context manager."""

    def __init__(
        self,
        log_path: Path,
        env: dict[str, str] | None = None,
        port: int = 0,
        repo: Path | None = None,
    ) -> None:
        self.repo = repo or REPO  # another tree's app/ (A/B runs): `python -m` puts it first
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**DEFAULT_ENV, **bench_env(), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
        ]
        # Its own session: the pool's processes go with it when we stop it by its group id.
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.repo,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        in_a_row = 0
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:  # a new connection each time, so either process may answer
                ready = httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                ready = False
            in_a_row = in_a_row + 1 if ready else 0
            if in_a_row >= READY_IN_A_ROW:
                return
            time.sleep(0.05 if ready else 0.2)
        raise RuntimeError(f"service not ready after {timeout_s} s; see {self.log_path}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    @property
    def pid(self) -> int:
        """The uvicorn process id."""
        assert self.proc is not None
        return self.proc.pid


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces; fields after its closing parenthesis are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (pool workers, the forkserver)."""
    kids = _children()
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, []))
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> dict[int, int]:
    """VmRSS in KiB of ``pid`` and each of its descendants."""
    return {p: rss_kib(p) for p in descendants(pid)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (0 for those gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat", encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick
