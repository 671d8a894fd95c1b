"""fq:// shared both ways with the real python-task-queue, in one directory at once.

Producers and workers of both packages run as subprocesses (this module is their
entry point: ``python -m tests.backends.test_fq_upstream ROLE DIR ...``); a worker
of each side is killed with SIGKILL mid-run. Every task must run at least once and
both packages must read the same counts.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import taskqueue
from taskqueue import queueable as upstream_queueable

from tq_orchestrate import TaskQueue, queueable
from tq_orchestrate.backends.fq import FileQueueBackend

ROOT = Path(__file__).resolve().parents[2]

# upstream's is_empty() and leased leave os.scandir iterators open (a ResourceWarning at collection)
pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning"
)


@queueable
@upstream_queueable  # type: ignore[misc]
def record(log: str, tag: str, sleep_seconds: float = 0.0) -> None:
    """Append ``tag`` to ``log`` (one line, O_APPEND), after sleeping a little."""
    time.sleep(sleep_seconds)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)


def _tasks(log: str, prefix: str, n: int, sleep_seconds: float) -> list[functools.partial[None]]:
    return [functools.partial(record, log, f"{prefix}{i}", sleep_seconds) for i in range(n)]


def _main(argv: list[str]) -> None:
    role, directory, log = argv[:3]
    url = f"fq://{directory}"
    if role.startswith("produce-ours") or role.startswith("work-ours"):
        url += os.environ.get("TQO_FQ_QUERY", "")
    if role == "produce-upstream":
        prefix, n, pause = argv[3], int(argv[4]), float(argv[5])
        taskqueue.TaskQueue(url, progress=False).insert(_tasks(log, prefix, n, pause))
    elif role == "produce-ours":
        prefix, n, pause = argv[3], int(argv[4]), float(argv[5])
        TaskQueue(url, progress=False).insert(_tasks(log, prefix, n, pause))
    elif role == "work-upstream":
        up = taskqueue.TaskQueue(url, progress=False)
        up.poll(
            lease_seconds=2, tally=True, min_backoff_window=0.05, max_backoff_window=0.2, stop_fn=up.is_empty
        )
    elif role == "work-ours":
        TaskQueue(url, progress=False).poll(
            lease_seconds=2, num_tasks=5, burst_seconds=1.0, min_backoff_window=0.05, max_backoff_window=0.2
        )
    else:
        raise SystemExit(f"unknown role {role}")


def _spawn(*args: str, query: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQO_FQ_QUERY": query}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.backends.test_fq_upstream", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(procs: list[subprocess.Popen[bytes]], timeout_seconds: float = 90) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout_seconds)
        assert p.returncode == 0, err.decode()[-2000:]


def _lines(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def _agree(directory: Path) -> None:
    """Our counts and upstream's figures are the same numbers."""
    ours = FileQueueBackend.from_url(f"fq://{directory}").counts()
    up = taskqueue.TaskQueue(f"fq://{directory}", progress=False)
    assert (ours.pending, ours.leased + ours.delayed, ours.inserted, ours.completed) == (
        up.enqueued,
        up.leased,
        up.inserted,
        up.completed,
    )


@pytest.mark.parametrize("query", ["", "?movement_files=lazy"])
def test_upstream_producer_our_worker_and_back(tmp_path: Path, query: str) -> None:
    log = tmp_path / "log"
    up = taskqueue.TaskQueue(f"fq://{tmp_path}/q", progress=False)
    up.insert(_tasks(str(log), "u", 5, 0))
    ours = TaskQueue(f"fq://{tmp_path}/q{query}", progress=False)
    assert ours.counts().visible == 5
    assert ours.poll(lease_seconds=30, num_tasks=3, burst_seconds=0.1) == 5
    ours.insert(_tasks(str(log), "o", 4, 0))
    assert up.poll(lease_seconds=30, tally=True, stop_fn=up.is_empty) == 4
    assert _lines(log) == Counter([*(f"u{i}" for i in range(5)), *(f"o{i}" for i in range(4))])
    assert (up.inserted, up.completed, up.enqueued) == (9, 9, 0)
    _agree(tmp_path / "q")


def test_upstream_renews_cancels_and_deletes_our_leases_by_id(tmp_path: Path) -> None:
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    up = taskqueue.TaskQueue(f"fq://{tmp_path}", progress=False)
    up.insert(_tasks(str(tmp_path / "log"), "x", 2, 0))
    first, second = backend.receive(2, 60)
    assert up.enqueued == 2 and up.leased == 2
    up.api.cancel_lease(first.message_id)  # upstream's release of a task we leased ...
    assert backend.delete([first.handle]) == 0  # ... ends our lease: we must not delete it
    again = backend.receive(1, 60)[0]
    assert (again.message_id, again.receive_count) == (first.message_id, 2)
    up.delete(second.message_id)  # upstream deletes by id whatever the lease
    assert backend.delete([second.handle, again.handle]) == 1
    assert up.enqueued == 0 and os.listdir(tmp_path / "movement") == []


def test_our_release_all_purge_and_rezero_seen_by_upstream(tmp_path: Path) -> None:
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    up = taskqueue.TaskQueue(f"fq://{tmp_path}", progress=False)
    up.insert(_tasks(str(tmp_path / "log"), "r", 3, 0))
    up.insert(_tasks(str(tmp_path / "log"), "d", 1, 0), delay_seconds=600)
    backend.receive(2, 600)
    assert up.leased == 3  # upstream cannot tell leased from delayed
    assert (backend.counts().leased, backend.counts().delayed) == (2, 1)
    assert backend.release_all() == 2
    assert up.leased == 1 and len(up.api.lease(60, 10)) == 3
    backend.rezero()
    assert (up.inserted, up.completed) == (0, 0)
    backend.purge()
    assert up.is_empty() and up.enqueued == 0
    assert sorted(backend.bodies()) == []


@pytest.mark.timeout(180)
@pytest.mark.parametrize("query", ["", "?movement_files=lazy"])
def test_mixed_producers_and_workers_with_kill_9(tmp_path: Path, query: str) -> None:
    directory, log = str(tmp_path / "q"), str(tmp_path / "log")
    n = 60
    spawn = functools.partial(_spawn, query=query)
    producers = [
        spawn("produce-upstream", directory, log, "U", str(n), "0.02"),
        spawn("produce-ours", directory, log, "O", str(n), "0.02"),
    ]
    victims = [spawn("work-upstream", directory, log), spawn("work-ours", directory, log)]
    _wait(producers)
    deadline = time.monotonic() + 60
    while sum(_lines(Path(log)).values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in victims:  # mid-task, each holding a lease that is never deleted
        p.send_signal(signal.SIGKILL)
        p.wait()
    producers = [
        spawn("produce-upstream", directory, log, "V", str(n), "0"),
        spawn("produce-ours", directory, log, "P", str(n), "0"),
    ]
    _wait(producers)
    _wait([spawn("work-upstream", directory, log), spawn("work-ours", directory, log)])
    _wait([spawn("work-ours", directory, log)])  # what expired after upstream's worker saw it empty
    seen = _lines(Path(log))
    expected = {f"{p}{i}" for p in "UOVP" for i in range(n)}
    assert expected - set(seen) == set(), "tasks never executed"
    assert set(seen) == expected
    counts = FileQueueBackend.from_url(f"fq://{directory}").counts()
    assert (counts.pending, counts.inserted) == (0, 4 * n)
    assert counts.completed is not None and counts.completed >= 4 * n
    _agree(Path(directory))


if __name__ == "__main__":
    _main(sys.argv[1:])
