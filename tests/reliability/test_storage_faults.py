"""The embedded queue when its storage fails: full, read-only, locked for a long time.

Each case must give a clear error (naming the file and what went wrong), leave
the database intact (``PRAGMA integrity_check``), and keep every task that was
accepted before. A full disk is simulated two ways: SQLite's
``PRAGMA max_page_count`` on the writing connection, and a file size limit
(``RLIMIT_FSIZE``) in a forked child.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import signal
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._harness import Numbered, check_prefixes
from tests.unprivileged import run_as_nobody
from tq_orchestrate import RetryPolicy, TaskQueue, UploadError
from tq_orchestrate.backends.sqlite import SQLiteBackend
from tq_orchestrate.errors import BackendError

FAST_RETRY = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.05)


def rows_and_integrity(path: Path) -> tuple[int, int]:
    """(rows in the queue, the queue's inserted total), after checking the file is intact."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (rows,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
        (inserted,) = conn.execute("SELECT inserted FROM stats").fetchone()
    finally:
        conn.close()
    return rows, inserted


def test_a_full_database_refuses_clearly_and_keeps_every_accepted_task(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    tq = TaskQueue(f"sqlite://{path}", progress=False, retry=FAST_RETRY)
    assert tq.insert_all(Numbered(0, 3000)) == 3000
    backend = tq.backend
    assert isinstance(backend, SQLiteBackend)
    with backend._db("test") as conn:  # white-box: cap this connection's file at 40 more pages
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 40}")
    with pytest.raises(UploadError) as info:
        tq.insert_all(Numbered(3000, 200_000))
    error = info.value
    assert "database or disk is full" in str(error) and str(path) in str(error)
    assert isinstance(error.__cause__, BackendError) and not error.__cause__.retryable
    assert error.failed and all("full" in why for _, why in error.failed)
    # what insert_all said it inserted is there, in whole batches, and nothing else
    assert check_prefixes(path, 200_000, 1) == 3000 + error.inserted
    # a full queue still drains: leasing and deleting need no new pages
    leased = tq.lease(seconds=60, num_tasks=10)
    assert tq.delete(leased) == 10
    assert tq.counts().completed == 10
    tq.close()


def _fill_under_a_file_size_limit(url: str, limit: int, out: Any) -> None:
    """Forked child: insert until the file size limit bites; report what insert_all said."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    tq = TaskQueue(url, progress=False, retry=FAST_RETRY)
    try:
        tq.insert_all(Numbered(1000, 10**7))
    except UploadError as e:
        out.put(("UploadError", str(e), e.inserted, type(e.__cause__).__name__))
    except BaseException as e:
        out.put((type(e).__name__, str(e), -1, ""))
    else:
        out.put(("no error", "", -1, ""))


def test_a_file_size_limit_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    url = f"sqlite://{path}"
    with TaskQueue(url, progress=False) as tq:
        assert tq.insert_all(Numbered(0, 1000)) == 1000
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_fill_under_a_file_size_limit, args=(url, max(sizes) + 512 * 1024, out))
    child.start()
    kind, message, inserted, cause = out.get(timeout=60)
    child.join(60)
    assert (kind, cause) == ("UploadError", "BackendError"), message
    assert str(path) in message and ("full" in message or "disk I/O error" in message), message
    rows, counted = rows_and_integrity(path)
    assert rows == counted == 1000 + inserted
    with TaskQueue(url, progress=False) as tq:  # reopens cleanly; every row a whole task
        tasks = []
        while batch := tq.receive(10, 60):
            tasks += [tq.decode(m) for m in batch]
        assert sorted(getattr(t, "n") for t in tasks) == list(range(1000 + inserted))  # noqa: B009


def test_a_read_only_database_refuses_clearly_and_stays_intact() -> None:
    directory = Path(tempfile.mkdtemp(prefix="tqo-ro-"))
    path = directory / "q.db"
    url = f"sqlite://{path}"
    with TaskQueue(url, progress=False) as tq:
        assert tq.insert_all(Numbered(0, 500)) == 500
    for name in os.listdir(directory):
        os.chmod(directory / name, 0o444)
    os.chmod(directory, 0o555)

    def insert() -> str:
        TaskQueue(url, progress=False, retry=FAST_RETRY).insert_all(Numbered(500, 600))
        return "inserted"

    def lease() -> str:
        return repr(TaskQueue(url, progress=False).lease(seconds=60))

    try:
        inserting, leasing = run_as_nobody(insert), run_as_nobody(lease)
        os.chmod(directory, 0o755)
        for name in os.listdir(directory):
            os.chmod(directory / name, 0o644)
        assert inserting.startswith("UploadError: "), inserting
        assert leasing.startswith("BackendError: "), leasing
        for outcome in (inserting, leasing):
            assert str(path) in outcome and ("readonly" in outcome or "unable to open" in outcome), outcome
        assert rows_and_integrity(path) == (500, 500)
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(directory)


@pytest.fixture
def locked(tmp_path: Path) -> Any:
    """A queue of 100 tasks and a connection holding ``BEGIN EXCLUSIVE`` on it until released."""
    path = tmp_path / "q.db"
    with TaskQueue(f"sqlite://{path}", progress=False) as tq:
        assert tq.insert_all(Numbered(0, 100)) == 100
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            blocker.execute("COMMIT")

    yield path, release
    release()
    blocker.close()


def test_inserting_into_a_long_locked_database_fails_clearly_and_inserts_nothing(locked: Any) -> None:
    path, release = locked
    tq = TaskQueue(f"sqlite://{path}", progress=False, retry=FAST_RETRY, busy_timeout_seconds=0.1)
    with pytest.raises(UploadError) as info:
        tq.insert_all(Numbered(100, 2100))
    error = info.value
    assert error.inserted == 0 and sorted(i for i, _ in error.failed) == list(range(2000))
    assert "locked" in str(error) and "after 3 attempts" in str(error)
    release()
    assert rows_and_integrity(path) == (100, 100)
    assert tq.insert_all(Numbered(100, 2100)) == 2000  # nothing half-done is in the way
    assert check_prefixes(path, 2100, 1, batch=100) == 2100
    tq.close()


def test_inserts_retry_through_a_lock_that_is_released(locked: Any) -> None:
    path, release = locked
    timer = threading.Timer(1.0, release)
    timer.start()
    retry = RetryPolicy(attempts=15, initial_seconds=0.05, max_seconds=0.5)
    tq = TaskQueue(f"sqlite://{path}", progress=False, retry=retry, busy_timeout_seconds=0.1)
    try:
        assert tq.insert_all(Numbered(100, 3100)) == 3000
    finally:
        timer.join()
    assert check_prefixes(path, 3100, 1, batch=100) == 3100  # every task exactly once
    tq.close()


def test_a_worker_waits_out_a_lock_and_then_drains(locked: Any, caplog: pytest.LogCaptureFixture) -> None:
    path, release = locked
    timer = threading.Timer(1.0, release)
    timer.start()
    tq = TaskQueue(f"sqlite://{path}", progress=False, busy_timeout_seconds=0.1)
    try:
        with caplog.at_level("WARNING", logger="tq_orchestrate.worker"):
            executed = tq.poll(
                lease_seconds=60,
                min_backoff_window=0.05,
                max_backoff_window=0.2,
                burst_seconds=0.3,
                num_tasks=10,
            )
    finally:
        timer.join()
    assert executed == 100
    assert any(
        "receive failed, backing off" in r.getMessage() and "locked" in r.getMessage() for r in caplog.records
    )
    counts = tq.counts()
    assert (counts.pending, counts.completed) == (0, 100)
    tq.close()
