"""The embedded SQLite queue: the backend contract plus file, URL and failure handling."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.backends.contract import BackendContract
from tests.unprivileged import run_as_nobody
from tq_orchestrate.backends import open_backend
from tq_orchestrate.backends._fq.layout import LEGACY_DATABASE_NAME
from tq_orchestrate.backends.base import Capabilities
from tq_orchestrate.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from tq_orchestrate.errors import BackendError, ConfigurationError, LeaseLostError


class SmallSQLiteBackend(SQLiteBackend):
    capabilities: ClassVar[Capabilities] = dataclasses.replace(
        SQLiteBackend.capabilities, max_batch_count=20, max_batch_bytes=4000, max_message_bytes=1000
    )


class TestSQLiteContract(BackendContract):
    lists_messages = True

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[SQLiteBackend]:
        backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db", max_receives=self.max_receives)
        yield backend
        backend.close()

    @pytest.fixture
    def limits_backend(self, tmp_path: Path) -> Iterator[SQLiteBackend]:
        backend = SmallSQLiteBackend.from_url(f"sqlite://{tmp_path}/small.db")
        yield backend
        backend.close()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SQLiteBackend]:
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    yield backend
    backend.close()


# -- URLs and options ---------------------------------------------------------


def test_absolute_relative_and_bare_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = open_backend(f"sqlite://{tmp_path}/abs/q.db")
    relative = open_backend("sqlite://rel/q.db")
    bare = open_backend("bare-name")
    assert isinstance(bare, SQLiteBackend) and isinstance(relative, SQLiteBackend)
    assert isinstance(absolute, SQLiteBackend)
    assert absolute.path == str(tmp_path / "abs" / "q.db")
    assert relative.path == str(tmp_path / "rel" / "q.db")
    assert bare.path == str(tmp_path / "bare-name")
    for backend in (absolute, relative, bare):
        assert not os.path.exists(backend.path)  # nothing happens before first use
        assert backend.send_batch(["x"]) == []
        assert os.path.isfile(backend.path)
        backend.close()


def test_fq_url_no_longer_opens_an_sqlite_database(tmp_path: Path) -> None:
    backend = open_backend(f"fq://{tmp_path}/jobs")
    try:
        assert not isinstance(backend, SQLiteBackend)
        assert backend.send_batch(["x"]) == []
    finally:
        backend.close()
    assert not (tmp_path / "jobs" / LEGACY_DATABASE_NAME).exists()


def test_options_from_query_and_keywords(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/q.db?max_receives=3&durability=full&busy_timeout_seconds=2.5"
    backend = SQLiteBackend.from_url(url)
    assert (backend.max_receives, backend.durability, backend.busy_timeout_seconds) == (3, "full", 2.5)
    assert SQLiteBackend.from_url(url, max_receives=7).max_receives == 7
    defaults = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    assert (defaults.max_receives, defaults.durability, defaults.busy_timeout_seconds) == (5, "normal", 30.0)


def test_unknown_option_names_it_and_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db", max_recieves=3)
    assert "max_recieves" in str(info.value)
    for name in ("max_receives", "durability", "busy_timeout_seconds"):
        assert name in str(info.value)
    with pytest.raises(ConfigurationError, match="region"):
        SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db?region=x")


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_receives", 0), ("max_receives", "many"), ("durability", "extreme"), ("busy_timeout_seconds", -1)],
)
def test_bad_option_values(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db", **{option: value})


@pytest.mark.parametrize("url", ["sqlite://", "sqlite://:memory:", "fq://"])
def test_url_without_a_file_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteBackend.from_url(url)


@pytest.mark.parametrize(("durability", "level"), [("normal", 1), ("full", 2)])
def test_durability_sets_synchronous(tmp_path: Path, durability: str, level: int) -> None:
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db", durability=durability)
    with backend._db("test") as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    backend.close()


# -- behaviour beyond the contract ----------------------------------------------


def test_messages_come_out_in_insertion_order(queue: SQLiteBackend) -> None:
    queue.send_batch([f"m{i}" for i in range(30)])
    got = [m.body for _ in range(3) for m in queue.receive(10, 60)]
    assert got == [f"m{i}" for i in range(30)]


def test_messages_survive_reopening(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    first = SQLiteBackend.from_url(url)
    first.send_batch(["kept 1", "kept 2", "kept 3"])
    (leased,) = first.receive(1, 60)
    first.delete([first.receive(1, 60)[0].handle])
    first.close()
    second = SQLiteBackend.from_url(url)
    counts = second.counts()
    assert (counts.visible, counts.leased, counts.inserted, counts.completed) == (1, 1, 3, 1)
    second.change_lease(leased.handle, 0)  # a lease taken before reopening is still valid
    assert sorted(m.body for m in second.receive(10, 60)) == ["kept 1", "kept 3"]
    second.close()


def test_redrive_keeps_message_ids(queue: SQLiteBackend) -> None:
    queue.send_batch(["a", "b"])
    got = queue.receive(2, 60)
    for m in got:
        queue.dead_letter(m.handle, "bad")
    queue.send_batch(["c"])
    assert queue.redrive() == 2
    again = queue.receive(10, 60)
    assert {m.message_id: m.body for m in again} == {
        **{m.message_id: m.body for m in got},
        again[-1].message_id: "c",
    }
    assert len({m.message_id for m in again}) == 3


def test_default_dead_letter_error_says_why(tmp_path: Path) -> None:
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db?max_receives=1")
    backend.send_batch(["once"])
    (m,) = backend.receive(1, 60)
    backend.change_lease(m.handle, 0)
    assert backend.receive(1, 60) == []
    (letter,) = backend.dead_letters()
    assert letter.receive_count == 1
    assert letter.error == "received 1 times without being deleted"
    backend.close()


def test_body_with_lone_surrogate_is_refused_alone(queue: SQLiteBackend) -> None:
    failures = queue.send_batch(["good", "bad \ud800", "fine"])
    assert [(f.index, f.code, f.retryable) for f in failures] == [(1, "InvalidBody", False)]
    assert sorted(m.body for m in queue.receive(10, 60)) == ["fine", "good"]


def test_non_text_body_is_refused_alone(queue: SQLiteBackend) -> None:
    failures = queue.send_batch(["good", b"bytes"])  # type: ignore[list-item]
    assert [(f.index, f.code) for f in failures] == [(1, "InvalidBody")]
    assert [m.body for m in queue.receive(10, 60)] == ["good"]


def test_malformed_handles(queue: SQLiteBackend) -> None:
    queue.send_batch(["x"])
    (m,) = queue.receive(1, 60)
    assert queue.delete(["nonsense", "12", "1:zz", m.handle.split(":")[0] + ":1"]) == 0
    with pytest.raises(LeaseLostError):
        queue.change_lease("nonsense", 10)
    with pytest.raises(LeaseLostError):
        queue.dead_letter("nonsense", "why")
    queue.record_error("nonsense", "ignored")
    assert queue.delete([m.handle, m.handle]) == 1


@pytest.mark.parametrize(
    ("max_messages", "lease_seconds", "wait_seconds"),
    [(0, 10, 0), (101, 10, 0), (1, -1, 0), (1, 8 * 24 * 3600, 0), (1, 10, -1)],
)
def test_receive_arguments_are_checked(
    queue: SQLiteBackend, max_messages: int, lease_seconds: float, wait_seconds: float
) -> None:
    with pytest.raises(ConfigurationError):
        queue.receive(max_messages, lease_seconds, wait_seconds)


def test_negative_delay_is_refused(queue: SQLiteBackend) -> None:
    with pytest.raises(ConfigurationError, match="delay_seconds"):
        queue.send_batch(["x"], delay_seconds=-1)


def test_purge_zeroes_counters_and_dead_letters(queue: SQLiteBackend) -> None:
    queue.send_batch(["a", "b"])
    (m,) = queue.receive(1, 60)
    queue.dead_letter(m.handle, "bad")
    queue.purge()
    counts = queue.counts()
    assert (counts.pending, counts.inserted, counts.completed, counts.dead) == (0, 0, 0, 0)


def test_threads_share_one_backend(queue: SQLiteBackend) -> None:
    errors: list[BaseException] = []

    def produce(k: int) -> None:
        try:
            for i in range(20):
                assert queue.send_batch([f"{k}-{i}-{j}" for j in range(10)]) == []
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert queue.counts().visible == queue.counts().inserted == 800


# -- failures -------------------------------------------------------------------


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/file/sub/q.db")
    with pytest.raises(BackendError) as info:
        backend.send_batch(["x"])
    assert str(tmp_path / "file" / "sub") in str(info.value)
    assert not info.value.retryable


def test_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "q.db").mkdir()
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    with pytest.raises(BackendError) as info:
        backend.counts()
    assert str(tmp_path / "q.db") in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "q.db").write_bytes(b"this is not sqlite" * 100)
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    with pytest.raises(BackendError, match="not a database"):
        backend.counts()


def _write_as_unprivileged_user(url: str) -> str:
    """Try a write as an unprivileged user (root ignores file modes)."""

    def write() -> str:
        SQLiteBackend.from_url(url).send_batch(["y"])
        return "no error"

    return run_as_nobody(write)


def test_read_only_file() -> None:
    directory = Path(tempfile.mkdtemp(prefix="tqo-ro-"))
    url = f"sqlite://{directory}/q.db"
    first = SQLiteBackend.from_url(url)
    first.send_batch(["x"])
    first.close()
    for name in os.listdir(directory):
        os.chmod(directory / name, 0o444)
    os.chmod(directory, 0o555)
    try:
        outcome = _write_as_unprivileged_user(url)
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(directory)
    assert outcome.startswith("BackendError: ")
    assert str(directory / "q.db") in outcome


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    backend = SQLiteBackend.from_url(f"sqlite://{path}")
    with pytest.raises(BackendError, match="newer") as info:
        backend.counts()
    assert not info.value.retryable


def test_busy_database_is_a_retryable_error(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    creator = SQLiteBackend.from_url(url)
    creator.counts()  # create the schema
    creator.close()
    blocker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        backend = SQLiteBackend.from_url(url, busy_timeout_seconds=0.05)
        with pytest.raises(BackendError) as info:
            backend.send_batch(["x"])
        assert info.value.retryable
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert backend.send_batch(["x"]) == []  # and works once the other writer is done
    backend.close()


def test_closed_backend_refuses_calls(queue: SQLiteBackend) -> None:
    queue.counts()
    queue.close()
    with pytest.raises(BackendError, match="closed"):
        queue.send_batch(["x"])


def test_old_sqlite_is_refused_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    with pytest.raises(BackendError, match=r"needs SQLite 3\.35\.0 or newer"):
        backend.counts()


def test_create_false_refuses_a_missing_file_naming_path_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend = open_backend("sqlite://typo.db", create=False)
    with pytest.raises(ConfigurationError) as info:
        backend.counts()
    text = str(info.value)
    assert str(tmp_path / "typo.db") in text and f"working directory {tmp_path}" in text
    assert not (tmp_path / "typo.db").exists()


def test_create_false_opens_an_existing_file(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    producer = open_backend(url)
    producer.send_batch(["x"])
    producer.close()
    backend = open_backend(f"{url}?create=false")
    assert backend.counts().visible == 1
    backend.close()


def test_create_option_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="create"):
        open_backend(f"sqlite://{tmp_path}/q.db", create="maybe")


def test_bodies_reads_past_one_chunk(tmp_path: Path) -> None:
    backend = SQLiteBackend.from_url(f"sqlite://{tmp_path}/q.db")
    bodies = [f"m{i}" for i in range(1234)]
    for start in range(0, len(bodies), 100):
        backend.send_batch(bodies[start : start + 100])
    assert list(backend.bodies()) == bodies
    backend.close()
