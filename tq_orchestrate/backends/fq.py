"""python-task-queue's FileQueue (``fq://DIR``), byte for byte, shared both ways.

URLs: ``fq:///abs/dir``, ``fq://relative/dir`` (``~`` expands). Options (keyword
arguments or the URL query, keywords win):

``max_receives`` (default 5)
    A task received that many times and then leased again moves to the dead letters.
``durability`` (default ``"normal"``)
    ``"normal"``: like upstream, task files are not fsynced (a crash of the machine
    may lose recent inserts; a killed process loses nothing); the insertion counter
    is. ``"full"``: every new task file and its movement file is fsynced, and the
    directories once per batch, before ``send_batch`` returns.
``movement_files`` (default ``"upstream"``)
    ``"upstream"``: ``movement/<id>`` is written at insert and appended at every
    lease, as upstream does. ``"lazy"``: a task inserted visible and leased once
    never gets one (the first file op that needs it, a renewal, a release or a
    second lease, creates it with both lines): one file per task instead of two,
    much faster on a disk. Upstream's workers, ``ptq`` and every mixed use keep
    working (upstream's lease creates a missing movement file too); the one
    difference: upstream's ``delete(id)`` of a task nobody leased yet does
    nothing (it finds no movement file).

The directory holds upstream's ``queue/``, ``movement/``, ``insertions`` and
``completions``, which python-task-queue (its ``ptq``, producers and workers) uses
at the same time as we do, and our own ``tqo/`` (see :mod:`._fq.layout`), which it
ignores. docs/fq.md states what the protocol guarantees.

How this differs from upstream, without leaving its format:

* A task file appears in ``queue/`` whole: written unnamed there and linked
  (Linux O_TMPFILE), or where the filesystem cannot, written in ``tqo/tmp`` and
  renamed in (NFS, most FUSE filesystems, not Linux). A producer killed mid-write
  leaves no half-written file (an unnamed file is freed with its descriptor).
* The rename is the lease: exactly one process wins it. A handle is the name the
  lease gave the file, so a delete or renew after another worker re-leased the
  task finds the name gone and is refused (LeaseLostError) instead of deleting
  the other worker's task.
* Leases are rounded up to whole seconds (upstream rounds down).
* Receive counts, errors and dead letters live in ``tqo/``.
* Our deletes keep a task's files in ``tqo/spare`` and our inserts rewrite them
  (no inode to create; not on tmpfs): see :mod:`._fq.spare`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, cast

from ..errors import BackendError, ConfigurationError, LeaseLostError
from ._common import (
    LOCAL_CAPABILITIES,
    OptionSpec,
    check_batch,
    check_lease,
    check_receive,
    exhausted_reason,
    positive_int,
    resolve_options,
)
from ._fq import dead
from ._fq.files import (
    append_bytes,
    append_line_locked,
    backend_error,
    open_directories,
    read_bytes,
    read_counter,
    supports_tmpfile,
    unlink_quiet,
    update_counter_locked,
    write_new,
)
from ._fq.layout import Layout
from ._fq.names import add_id, expiry_timestamp, new_idents, parse_name, strip_id, task_name
from ._fq.spare import SparePool, remove_stale
from ._fq.writer import Directories, NewTask, write_tasks
from .base import Backend, Capabilities, Counts, DeadLetter, EntryFailure, Message

__all__ = ["FileQueueBackend", "queue_directory"]

log = logging.getLogger(__name__)

_SCAN_LIMIT = 2000
"""Visible task names one directory scan collects (then leased in random order)."""
_POLL_FIRST_SECONDS = 0.01
_POLL_MAX_SECONDS = 0.25
_RECEIVED_BEFORE = "+"
"""Handle suffix: this task has side files in tqo/ to remove when it is deleted."""


def _durability(value: Any) -> str:
    text = str(value).lower()
    if text not in ("normal", "full"):
        raise ValueError(f"expected normal or full, got {value!r}")
    return text


def _movement_files(value: Any) -> str:
    text = str(value).lower()
    if text not in ("upstream", "lazy"):
        raise ValueError(f"expected upstream or lazy, got {value!r}")
    return text


_OPTIONS: dict[str, OptionSpec] = {
    "max_receives": OptionSpec(positive_int, 5),
    "durability": OptionSpec(_durability, "normal"),
    "movement_files": OptionSpec(_movement_files, "upstream"),
}


def queue_directory(url: str) -> str:
    """The absolute directory an ``fq://`` URL names."""
    rest = url.partition("://")[2] if "://" in url else url
    path = urllib.parse.unquote(rest.partition("?")[0])
    if not path:
        raise ConfigurationError(f"{url!r} names no directory (fq://DIR)")
    return os.path.abspath(os.path.expanduser(path))


WRITE_GRACE_SECONDS = 10.0
"""How long an empty task file may be python-task-queue's write in progress."""


def _still_being_written(path: str) -> bool:
    """True for an empty task file modified in the last :data:`WRITE_GRACE_SECONDS`.

    python-task-queue writes its task files in place (open, then write), so a
    worker can find one that exists but is still empty. Leasing it would hand an
    empty body to a worker, which dead-letters it as corrupt: such a file is
    left alone until it has content or has been empty for the grace period.
    (Ours appear whole: they are written unnamed, then linked or renamed in.)
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return False
    return status.st_size == 0 and time.time() - status.st_mtime < WRITE_GRACE_SECONDS


class FileQueueBackend(Backend):
    """A queue in a directory, one file per task, in python-task-queue's format."""

    capabilities: ClassVar[Capabilities] = LOCAL_CAPABILITIES

    def __init__(
        self,
        url: str,
        path: str,
        *,
        max_receives: int = 5,
        durability: str = "normal",
        movement_files: str = "upstream",
    ) -> None:
        self.url = url
        self.path = path
        self.layout = Layout(path)
        self.max_receives = max_receives
        self.durability = durability
        self.movement_files = movement_files
        self._lock = threading.Lock()
        self._pool: list[str] = []
        self._renewed: dict[str, str] = {}
        self._errored: set[str] = set()
        self._ready = False
        self._legacy_checked = False
        self._spares = SparePool(self.layout.spare)
        self._tmpfile: bool | None = None
        """Whether task files are written unnamed in queue/ and linked (None: not probed yet)."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FileQueueBackend:
        """Build the backend for ``url``; nothing touches the disk before first use."""
        resolved = resolve_options(url, options, _OPTIONS)
        return cls(url, queue_directory(url), **resolved)

    # -- set-up -------------------------------------------------------------

    def _error(self, action: str, error: OSError) -> BackendError:
        return backend_error(action, error, self.url)

    def _prepare(self, action: str, *, legacy_check: bool = True) -> None:
        """Refuse an old-mapping directory (unless told not to); create the directories once."""
        if legacy_check:
            self._check_legacy()
        if self._ready:
            return
        try:
            for directory in self.layout.directories():
                os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise self._error(f"{action}: creating the queue directories", e) from e
        self._spares.probe()
        try:
            remove_stale(self.layout.tmp, time.time())
        except OSError as e:
            log.warning("%s: cannot clean %s: %s", self.url, self.layout.tmp, e)
        self._ready = True

    def _check_legacy(self) -> None:
        if self._legacy_checked:
            return
        legacy = self.layout.legacy_database
        if os.path.exists(legacy):
            raise ConfigurationError(
                f"{self.path} holds a queue of the old fq:// mapping ({legacy}, SQLite); fq:// now means "
                f"python-task-queue's file queue. Migrate its tasks with: tqo copy --move sqlite://{legacy} "
                f"fq://{self.path} and then remove {legacy}* (or keep using it as sqlite://{legacy})"
            )
        self._legacy_checked = True

    # -- sending ------------------------------------------------------------

    def send_batch(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[EntryFailure]:
        """Write one task file per body; entries not written are returned (all of them: raise)."""
        failures = check_batch(self.capabilities, self.url, bodies, delay_seconds)
        refused = {f.index for f in failures}
        encoded: list[tuple[int, bytes]] = []
        for index, body in enumerate(bodies):
            if index in refused:
                continue
            try:
                encoded.append((index, body.encode("utf-8")))
            except UnicodeEncodeError:
                failures.append(EntryFailure(index, "InvalidBody", "body is not valid UTF-8 text", False))
        if encoded:
            # no old-mapping check: ``tqo copy`` migrates an old queue into this directory
            self._prepare("send_batch", legacy_check=False)
            failures.extend(self._write_tasks(encoded, delay_seconds))
        return sorted(failures, key=lambda f: f.index)

    def _write_tasks(self, encoded: list[tuple[int, bytes]], delay_seconds: float) -> list[EntryFailure]:
        stamp = expiry_timestamp(time.time(), delay_seconds) if delay_seconds > 0 else 0
        full = self.durability == "full"
        # lazy movement files: only a delayed task gets one at insert
        movement = self.movement_files == "upstream" or stamp != 0
        tasks = [
            NewTask(task_name(stamp, ident), ident, add_id(data, ident))
            for (_, data), ident in zip(encoded, new_idents(len(encoded)), strict=True)
        ]
        layout = self.layout
        try:
            with open_directories(layout.movement, layout.tmp, layout.queue, layout.spare) as fds:
                dirs = Directories(*fds)
                if self._tmpfile is None:
                    self._tmpfile = supports_tmpfile(dirs.queue, dirs.tmp)
                spares = self._spares.take(len(tasks) * (2 if movement else 1))
                written, error = write_tasks(
                    dirs, tasks, movement=movement, tmpfile=self._tmpfile, fsync=full, spares=spares
                )
                self._spares.give_back(spares)
        except OSError as e:
            raise self._error("send_batch", e) from e
        if error is None:
            return self._count_inserts(written, full)
        if not written:
            raise self._error("send_batch", error) from error
        return self._count_inserts(written, full) + self._unsent(encoded[written:], error)

    def _unsent(self, rest: list[tuple[int, bytes]], error: OSError) -> list[EntryFailure]:
        reason = self._error("send_batch", error)
        return [EntryFailure(index, "WriteFailed", str(reason), reason.retryable) for index, _ in rest]

    def _count_inserts(self, written: int, full: bool) -> list[EntryFailure]:
        """Add to upstream's insertion counter; the tasks are in even if that fails (logged)."""
        try:
            if full:
                for directory in (self.layout.movement, self.layout.queue):
                    _fsync_directory(directory)
            update_counter_locked(self.layout.insertions, written)
        except OSError as e:
            log.warning(
                "%s: %d tasks were written, but not counted: %s", self.url, written, self._error("", e)
            )
        return []

    # -- receiving ----------------------------------------------------------

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]:
        """Lease up to ``max_messages``; scan again (10 ms growing to 250 ms) up to ``wait_seconds``."""
        check_receive(self.capabilities, max_messages, lease_seconds, wait_seconds)
        self._prepare("receive")
        deadline = time.monotonic() + wait_seconds
        pause = _POLL_FIRST_SECONDS
        while True:
            messages = self._lease(max_messages, lease_seconds)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX_SECONDS)

    def _next_candidate(self, scanned: bool) -> tuple[str | None, bool]:
        """A visible name from the pool, scanning the directory at most once per call."""
        with self._lock:
            if self._pool:
                return self._pool.pop(), scanned
        if scanned:
            return None, True
        names = self._scan_visible()
        with self._lock:
            self._pool.extend(names)
            return (self._pool.pop() if self._pool else None), True

    def _scan_visible(self) -> list[str]:
        now = time.time()
        names: list[str] = []
        foreign: list[str] = []
        try:
            with os.scandir(self.layout.queue) as entries:
                for entry in entries:
                    parsed = parse_name(entry.name)
                    if parsed is None:
                        foreign.append(entry.name)
                    elif parsed[0] <= now:
                        names.append(entry.name)
                        if len(names) >= _SCAN_LIMIT:
                            break
        except OSError as e:
            raise self._error("receive: listing the queue", e) from e
        for name in foreign:
            self._set_aside(name)
        random.shuffle(names)
        return names

    def _set_aside(self, name: str) -> None:
        """Move a file whose name is not a task name out of ``queue/`` (upstream's workers crash on it)."""
        target = os.path.join(self.layout.foreign, f"{time.time_ns()}-{name}")
        try:
            os.rename(os.path.join(self.layout.queue, name), target)
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("%s: queue/%s is not a task file and cannot be moved aside: %s", self.url, name, e)
            return
        log.warning("%s: queue/%s is not a task file name; moved to %s", self.url, name, target)

    def _lease(self, max_messages: int, lease_seconds: float) -> list[Message]:
        leased: list[Message] = []
        problems: list[OSError] = []
        scanned = False
        while len(leased) < max_messages:
            name, scanned = self._next_candidate(scanned)
            if name is None:
                break
            try:
                message = self._lease_one(name, lease_seconds)
            except OSError as e:  # this task's files only: lease the others
                problems.append(e)
                continue
            if message is not None:
                leased.append(message)
        if not leased and problems:
            raise self._error("receive", problems[0]) from problems[0]
        return leased

    def _lease_one(self, name: str, lease_seconds: float) -> Message | None:
        """Rename ``name`` to its leased name (the commit point), then record the move."""
        parsed = parse_name(name)
        if parsed is None:
            return None
        stamp, ident = parsed
        leased_name = task_name(expiry_timestamp(time.time(), lease_seconds), ident)
        queue = self.layout.queue
        if _still_being_written(os.path.join(queue, name)):
            return None  # python-task-queue has created it but not written it yet: not leased
        try:
            os.rename(os.path.join(queue, name), os.path.join(queue, leased_name))
        except FileNotFoundError:
            return None  # another worker leased or deleted it
        moved_before = self._record_move(stamp, name, ident, leased_name)
        count = 1 + append_bytes(os.path.join(self.layout.receives, ident), b"\0") if moved_before else 1
        try:
            raw = strip_id(read_bytes(os.path.join(queue, leased_name)), ident)
        except FileNotFoundError:
            return None  # deleted by a stale upstream worker (upstream deletes by id)
        if count > self.max_receives:
            self._bury(leased_name, ident, count - 1, None)
            return None
        handle = leased_name + (_RECEIVED_BEFORE if moved_before else "")
        return Message(handle, _text(raw), ident, count)

    def _record_move(self, stamp: int, name: str, ident: str, leased_name: str) -> bool:
        """Append the leased name to the movement file; return whether the task was received before.

        A name with timestamp 0 was never leased (every lease and release sets a
        real time); otherwise a movement file listing just ``name`` means a delayed
        task's first receive, anything else (or none, lazily) an earlier receive.
        """
        path = os.path.join(self.layout.movement, ident)
        if stamp == 0:
            if self.movement_files == "upstream":
                append_line_locked(path, leased_name, name)
            return False
        return append_line_locked(path, leased_name, name) != len(name) + 1

    # -- handles ------------------------------------------------------------

    def _current(self, handle: str) -> tuple[str, str, bool] | None:
        """``(current file name, id, has side files)`` for a handle of ours, else None."""
        if not isinstance(handle, str):
            return None
        side = handle.endswith(_RECEIVED_BEFORE)
        with self._lock:
            name = self._renewed.get(handle, handle.removesuffix(_RECEIVED_BEFORE))
        parsed = parse_name(name)
        if parsed is None:
            return None
        return name, parsed[1], side or parsed[1] in self._errored

    def delete(self, handles: Sequence[str]) -> int:
        """Delete the tasks whose lease the handles still hold; tally each in ``completions``."""
        deleted = 0
        try:
            for handle in handles:
                deleted += self._delete_one(handle)
        except OSError as e:
            raise self._error("delete", e) from e
        finally:
            if deleted:
                self._tally(deleted)
        return deleted

    def _delete_one(self, handle: str) -> int:
        current = self._current(handle)
        if current is None:
            return 0
        name, ident, side = current
        try:  # into the spare pool (or unlinked): the commit point either way
            self._spares.put(os.path.join(self.layout.queue, name))
        except FileNotFoundError:
            return 0  # the name is gone: re-leased, released or deleted by someone else
        with contextlib.suppress(FileNotFoundError):  # none yet (lazy) or upstream deleted the task
            self._spares.put(os.path.join(self.layout.movement, ident), check_size=False)
        if side:
            unlink_quiet(os.path.join(self.layout.receives, ident))
            unlink_quiet(os.path.join(self.layout.errors, ident))
        with self._lock:
            self._renewed.pop(handle, None)
            self._errored.discard(ident)
        return 1

    def _tally(self, n: int) -> None:
        """Count completions as upstream's ``tally`` does; the deletes stand even if that fails (logged)."""
        try:
            append_bytes(self.layout.completions, b"\0" * n)
        except OSError as e:
            log.warning("%s: %d tasks were deleted, but not tallied: %s", self.url, n, self._error("", e))

    def change_lease(self, handle: str, lease_seconds: float) -> None:
        """Rename the task file to its new expiry; 0 makes it visible now (and ends the handle)."""
        check_lease(self.capabilities, lease_seconds)
        current = self._current(handle)
        if current is None:
            raise LeaseLostError(f"{handle!r} is not a handle of this queue", queue=self.url)
        name, ident, _ = current
        target = task_name(expiry_timestamp(time.time(), lease_seconds), ident)
        try:
            self._rename(name, target)
            append_line_locked(os.path.join(self.layout.movement, ident), target, name)
        except FileNotFoundError as e:
            raise LeaseLostError(f"lease {handle!r} is no longer held", queue=self.url) from e
        except OSError as e:
            raise self._error("change_lease", e) from e
        with self._lock:
            if lease_seconds > 0:
                self._renewed[handle] = target
            else:
                self._renewed.pop(handle, None)

    def _rename(self, name: str, target: str) -> None:
        queue = self.layout.queue
        if name == target:
            os.stat(os.path.join(queue, name))
        else:
            os.rename(os.path.join(queue, name), os.path.join(queue, target))

    def record_error(self, handle: str, error: str) -> None:
        """Keep ``error`` in ``tqo/errors/<id>``; dead_letters() shows it if the task ends there."""
        current = self._current(handle)
        if current is None:
            return
        ident = current[1]
        path = os.path.join(self.layout.errors, ident)
        try:
            unlink_quiet(path)
            write_new(path, error.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise self._error("record_error", e) from e
        with self._lock:
            self._errored.add(ident)

    def dead_letter(self, handle: str, error: str) -> None:
        """Move a leased task file (bytes untouched) to the dead letters now."""
        current = self._current(handle)
        if current is None:
            raise LeaseLostError(f"{handle!r} is not a handle of this queue", queue=self.url)
        name, ident, _ = current
        count = self._receive_count(ident)
        try:
            self._bury(name, ident, count, error)
        except FileNotFoundError as e:
            raise LeaseLostError(f"lease {handle!r} is no longer held", queue=self.url) from e
        except OSError as e:
            raise self._error("dead_letter", e) from e
        with self._lock:
            self._renewed.pop(handle, None)

    def _receive_count(self, ident: str) -> int:
        try:
            return 1 + os.stat(os.path.join(self.layout.receives, ident)).st_size
        except FileNotFoundError:
            return 1

    def _bury(self, name: str, ident: str, receive_count: int, error: str | None) -> None:
        if error is None:
            try:
                error = read_bytes(os.path.join(self.layout.errors, ident)).decode("utf-8", "replace")
            except FileNotFoundError:
                error = exhausted_reason(receive_count)
        dead.bury(self.layout, name, ident, receive_count, error)
        with self._lock:
            self._errored.discard(ident)

    # -- whole queue --------------------------------------------------------

    def _task_names(self) -> Iterator[tuple[str, int, str]]:
        """``(name, timestamp, id)`` of every task file; a missing queue is an empty one."""
        try:
            with os.scandir(self.layout.queue) as entries:
                for entry in entries:
                    parsed = parse_name(entry.name)
                    if parsed is not None:
                        yield entry.name, parsed[0], parsed[1]
        except FileNotFoundError:
            return

    def _never_moved(self, name: str, ident: str) -> bool:
        """True for a task never leased (delayed): its movement file lists only its name."""
        try:
            return os.stat(os.path.join(self.layout.movement, ident)).st_size == len(name) + 1
        except FileNotFoundError:
            return False  # lazy movement files: leased once

    def counts(self) -> Counts:
        """Exact counts from one directory scan; ``leased`` vs ``delayed`` from the movement files."""
        self._check_legacy()
        now = time.time()
        visible = leased = delayed = 0
        try:
            for name, stamp, ident in self._task_names():
                if stamp <= now:
                    visible += 1
                elif self._never_moved(name, ident):
                    delayed += 1
                else:
                    leased += 1
            inserted = read_counter(self.layout.insertions)
            completed = _size(self.layout.completions)
            dead_count = dead.count_dead(self.layout)
        except OSError as e:
            raise self._error("counts", e) from e
        return Counts(visible, leased, delayed, inserted, completed, dead_count, exact=True)

    def purge(self) -> None:
        """Delete every task, movement file, side file and dead letter; zero the counters."""
        self._prepare("purge")
        layout = self.layout
        try:
            dirs = (layout.queue, layout.movement, layout.receives, layout.errors, layout.dead, layout.spare)
            for directory in dirs:
                for name in os.listdir(directory):
                    unlink_quiet(os.path.join(directory, name))
            self._rezero()
        except OSError as e:
            raise self._error("purge", e) from e
        self._spares.forget()
        with self._lock:
            self._pool.clear()
            self._renewed.clear()
            self._errored.clear()

    def rezero(self) -> None:
        """Set upstream's insertion and completion counters to zero."""
        self._prepare("rezero")
        try:
            self._rezero()
        except OSError as e:
            raise self._error("rezero", e) from e

    def _rezero(self) -> None:
        fd = os.open(self.layout.completions, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        update_counter_locked(self.layout.insertions, None)

    def release_all(self) -> int:
        """Make every leased task visible now (delayed ones stay delayed); return how many."""
        self._prepare("release_all")
        now = time.time()
        released = 0
        try:
            for name, stamp, ident in list(self._task_names()):
                if stamp <= now or self._never_moved(name, ident):
                    continue
                target = task_name(expiry_timestamp(now, 0), ident)
                try:
                    self._rename(name, target)
                except FileNotFoundError:
                    continue
                append_line_locked(os.path.join(self.layout.movement, ident), target, name)
                released += 1
        except OSError as e:
            raise self._error("release_all", e) from e
        return released

    def bodies(self) -> Iterator[str]:
        """The body of every task file, leased or not, without leasing."""
        self._check_legacy()
        for name, _, ident in self._task_names():
            try:
                raw = read_bytes(os.path.join(self.layout.queue, name))
            except FileNotFoundError:
                continue  # deleted or renamed meanwhile
            except OSError as e:
                raise self._error("bodies", e) from e
            yield strip_id(raw, ident).decode("utf-8", "surrogateescape")

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first."""
        self._check_legacy()
        try:
            return dead.list_dead(self.layout, limit)
        except OSError as e:
            raise self._error("dead_letters", e) from e

    def redrive(self) -> int:
        """Put every dead letter back (same id, visible now, receive count restarts); return how many."""
        self._prepare("redrive")
        try:
            return dead.redrive_all(self.layout)
        except OSError as e:
            raise self._error("redrive", e) from e


def _text(raw: bytes) -> str:
    """A body as text; bytes that are not UTF-8 come back as bytes (the task decoder refuses
    them and the worker dead-letters the task, as with the SQLite queue)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return cast(str, raw)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
