"""The file queue's spare files: deleted tasks' inodes rewritten by later inserts (``tqo/spare``)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
import taskqueue

from tq_orchestrate.backends._fq import spare
from tq_orchestrate.backends._fq.files import open_directories
from tq_orchestrate.backends.fq import FileQueueBackend

_IN_MEMORY = spare._in_memory


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spares are reusable at once (they wait a second in use)."""
    monkeypatch.setattr(spare, "MIN_AGE_SECONDS", 0.0)
    monkeypatch.setattr(spare, "_RECOUNT_SECONDS", 0.0)
    monkeypatch.setattr(spare, "_in_memory", lambda path: False)  # tmp_path may be on tmpfs


def _backend(path: Path, query: str = "") -> FileQueueBackend:
    return FileQueueBackend.from_url(f"fq://{path}{query}")


def _drain(backend: FileQueueBackend) -> int:
    done = 0
    while messages := backend.receive(100, 60):
        done += backend.delete([m.handle for m in messages])
    return done


def _inodes(directory: Path) -> set[int]:
    return {os.stat(directory / name).st_ino for name in os.listdir(directory)}


@pytest.mark.parametrize("query", ["", "?durability=full", "?movement_files=lazy"])
def test_deleted_files_are_rewritten_by_the_next_insert(tmp_path: Path, query: str) -> None:
    backend = _backend(tmp_path, query)
    backend.send_batch([f'{{"n": {i}, "pad": "{"x" * 300}"}}' for i in range(20)])
    assert _drain(backend) == 20
    pooled = _inodes(tmp_path / "tqo" / "spare")
    assert len(pooled) == (20 if "lazy" in query else 40)
    assert os.listdir(tmp_path / "queue") == os.listdir(tmp_path / "movement") == []

    bodies = [f'{{"n": {i}}}' for i in range(10)]
    assert _backend(tmp_path, query).send_batch(bodies) == []
    names = os.listdir(tmp_path / "queue")
    assert _inodes(tmp_path / "queue") <= pooled  # no new task file
    assert os.listdir(tmp_path / "tqo" / "tmp") == []
    for name in names:  # byte for byte what a new file holds
        ident = name.removeprefix("0--").removesuffix(".json")
        text = (tmp_path / "queue" / name).read_text()
        assert text.startswith('{"n": ') and text.endswith(f', "id": "{ident}"}}') and "pad" not in text
        if "lazy" not in query:
            assert (tmp_path / "movement" / ident).read_text() == name + "\n"
    if "lazy" not in query:
        assert _inodes(tmp_path / "movement") <= pooled
    assert sorted(backend.bodies()) == sorted(bodies)
    assert backend.counts().visible == 10


def test_upstream_never_sees_spares(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.send_batch(['{"n": 1}', '{"n": 2}'])
    assert _drain(backend) == 2
    assert len(os.listdir(tmp_path / "tqo" / "spare")) == 4
    theirs = taskqueue.TaskQueue(f"fq://{tmp_path}")
    assert theirs.enqueued == 0 and theirs.is_empty() and list(theirs.api) == []
    with pytest.raises(taskqueue.QueueEmptyError):
        theirs.lease(seconds=10, num_tasks=10)
    counts = backend.counts()
    assert (counts.visible, counts.leased, counts.delayed, counts.inserted, counts.completed) == (
        0,
        0,
        0,
        2,
        2,
    )

    backend.send_batch(['{"n": 3}'])  # from spares, leased and run by upstream
    (leased,) = theirs.api.lease(seconds=10, num_tasks=1)
    assert leased["n"] == 3
    theirs.api.delete(leased)
    assert os.listdir(tmp_path / "queue") == os.listdir(tmp_path / "movement") == []


def test_the_pool_is_bounded(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend._spares = spare.SparePool(backend.layout.spare, limit=8)
    backend.send_batch([f'{{"n": {i}}}' for i in range(30)])
    assert _drain(backend) == 30
    assert 0 < len(os.listdir(tmp_path / "tqo" / "spare")) <= 8
    assert os.listdir(tmp_path / "queue") == os.listdir(tmp_path / "movement") == []


def test_purge_empties_the_pool(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.send_batch(['{"n": 1}', '{"n": 2}'])
    _drain(backend)
    backend.send_batch(['{"n": 3}'])
    backend.purge()
    assert os.listdir(tmp_path / "tqo" / "spare") == []
    backend.send_batch(['{"n": 4}'])  # the names it had listed are gone: new files
    assert list(backend.bodies()) == ['{"n": 4}']


def _claim_all(directory: str, names: list[str], tag: str, start: float) -> list[int]:
    """Claim every spare it can (racing the other process); return the inodes it won."""
    won = []
    with open_directories(os.path.join(directory, "spare"), os.path.join(directory, "tmp")) as (sfd, tfd):
        todo = list(names)
        while time.time() < start:
            pass
        n = 0
        while True:
            fd = spare.claim(todo, sfd, tfd, f"{tag}-{n}")
            if fd is None:
                return won
            won.append(os.fstat(fd).st_ino)
            os.write(fd, tag.encode())
            os.close(fd)
            n += 1


def test_two_processes_never_claim_the_same_spare(tmp_path: Path) -> None:
    (tmp_path / "spare").mkdir()
    (tmp_path / "tmp").mkdir()
    for i in range(2000):
        (tmp_path / "spare" / f"{i}.1.{i}").write_bytes(b"old content")
    names = os.listdir(tmp_path / "spare")
    inodes = _inodes(tmp_path / "spare")
    start = time.time() + 0.5
    with multiprocessing.get_context("fork").Pool(2) as pool:
        a, b = pool.starmap(
            _claim_all, [(str(tmp_path), names, "a", start), (str(tmp_path), names[::-1], "b", start)]
        )
    assert not set(a) & set(b)
    assert set(a) | set(b) == inodes and len(a) + len(b) == 2000
    assert os.listdir(tmp_path / "spare") == []
    for name in os.listdir(tmp_path / "tmp"):  # each rewritten once, by its claimer
        assert (tmp_path / "tmp" / name).read_bytes() == name[0].encode()


def test_a_spare_is_never_written_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "spare").mkdir()
    (tmp_path / "tmp").mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    os.symlink(outside, tmp_path / "spare" / "1.1.1")
    os.link(outside, tmp_path / "spare" / "1.1.2")
    with open_directories(str(tmp_path / "spare"), str(tmp_path / "tmp")) as (sfd, tfd):
        assert spare.claim(["1.1.1", "1.1.2"], sfd, tfd, "mine") is None
    assert outside.read_bytes() == b"keep"
    assert os.listdir(tmp_path / "spare") == os.listdir(tmp_path / "tmp") == []


def test_young_spares_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spare, "MIN_AGE_SECONDS", 60.0)
    backend = _backend(tmp_path)
    backend.send_batch(['{"n": 1}'])
    _drain(backend)
    pooled = _inodes(tmp_path / "tqo" / "spare")
    backend.send_batch(['{"n": 2}'])
    assert _inodes(tmp_path / "tqo" / "spare") == pooled
    assert not _inodes(tmp_path / "queue") & pooled


def test_crash_leftovers_in_tmp_are_removed_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend(tmp_path)
    backend.send_batch(['{"n": 1}'])
    leftover = tmp_path / "tqo" / "tmp" / "0--crashed.json"  # a claimed spare, never renamed on
    leftover.write_bytes(b'{"half')
    _backend(tmp_path).send_batch(['{"n": 2}'])
    assert leftover.exists()  # young: may be a producer at work
    monkeypatch.setattr(spare, "STALE_SECONDS", -1.0)
    _backend(tmp_path).send_batch(['{"n": 3}'])
    assert not leftover.exists()
    assert sorted(backend.bodies()) == ['{"n": 1}', '{"n": 2}', '{"n": 3}']


def test_large_task_files_are_not_kept(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.send_batch(['{"n": "' + "x" * spare.MAX_BYTES + '"}', '{"n": 2}'])
    assert _drain(backend) == 2
    assert len(os.listdir(tmp_path / "tqo" / "spare")) == 3  # two movement files, one small task file


def test_no_pool_on_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spare, "_in_memory", lambda path: True)
    backend = _backend(tmp_path)
    backend.send_batch(['{"n": 1}'])
    assert _drain(backend) == 1
    assert os.listdir(tmp_path / "tqo" / "spare") == os.listdir(tmp_path / "queue") == []


def test_tmpfs_is_detected() -> None:
    if spare.statfs_magic("/dev/shm") != 0x01021994:
        pytest.skip("no tmpfs at /dev/shm")
    assert _IN_MEMORY("/dev/shm")
    assert not _IN_MEMORY("/") or spare.statfs_magic("/") == 0x01021994
