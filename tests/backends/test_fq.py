"""The file queue (python-task-queue's fq:// format): the backend contract plus its own rules."""

from __future__ import annotations

import dataclasses
import errno
import functools
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests import compat_fns
from tests.backends.contract import BackendContract
from tests.unprivileged import run_as_nobody
from tq_orchestrate.backends import fq as fq_module
from tq_orchestrate.backends import open_backend
from tq_orchestrate.backends._fq import files as fq_files
from tq_orchestrate.backends._fq import writer as fq_writer
from tq_orchestrate.backends.base import Capabilities
from tq_orchestrate.backends.fq import FileQueueBackend
from tq_orchestrate.errors import BackendError, ConfigurationError, TaskQueueError


class SmallFileQueueBackend(FileQueueBackend):
    capabilities: ClassVar[Capabilities] = dataclasses.replace(
        FileQueueBackend.capabilities, max_batch_count=20, max_batch_bytes=4000, max_message_bytes=1000
    )


class TestFileQueueContract(BackendContract):
    lists_messages = True

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[FileQueueBackend]:
        backend = FileQueueBackend.from_url(f"fq://{tmp_path}/q", max_receives=self.max_receives)
        yield backend
        backend.close()

    @pytest.fixture
    def limits_backend(self, tmp_path: Path) -> Iterator[FileQueueBackend]:
        backend = SmallFileQueueBackend.from_url(f"fq://{tmp_path}/small")
        yield backend
        backend.close()


class TestFileQueueLazyMovementContract(TestFileQueueContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[FileQueueBackend]:
        url = f"fq://{tmp_path}/q?movement_files=lazy"
        backend = FileQueueBackend.from_url(url, max_receives=self.max_receives)
        yield backend
        backend.close()


class TestFileQueueRenameFallbackContract(TestFileQueueContract):
    """Where O_TMPFILE is not supported (NFS, FUSE, not Linux): written in tqo/tmp and renamed."""

    @pytest.fixture
    def backend(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileQueueBackend]:
        monkeypatch.setattr(fq_module, "supports_tmpfile", lambda dir_fd, scratch_dir_fd: False)
        backend = FileQueueBackend.from_url(f"fq://{tmp_path}/q", max_receives=self.max_receives)
        yield backend
        assert not backend._tmpfile
        backend.close()


def test_fq_scheme_is_the_file_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = open_backend(f"fq://{tmp_path}/abs")
    relative = open_backend("fq://rel/dir?max_receives=2")
    assert isinstance(absolute, FileQueueBackend) and isinstance(relative, FileQueueBackend)
    assert (absolute.path, relative.path) == (str(tmp_path / "abs"), str(tmp_path / "rel" / "dir"))
    assert relative.max_receives == 2
    assert not os.path.exists(absolute.path)  # nothing happens before first use


# -- the format, and bad input -------------------------------------------------


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "rename"])
def test_insert_writes_upstreams_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmpfile: bool
) -> None:
    if not tmpfile:
        monkeypatch.setattr(fq_module, "supports_tmpfile", lambda dir_fd, scratch_dir_fd: False)
    else:
        with fq_files.open_directories(str(tmp_path)) as (fd,):
            if not fq_files.supports_tmpfile(fd, fd):
                pytest.skip("no O_TMPFILE here")
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    assert backend.send_batch(['{"payload": {"class": "T"}, "queueName": "q"}', "plain"]) == []
    assert backend._tmpfile is tmpfile
    assert _files(tmp_path / "tqo" / "tmp") == []
    umask = os.umask(0)
    os.umask(umask)
    for directory in ("queue", "movement"):
        for path in (tmp_path / directory).iterdir():
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as upstream's open(path, "w")
    names = _files(tmp_path / "queue")
    idents = sorted(name.split("--")[1][: -len(".json")] for name in names)
    assert all(name.startswith("0--") for name in names)
    assert _files(tmp_path / "movement") == idents
    for name in names:
        ident = name.split("--")[1][: -len(".json")]
        assert (tmp_path / "movement" / ident).read_text() == name + "\n"
        text = (tmp_path / "queue" / name).read_text()
        assert text in ("plain", '{"payload": {"class": "T"}, "queueName": "q", "id": "' + ident + '"}')
    assert (tmp_path / "insertions").read_text() == "2"
    (message,) = backend.receive(1, 60)
    ident = message.message_id
    leased = f"{message.handle.split('--')[0]}--{ident}.json"
    assert (tmp_path / "movement" / ident).read_text() == f"0--{ident}.json\n{leased}\n"
    assert backend.delete([message.handle]) == 1
    assert (tmp_path / "completions").read_bytes() == b"\0"
    assert not (tmp_path / "movement" / ident).exists()


def _raise(code: int) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


def test_tmpfile_probe_falls_back_where_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if fq_files._TMPFILE and os.path.isdir("/proc/self/fd"):
            assert fq_files.supports_tmpfile(fd, fd) is True  # Linux, a local filesystem
        with monkeypatch.context() as patch:  # /proc hidden (a container): the link fails
            patch.setattr(fq_files.os, "link", _raise(errno.EACCES))
            assert fq_files.supports_tmpfile(fd, fd) is False
        real_open = os.open

        def refuse_tmpfile(path: str, flags: int, *args: object, **kwargs: object) -> int:
            if flags & fq_files._TMPFILE == fq_files._TMPFILE:
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(fq_files.os, "open", refuse_tmpfile)
        assert fq_files.supports_tmpfile(fd, fd) is False
        monkeypatch.setattr(fq_files, "_TMPFILE", 0)  # not Linux
        assert fq_files.supports_tmpfile(fd, fd) is False
    finally:
        os.close(fd)
    assert list(tmp_path.iterdir()) == []


def test_old_mapping_directory_gets_the_migration_command(tmp_path: Path) -> None:
    from tq_orchestrate.backends.sqlite import SQLiteBackend

    old = SQLiteBackend.from_url(f"sqlite://{tmp_path}/tq_orchestrate.sqlite3")
    old.send_batch(["old task"])
    old.close()
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    with pytest.raises(ConfigurationError) as info:
        backend.receive(1, 60)
    assert f"tqo copy --move sqlite://{tmp_path}/tq_orchestrate.sqlite3 fq://{tmp_path}" in str(info.value)
    with pytest.raises(ConfigurationError):
        backend.counts()
    assert backend.send_batch(["copied"]) == []  # the copy itself writes into the directory
    for name in os.listdir(tmp_path):
        if name.startswith("tq_orchestrate.sqlite3"):
            os.unlink(tmp_path / name)
    assert [m.body for m in FileQueueBackend.from_url(f"fq://{tmp_path}").receive(10, 60)] == ["copied"]


def test_the_migration_command_works(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tq_orchestrate import TaskQueue
    from tq_orchestrate.cli import cli

    old = f"sqlite://{tmp_path}/tq_orchestrate.sqlite3"
    TaskQueue(old, progress=False).insert([functools.partial(compat_fns.scale, [i]) for i in range(3)])
    args = ["copy", "--move", old, f"fq://{tmp_path}", "--import", "tests.compat_fns"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "moved 3 tasks" in result.output
    for name in os.listdir(tmp_path):
        if name.startswith("tq_orchestrate.sqlite3"):
            os.unlink(tmp_path / name)
    counts = FileQueueBackend.from_url(f"fq://{tmp_path}").counts()
    assert (counts.visible, counts.inserted) == (3, 3)


def test_foreign_files_are_moved_aside_and_the_rest_is_leased(tmp_path: Path) -> None:
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    backend.send_batch(["a", "b"])
    for name in ("notes.txt", "x--y--z.json", "soon--abc.json", ".swp"):
        (tmp_path / "queue" / name).write_text("junk")
    got = backend.receive(10, 60)
    assert sorted(m.body for m in got) == ["a", "b"]
    assert sorted(n.split("-", 1)[1] for n in os.listdir(tmp_path / "tqo" / "foreign")) == sorted(
        ["notes.txt", "x--y--z.json", "soon--abc.json", ".swp"]
    )
    assert _files(tmp_path / "queue") == sorted(m.handle.rstrip("+") for m in got)


def test_truncated_and_binary_task_files_are_dead_lettered_by_the_worker(tmp_path: Path) -> None:
    from tq_orchestrate import TaskQueue

    url = f"fq://{tmp_path}"
    backend = FileQueueBackend.from_url(url)
    backend.send_batch(['{"payload": {"class": "Nope"}, "queueName": "q"}'] * 3)
    first, second, _ = sorted(_files(tmp_path / "queue"))
    (tmp_path / "queue" / first).write_text('{"payload": {"cla')
    (tmp_path / "queue" / second).write_bytes(b"\xff\xfe not utf-8")
    TaskQueue(url, progress=False).poll(lease_seconds=60, burst_seconds=0.1)
    counts = backend.counts()
    assert (counts.pending, counts.dead) == (1, 2)  # the third names a class this worker lacks: kept
    letters = {d.message_id: d for d in backend.dead_letters()}
    assert letters[first.split("--")[1][:-5]].body == '{"payload": {"cla'
    assert (
        letters[second.split("--")[1][:-5]].body.encode("utf-8", "surrogateescape") == b"\xff\xfe not utf-8"
    )


def test_missing_movement_file_still_leases_and_deletes(tmp_path: Path) -> None:
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    backend.send_batch(["orphan"])
    for name in os.listdir(tmp_path / "movement"):
        os.unlink(tmp_path / "movement" / name)  # upstream killed between its two writes
    (message,) = backend.receive(1, 60)
    assert (message.body, message.receive_count) == ("orphan", 1)
    assert backend.delete([message.handle]) == 1
    assert backend.counts().pending == 0


def test_corrupt_insertion_counter(tmp_path: Path) -> None:
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    backend.send_batch(["x"])
    (tmp_path / "insertions").write_text("garbage")
    assert backend.counts().inserted is None
    backend.send_batch(["y"])
    assert backend.counts().inserted == 1  # restarted, nothing lost
    assert backend.counts().visible == 2


def test_read_only_directory_is_a_clear_error() -> None:
    directory = Path(tempfile.mkdtemp(prefix="tqo-fq-ro-"))
    FileQueueBackend.from_url(f"fq://{directory}").send_batch(["kept"])
    for root, dirs, names in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
        for name in names:
            os.chmod(os.path.join(root, name), 0o444)
    os.chmod(directory, 0o555)

    def attempt() -> str:
        backend = FileQueueBackend.from_url(f"fq://{directory}")
        outcomes = []
        for call in (lambda: backend.send_batch(["new"]), lambda: backend.receive(1, 60)):
            try:
                call()
                outcomes.append("no error")
            except TaskQueueError as e:
                outcomes.append(f"{type(e).__name__}: {e}")
        return "\n".join(outcomes)

    try:
        outcome = run_as_nobody(attempt)
    finally:
        for root, dirs, _ in os.walk(directory):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(directory, 0o755)
    try:
        lines = outcome.splitlines()
        assert len(lines) == 2 and all(line.startswith("BackendError: ") for line in lines), outcome
        assert "Permission denied" in outcome
        assert [m.body for m in FileQueueBackend.from_url(f"fq://{directory}").receive(1, 60)] == ["kept"]
    finally:
        shutil.rmtree(directory)


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root; skipped otherwise)."""
    directory = Path(tempfile.mkdtemp(prefix="tqo-fq-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(directory)], capture_output=True
    )
    if mounted.returncode != 0:
        directory.rmdir()
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)
        directory.rmdir()


def test_full_disk_refuses_entries_and_loses_nothing(tiny_disk: Path) -> None:
    backend = FileQueueBackend.from_url(f"fq://{tiny_disk}")
    bodies = [f"{i:04d}" + "x" * 3000 for i in range(200)]
    failures = backend.send_batch(bodies)
    assert failures and all(f.retryable and "No space left" in f.message for f in failures)
    accepted = [b for i, b in enumerate(bodies) if i not in {f.index for f in failures}]
    assert accepted == bodies[: len(accepted)]
    with pytest.raises(BackendError) as info:
        backend.send_batch(["more" * 1000])
    assert info.value.retryable
    got = [m.body for m in backend.receive(100, 60)]
    while len(got) < len(accepted):
        got += [m.body for m in backend.receive(100, 60)]
    assert sorted(got) == accepted
    assert _files(tiny_disk / "tqo" / "tmp") == []


def _fail_from(call: int, real: Callable[..., None]) -> Callable[..., None]:
    """``real``, failing with ENOSPC from its ``call``-th call on."""
    calls = itertools.count(1)

    def fake(*args: object, **kwargs: object) -> None:
        if next(calls) >= call:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)

    return fake


@pytest.mark.parametrize("tmpfile", [True, False], ids=["o_tmpfile", "rename"])
@pytest.mark.parametrize("batch", [5, 40])
@pytest.mark.parametrize("failing", ["task", "movement"])
def test_a_failed_write_keeps_the_written_prefix_and_leaves_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmpfile: bool, batch: int, failing: str
) -> None:
    monkeypatch.setattr(fq_module, "supports_tmpfile", lambda dir_fd, scratch_dir_fd: tmpfile)
    stop = batch - 2
    if failing == "movement":
        monkeypatch.setattr(fq_writer, "_write_movement", _fail_from(stop + 1, fq_writer._write_movement))
    else:
        monkeypatch.setattr(fq_writer, "_write_task_file", _fail_from(stop + 1, fq_writer._write_task_file))
    backend = FileQueueBackend.from_url(f"fq://{tmp_path}")
    bodies = [f"{i:03d}" for i in range(batch)]
    failures = backend.send_batch(bodies)
    assert [f.index for f in failures] == list(range(stop, batch))
    assert all(f.retryable and "No space left" in f.message for f in failures)
    names = _files(tmp_path / "queue")
    assert len(names) == stop
    assert _files(tmp_path / "movement") == sorted(n.split("--")[1][: -len(".json")] for n in names)
    assert _files(tmp_path / "tqo" / "tmp") == []
    assert (tmp_path / "insertions").read_text() == str(stop)
    assert sorted(backend.bodies()) == bodies[:stop]


def test_an_empty_task_file_upstream_is_still_writing_is_not_leased(tmp_path: Path) -> None:
    # python-task-queue creates its task file, then writes it: a worker may see it empty.
    from tq_orchestrate.backends._fq.names import task_name

    backend = open_backend(f"fq://{tmp_path}/q")
    try:
        assert backend.send_batch(["warm-up"]) == []  # lays out the directories
        (warm,) = backend.receive(1, 30)
        assert backend.delete([warm.handle]) == 1
        path = tmp_path / "q" / "queue" / task_name(0, "being-written")
        path.write_bytes(b"")
        assert backend.receive(10, 30) == [], "an empty young file is left to its writer"
        path.write_bytes(b'{"payload": {"class": "PrintTask", "txt": "late"}, "queueName": "q"}')
        (message,) = backend.receive(10, 30)
        assert message.body == '{"payload": {"class": "PrintTask", "txt": "late"}, "queueName": "q"}'
        assert message.receive_count == 1
        stale = tmp_path / "q" / "queue" / task_name(0, "never-written")
        stale.write_bytes(b"")
        old = stale.stat().st_mtime - 2 * fq_module.WRITE_GRACE_SECONDS
        os.utime(stale, (old, old))
        (empty,) = backend.receive(10, 30)  # empty past the grace: delivered, so it can be dead-lettered
        assert (empty.message_id, empty.body) == ("never-written", "")
    finally:
        backend.close()
