"""The embedded durable queue: one SQLite database file (stdlib :mod:`sqlite3`).

URLs::

    sqlite:///abs/path/q.db    an absolute path
    sqlite://relative/q.db     a path relative to the current directory
    name                       no scheme: the file ``name`` relative to the current directory

``fq://`` is python-task-queue's file queue (:mod:`tq_orchestrate.backends.fq`), no
longer this database; ``tq_orchestrate.sqlite3`` was the file it used to name.

``~`` expands to the home directory; missing parent directories are created on
first use. Options come as keyword arguments or in the URL query
(``sqlite:///q.db?max_receives=3``); keyword arguments win:

``max_receives`` (default 5)
    A message received that many times and then expiring (or released) moves
    to the dead letters on the next receive that would hand it out (SQS's
    redrive policy).
``durability`` (default ``"normal"``)
    ``"normal"``: WAL journal, ``synchronous=NORMAL``; a commit survives any
    process being killed. ``"full"``: ``synchronous=FULL``; it survives power loss.
``create`` (default true)
    Create the database file if it is missing. With ``create=false`` a missing
    file is a :class:`~tq_orchestrate.errors.ConfigurationError` naming the
    absolute path and the working directory (the CLI's read and work commands
    use it, so a mistyped path is not a new empty queue).
``busy_timeout_seconds`` (default 30)
    How long a call waits for another writer before failing with a retryable
    :class:`~tq_orchestrate.errors.BackendError`.
``allow_network_fs`` (default false)
    The database is refused on a network or cluster filesystem (NFS, SMB, Lustre,
    GPFS, BeeGFS, CephFS, FUSE such as sshfs), where SQLite's locking is unsafe;
    true opens it anyway. Use ``fq://DIR`` or SQS for a queue shared by hosts.

Every write is one ``BEGIN IMMEDIATE`` transaction, so a batch is inserted
whole or not at all and a lease is atomic across threads and processes. A
handle is ``"<id>:<token>"``: the token changes on every receive, so a worker
whose lease expired and was taken by another cannot delete or renew the
message. Each process opens its own connection (reopened after ``fork``); the
threads of a process share it under a lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from ..errors import BackendError, ConfigurationError, LeaseLostError
from ._common import (
    LOCAL_CAPABILITIES,
    OptionSpec,
    check_batch,
    check_lease,
    check_receive,
    decode_handle,
    encode_handle,
    new_token,
    positive_float,
    positive_int,
    resolve_options,
)
from ._fstype import flag, refuse_network_fs
from .base import Backend, Capabilities, Counts, DeadLetter, EntryFailure, Message

__all__ = ["SCHEMA_VERSION", "SQLiteBackend"]

SCHEMA_VERSION = 1
"""Stored in ``PRAGMA user_version``; a newer database is refused."""


_MIN_SQLITE = (3, 35, 0)
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_POLL_FIRST_SECONDS = 0.005
_POLL_MAX_SECONDS = 0.1


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    token INTEGER,
    inserted_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible_at ON messages (visible_at);
CREATE TABLE IF NOT EXISTS stats (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    inserted INTEGER NOT NULL,
    completed INTEGER NOT NULL
);
INSERT OR IGNORE INTO stats (id, inserted, completed) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    error TEXT,
    dead_at REAL NOT NULL
);
PRAGMA user_version = {SCHEMA_VERSION};
"""

_INSERT = "INSERT INTO messages (body, visible_at, receive_count, inserted_at) VALUES (?, ?, 0, ?)"
_LEASE = """
UPDATE messages SET visible_at = ?, receive_count = receive_count + 1, token = ?
WHERE id IN (SELECT id FROM messages WHERE visible_at <= ? ORDER BY visible_at, id LIMIT ?)
RETURNING id, body, receive_count
"""
_TO_DEAD = """
INSERT INTO dead_letters (message_id, body, receive_count, error, dead_at)
SELECT id, body, receive_count - :undo,
    COALESCE(:error, last_error, 'received ' || (receive_count - :undo) || ' times without being deleted'),
    :now
FROM messages WHERE id = :id
"""
_COUNTS = """
SELECT
    (SELECT COUNT(*) FROM messages WHERE visible_at <= :now),
    (SELECT COUNT(*) FROM messages WHERE visible_at > :now AND token IS NOT NULL),
    (SELECT COUNT(*) FROM messages WHERE visible_at > :now AND token IS NULL),
    (SELECT inserted FROM stats WHERE id = 1),
    (SELECT completed FROM stats WHERE id = 1),
    (SELECT COUNT(*) FROM dead_letters)
"""

_OPTIONS: dict[str, OptionSpec] = {
    "max_receives": OptionSpec(positive_int, 5),
    "durability": OptionSpec(lambda v: _choice(v, ("normal", "full")), "normal"),
    "busy_timeout_seconds": OptionSpec(positive_float, 30.0),
    "create": OptionSpec(flag, True),
    "allow_network_fs": OptionSpec(flag, False),
}

_LIST_CHUNK = 500
"""Rows read per query while :meth:`SQLiteBackend.bodies` iterates."""


def _choice(value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value).lower()
    if text not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
    return text


def database_path(url: str) -> str:
    """The absolute database file path a ``sqlite://`` URL (or bare name) names."""
    _, sep, rest = url.partition("://")
    if not sep:
        rest = url
    path = urllib.parse.unquote(rest.partition("?")[0])
    if not path or path == ":memory:":
        raise ConfigurationError(f"{url!r} names no database file (use mem:// for an in-memory queue)")
    return os.path.abspath(os.path.expanduser(path))


class SQLiteBackend(Backend):
    """A durable queue in one SQLite file, shared by threads and processes."""

    capabilities: ClassVar[Capabilities] = LOCAL_CAPABILITIES

    def __init__(
        self,
        url: str,
        path: str,
        *,
        max_receives: int = 5,
        durability: str = "normal",
        busy_timeout_seconds: float = 30.0,
        create: bool = True,
        allow_network_fs: bool = False,
    ) -> None:
        self.url = url
        self.path = path
        self.max_receives = max_receives
        self.durability = durability
        self.busy_timeout_seconds = busy_timeout_seconds
        self.create = create
        self.allow_network_fs = allow_network_fs
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteBackend:
        """Build the backend for ``url``; the file is opened on first use."""
        resolved = resolve_options(url, options, _OPTIONS)
        return cls(url, database_path(url), **resolved)

    # -- connection ---------------------------------------------------------

    @contextlib.contextmanager
    def _db(self, action: str) -> Iterator[sqlite3.Connection]:
        """The process's connection, held under the lock; sqlite3 errors become BackendError."""
        if self._pid != os.getpid():
            self._forget_parent_connection()
        with self._lock:
            if self._closed:
                raise BackendError(f"{action}: the backend is closed", queue=self.url)
            try:
                yield self._conn or self._open()
            except sqlite3.Error as e:
                raise self._translate(action, e) from e

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        with self._db(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _open(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise BackendError(
                f"the embedded queue needs SQLite {'.'.join(map(str, _MIN_SQLITE))} or newer "
                f"(UPDATE ... RETURNING); this Python has {sqlite3.sqlite_version}",
                queue=self.url,
            )
        if not self.create:
            check_exists(self.path, self.url)
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise BackendError(
                f"cannot create directory {directory!r}: {e.strerror or e}", queue=self.url
            ) from e
        if not self.allow_network_fs:
            refuse_network_fs(self.path, self.url)
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_seconds,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
        )
        conn.text_factory = _text
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=" + ("FULL" if self.durability == "full" else "NORMAL"))
            _ensure_schema(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        _track_for_fork(self)
        return conn

    def _forget_parent_connection(self) -> None:
        """In a forked child: drop (never use or close) the parent's connection and lock."""
        if self._conn is not None:
            _ABANDONED.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _close_before_fork(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
                self._conn = None

    def _translate(self, action: str, error: sqlite3.Error) -> BackendError:
        code = getattr(error, "sqlite_errorcode", None)
        text = str(error)
        busy = (code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)) or (
            "locked" in text or "busy" in text
        )
        return BackendError(f"{action} failed on {self.path}: {text}", queue=self.url, retryable=busy)

    def close(self) -> None:
        """Close this process's connection; the backend is unusable afterwards."""
        with self._lock:
            self._closed = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- sending ------------------------------------------------------------

    def send_batch(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[EntryFailure]:
        """Insert ``bodies`` in one transaction; oversized or non-text bodies are refused."""
        failures = check_batch(self.capabilities, self.url, bodies, delay_seconds)
        refused = {f.index for f in failures}
        try:
            self._insert([b for i, b in enumerate(bodies) if i not in refused], delay_seconds)
        except UnicodeEncodeError:  # a lone surrogate: find it, send the rest
            for index, body in enumerate(bodies):
                if index not in refused and not _encodable(body):
                    refused.add(index)
                    failures.append(EntryFailure(index, "InvalidBody", "body is not valid UTF-8 text", False))
            self._insert([b for i, b in enumerate(bodies) if i not in refused], delay_seconds)
        return sorted(failures, key=lambda f: f.index)

    def _insert(self, bodies: list[str], delay_seconds: float) -> None:
        if not bodies:
            return
        now = time.time()
        visible_at = now + delay_seconds
        with self._write("send_batch") as conn:
            conn.executemany(_INSERT, [(body, visible_at, now) for body in bodies])
            conn.execute("UPDATE stats SET inserted = inserted + ? WHERE id = 1", (len(bodies),))

    # -- receiving ----------------------------------------------------------

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]:
        """Lease up to ``max_messages``; poll (5 ms growing to 100 ms) up to ``wait_seconds``."""
        check_receive(self.capabilities, max_messages, lease_seconds, wait_seconds)
        deadline = time.monotonic() + wait_seconds
        pause = _POLL_FIRST_SECONDS
        while True:
            messages = self._lease(max_messages, lease_seconds)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            while remaining > 0:
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, _POLL_MAX_SECONDS)
                if self._any_visible():
                    break
                remaining = deadline - time.monotonic()

    def _any_visible(self) -> bool:
        with self._db("receive") as conn:
            row = conn.execute("SELECT 1 FROM messages WHERE visible_at <= ? LIMIT 1", (time.time(),))
            return row.fetchone() is not None

    def _lease(self, max_messages: int, lease_seconds: float) -> list[Message]:
        token = new_token()
        leased: list[Message] = []
        with self._write("receive") as conn:
            while len(leased) < max_messages:
                now = time.time()
                rows = conn.execute(
                    _LEASE, (now + lease_seconds, token, now, max_messages - len(leased))
                ).fetchall()
                exhausted = [row[0] for row in rows if row[2] > self.max_receives]
                leased.extend(
                    Message(encode_handle(ident, token), body, str(ident), count)
                    for ident, body, count in rows
                    if count <= self.max_receives
                )
                if not exhausted:
                    break
                self._move_to_dead(conn, exhausted, None, already_counted=1)
        return leased

    def _move_to_dead(
        self, conn: sqlite3.Connection, ids: list[int], error: str | None, *, already_counted: int
    ) -> None:
        """Move messages to the dead letters; ``already_counted`` undoes this lease's count."""
        now = time.time()
        conn.executemany(
            _TO_DEAD, [{"undo": already_counted, "error": error, "now": now, "id": ident} for ident in ids]
        )
        conn.executemany("DELETE FROM messages WHERE id = ?", [(ident,) for ident in ids])

    # -- handles ------------------------------------------------------------

    def delete(self, handles: Sequence[str]) -> int:
        """Delete the messages whose lease the handles still hold; return how many."""
        keys = [key for key in map(decode_handle, handles) if key is not None]
        if not keys:
            return 0
        with self._write("delete") as conn:
            deleted = conn.executemany("DELETE FROM messages WHERE id = ? AND token = ?", keys).rowcount
            if deleted:
                conn.execute("UPDATE stats SET completed = completed + ? WHERE id = 1", (deleted,))
        return deleted

    def change_lease(self, handle: str, lease_seconds: float) -> None:
        """Set the remaining lease; 0 makes the message visible now."""
        check_lease(self.capabilities, lease_seconds)
        key = self._key(handle)
        with self._db("change_lease") as conn:
            changed = conn.execute(
                "UPDATE messages SET visible_at = ? WHERE id = ? AND token = ?",
                (time.time() + lease_seconds, *key),
            ).rowcount
        if not changed:
            raise LeaseLostError(f"lease {handle!r} is no longer held", queue=self.url)

    def record_error(self, handle: str, error: str) -> None:
        """Keep ``error`` with the message; dead_letters() shows it if it ends there."""
        key = decode_handle(handle)
        if key is None:
            return
        with self._db("record_error") as conn:
            conn.execute("UPDATE messages SET last_error = ? WHERE id = ? AND token = ?", (error, *key))

    def dead_letter(self, handle: str, error: str) -> None:
        """Move a leased message (raw body kept) to the dead letters now."""
        ident, token = self._key(handle)
        with self._write("dead_letter") as conn:
            row = conn.execute("SELECT 1 FROM messages WHERE id = ? AND token = ?", (ident, token)).fetchone()
            if row is not None:
                self._move_to_dead(conn, [ident], error, already_counted=0)
        if row is None:
            raise LeaseLostError(f"lease {handle!r} is no longer held", queue=self.url)

    def _key(self, handle: str) -> tuple[int, int]:
        key = decode_handle(handle)
        if key is None:
            raise LeaseLostError(f"{handle!r} is not a handle of this queue", queue=self.url)
        return key

    # -- whole queue --------------------------------------------------------

    def counts(self) -> Counts:
        """Exact counts from one read snapshot."""
        with self._db("counts") as conn:
            row = conn.execute(_COUNTS, {"now": time.time()}).fetchone()
        visible, leased, delayed, inserted, completed, dead = row
        return Counts(visible, leased, delayed, inserted, completed, dead, exact=True)

    def purge(self) -> None:
        """Delete every message and dead letter and zero the counters (upstream's purge)."""
        with self._write("purge") as conn:
            conn.execute("DELETE FROM messages")
            conn.execute("DELETE FROM dead_letters")
            conn.execute("UPDATE stats SET inserted = 0, completed = 0 WHERE id = 1")

    def release_all(self) -> int:
        """Make every leased message visible now; return how many."""
        with self._write("release_all") as conn:
            now = time.time()
            return conn.execute(
                "UPDATE messages SET visible_at = ? WHERE visible_at > ? AND token IS NOT NULL", (now, now)
            ).rowcount

    def rezero(self) -> None:
        """Set the inserted and completed totals to zero; messages stay."""
        with self._write("rezero") as conn:
            conn.execute("UPDATE stats SET inserted = 0, completed = 0 WHERE id = 1")

    def bodies(self) -> Iterator[str]:
        """Yield the bodies of the messages present now, oldest first, in chunks.

        Messages inserted while iterating are not yielded (so inserting them
        into the same queue ends).
        """
        with self._db("bodies") as conn:
            last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
        after = 0
        while True:
            with self._db("bodies") as conn:
                rows = conn.execute(
                    "SELECT id, body FROM messages WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                    (after, last, _LIST_CHUNK),
                ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield from (_as_text(body) for _, body in rows)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first."""
        with self._db("dead_letters") as conn:
            rows = conn.execute(
                "SELECT message_id, body, receive_count, error FROM dead_letters ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(str(ident), _as_text(body), count, error) for ident, body, count, error in rows]

    def redrive(self) -> int:
        """Put every dead letter back (same message id, receive count 0); return how many."""
        with self._write("redrive") as conn:
            now = time.time()
            moved = conn.execute(
                "INSERT INTO messages (id, body, visible_at, receive_count, inserted_at) "
                "SELECT message_id, body, ?, 0, ? FROM dead_letters ORDER BY id",
                (now, now),
            ).rowcount
            conn.execute("DELETE FROM dead_letters")
        return moved


def check_exists(path: str, url: str) -> None:
    """Raise ConfigurationError if the queue file ``path`` is missing."""
    if not os.path.exists(path):
        raise ConfigurationError(
            f"queue {url}: file {path} does not exist (working directory {os.getcwd()}); "
            "check the path, or insert tasks first (tqo work --create waits for them)"
        )


def _text(raw: bytes) -> str | bytes:
    """A TEXT value as str; bytes that are not UTF-8 (a row written by another program, or
    damaged) come back as bytes, so that one bad row fails its own decoding, not every receive.

    Such a message is received with a ``bytes`` body; the task decoder refuses it
    (not UTF-8) and the worker dead-letters it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _as_text(body: str | bytes) -> str:
    """A dead letter's body as text; bytes that are not UTF-8 survive as surrogate escapes
    (``body.encode("utf-8", "surrogateescape")`` gives them back exactly)."""
    return body if isinstance(body, str) else body.decode("utf-8", "surrogateescape")


def _encodable(body: str) -> bool:
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise BackendError(
            f"{path} has queue schema version {version}, newer than this tq_orchestrate "
            f"understands ({SCHEMA_VERSION}); upgrade tq_orchestrate"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# Fork safety: close open connections just before os.fork() so a child never
# inherits SQLite's in-process lock state; a child that still finds a parent's
# connection (forked outside os.fork) sets it aside here without closing it.
_ABANDONED: list[sqlite3.Connection] = []
_OPEN: weakref.WeakSet[SQLiteBackend] = weakref.WeakSet()
_FORK_HOOK: list[bool] = []
_FORK_HOOK_LOCK = threading.Lock()


def _track_for_fork(backend: SQLiteBackend) -> None:
    with _FORK_HOOK_LOCK:
        _OPEN.add(backend)
        if not _FORK_HOOK and hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_close_all_before_fork)
            _FORK_HOOK.append(True)


def _close_all_before_fork() -> None:
    for backend in list(_OPEN):
        backend._close_before_fork()
