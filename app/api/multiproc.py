"""Where the server processes keep their metrics when there are several of them.

With several uvicorn processes (``UVICORN_WORKERS`` or ``WEB_CONCURRENCY`` above 1,
as ``make serve``, the image and ``autodiff serve`` run), prometheus-client's
multiprocess mode makes ``/metrics`` cover all of them, whichever answers the
scrape: each process writes its values to memory-mapped files in one directory
(``PROMETHEUS_MULTIPROC_DIR``) and a scrape sums them.

The directory is ``PROMETHEUS_MULTIPROC_DIR`` when the operator sets it (they then
empty it before each start, as prometheus-client asks). Otherwise the app makes
one itself: uvicorn's supervisor runs no code of ours, and neither ``make serve``
nor the image's ``CMD`` (plain uvicorn) has a step before it. Its name is keyed on
the supervisor, the parent process (its pid and start time), so sibling processes
agree on it without talking, a worker that uvicorn restarts joins it, and every
start of the server gets a fresh, empty one. A directory whose supervisor and
writers are all gone is removed at the next start. One process alone keeps the
plain in-memory registry.

The directory is made on ``/dev/shm`` (memory) when there is one: every request
writes to these memory-mapped files, and on a disk file system the kernel's
periodic write-back can make such a write wait. An operator's directory should
be a tmpfs too.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import stat
import tempfile

from app.settings import server_processes

ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "autodiff-metrics-"
_DIR_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)$")
_FILE_PID = re.compile(r"_(\d+)\.db$")
log = logging.getLogger("app.multiproc")


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after the last ')'
    # are fixed: state is field 3, starttime field 22.
    return int(text.rsplit(")", 1)[1].split()[19])


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_root() -> str:
    """Where the app makes its directory: ``/dev/shm`` (memory) if writable, else the temp dir."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def supervisor_dir(parent: int, root: str | None = None) -> str:
    """The directory the processes started by ``parent`` share."""
    name = f"{PREFIX}{parent}-{start_time(parent) or 0}"
    return os.path.join(root or default_root(), name)


def writers(path: str) -> set[int]:
    """The pids named by the metric files in ``path``."""
    found = set()
    for name in os.listdir(path):
        match = _FILE_PID.search(name)
        if match:
            found.add(int(match.group(1)))
    return found


def remove_stale(root: str | None = None, keep: str = "") -> list[str]:
    """Remove our directories whose supervisor and writers are all gone; return them."""
    removed = []
    for path in glob.glob(os.path.join(root or default_root(), PREFIX + "*")):
        match = _DIR_NAME.search(os.path.basename(path))
        if path == keep or match is None or not _owned_dir(path):
            continue
        pid, started = int(match.group(1)), int(match.group(2))
        if start_time(pid) == started and started != 0:
            continue  # its supervisor still runs
        with contextlib.suppress(OSError):
            if any(alive(p) for p in writers(path)):
                continue
            shutil.rmtree(path)
            removed.append(path)
    return removed


def _owned_dir(path: str) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


def configure(root: str | None = None) -> str | None:
    """The multiprocess directory for this process (setting ``PROMETHEUS_MULTIPROC_DIR``
    when the app made it), or None for the in-memory registry of a single process."""
    given = os.environ.get(ENV)
    if given:
        return given
    if server_processes() <= 1:
        return None
    path = supervisor_dir(os.getppid(), root)
    remove_stale(root, keep=path)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    # /tmp is shared: a directory someone else made (or a link) is not ours to write to.
    if not _owned_dir(path):
        log.warning("%s is not a directory of ours: metrics cover this process only", path)
        return None
    os.environ[ENV] = path
    return path


def reap_dead(path: str) -> None:
    """Drop the live gauges of processes that died without saying so (killed, crashed)."""
    from prometheus_client import multiprocess

    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _FILE_PID.search(name)
        if match and not alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path)


def mark_dead(path: str) -> None:
    """This process is stopping: its live gauges leave the sums (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid(), path)
