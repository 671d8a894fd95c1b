"""The SQLite queue under several real processes: disjoint leases, kill -9 while writing or leasing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Literal

import pytest

from tq_orchestrate.backends.sqlite import SQLiteBackend

pytestmark = pytest.mark.slow

DEADLINE_SECONDS = 60.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _lease_until_empty(url: str, start: Barrier, out: multiprocessing.Queue[list[tuple[str, str]]]) -> None:
    """Child: lease everything it can (leases stay live), then delete it all and report."""
    backend = SQLiteBackend.from_url(url)
    start.wait(DEADLINE_SECONDS)
    mine = []
    while batch := backend.receive(10, 600):
        mine.extend(batch)
    start.wait(DEADLINE_SECONDS)  # every process is done leasing before anyone deletes
    backend.delete([m.handle for m in mine])
    out.put([(m.message_id, m.body) for m in mine])
    backend.close()


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_processes_lease_disjoint_messages(tmp_path: Path, start_method: Literal["fork", "spawn"]) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    n, workers = 2000, 4
    backend = SQLiteBackend.from_url(url)
    for start in range(0, n, 500):
        assert backend.send_batch([f"task {i}" for i in range(start, start + 500)]) == []
    ctx = (
        multiprocessing.get_context("fork")
        if start_method == "fork"
        else multiprocessing.get_context("spawn")
    )
    start_line = ctx.Barrier(workers)
    results: multiprocessing.Queue[list[tuple[str, str]]] = ctx.Queue()
    procs = [ctx.Process(target=_lease_until_empty, args=(url, start_line, results)) for _ in range(workers)]
    for p in procs:
        p.start()
    per_worker = [results.get(timeout=DEADLINE_SECONDS) for _ in procs]
    for p in procs:
        p.join(DEADLINE_SECONDS)
        assert p.exitcode == 0
    leased = [item for chunk in per_worker for item in chunk]
    assert len(leased) == len(set(leased)) == n
    assert sorted(body for _, body in leased) == sorted(f"task {i}" for i in range(n))
    counts = backend.counts()
    assert (counts.pending, counts.inserted, counts.completed) == (0, n, n)
    backend.close()


def _insert_forever(url: str, batch: int) -> None:
    """Child: insert numbered bodies (continuing the count), one transaction per batch, until killed."""
    backend = SQLiteBackend.from_url(url)
    number = backend.counts().inserted or 0
    while True:
        backend.send_batch([f"{i}" for i in range(number, number + batch)])
        number += batch


def _kill_while_inserting(url: str, batch: int, batches: int) -> None:
    ctx = multiprocessing.get_context("fork")
    watcher = SQLiteBackend.from_url(url)
    goal = (watcher.counts().inserted or 0) + batches * batch
    child = ctx.Process(target=_insert_forever, args=(url, batch))
    child.start()
    try:
        wait_for(lambda: (watcher.counts().inserted or 0) >= goal, f"{batches} more batches")
    finally:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(DEADLINE_SECONDS)
        watcher.close()
    assert child.exitcode == -signal.SIGKILL


def _check_whole_batches(path: Path, batch: int) -> int:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        numbers = sorted(int(body) for (body,) in conn.execute("SELECT body FROM messages"))
        inserted, completed = conn.execute("SELECT inserted, completed FROM stats").fetchone()
    finally:
        conn.close()
    assert len(numbers) % batch == 0
    assert numbers == list(range(len(numbers)))
    assert (inserted, completed) == (len(numbers), 0)
    return len(numbers)


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_kill_during_inserts_leaves_whole_batches(tmp_path: Path, durability: str) -> None:
    url = f"sqlite://{tmp_path}/q.db?durability={durability}"
    batch = 1000
    previous = 0
    for _ in range(3):  # each round appends after a killed writer: the file stays usable
        _kill_while_inserting(url, batch, 10)
        total = _check_whole_batches(tmp_path / "q.db", batch)
        assert total >= previous + 10 * batch
        previous = total
    reopened = SQLiteBackend.from_url(url)
    assert reopened.counts().visible == previous
    assert reopened.send_batch(["after the crash"]) == []
    reopened.close()


def _lease_and_hang(url: str, leased: Event) -> None:
    backend = SQLiteBackend.from_url(url)
    got = backend.receive(10, 2)
    assert len(got) == 5
    leased.set()
    time.sleep(DEADLINE_SECONDS)


def test_leases_of_a_killed_worker_come_back(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    backend = SQLiteBackend.from_url(url)
    backend.send_batch([f"job {i}" for i in range(5)])
    ctx = multiprocessing.get_context("fork")
    leased = ctx.Event()
    child = ctx.Process(target=_lease_and_hang, args=(url, leased))
    child.start()
    try:
        assert leased.wait(DEADLINE_SECONDS)
    finally:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(DEADLINE_SECONDS)
    assert backend.counts().leased + backend.counts().visible == 5
    again: list[str] = []

    def all_back() -> bool:
        again.extend(m.body for m in backend.receive(10, 600) if m.receive_count == 2)
        return len(again) == 5

    wait_for(all_back, "the killed worker's messages")
    assert sorted(again) == [f"job {i}" for i in range(5)]
    backend.close()


def _use_inherited(backend: SQLiteBackend, out: multiprocessing.Queue[tuple[bool, int]]) -> None:
    # white-box: the parent's connection was closed before the fork or is set aside by pid
    fresh = backend._conn is None or backend._pid != os.getpid()
    got = backend.receive(10, 600)
    out.put((fresh, backend.delete([m.handle for m in got])))


def test_a_forked_child_can_use_the_parents_backend(tmp_path: Path) -> None:
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    backend.send_batch([f"m{i}" for i in range(20)])
    assert backend.counts().visible == 20  # the parent's connection is open when it forks
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[tuple[bool, int]] = ctx.Queue()
    children = [ctx.Process(target=_use_inherited, args=(backend, out)) for _ in range(2)]
    for child in children:
        child.start()
    parent_got = backend.receive(10, 600)
    reports = [out.get(timeout=DEADLINE_SECONDS) for _ in children]
    assert all(fresh for fresh, _ in reports)
    deleted = [n for _, n in reports]
    for child in children:
        child.join(DEADLINE_SECONDS)
        assert child.exitcode == 0
    assert sum(deleted) + len(parent_got) == 20
    assert backend.delete([m.handle for m in parent_got]) == len(parent_got)
    counts = backend.counts()
    assert (counts.pending, counts.completed) == (0, 20)
    backend.close()
