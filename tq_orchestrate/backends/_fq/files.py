"""The few file operations the file queue is made of, on raw descriptors (one syscall each).

Locks are POSIX record locks (``fcntl.lockf``), the kind python-task-queue takes,
so the two packages exclude each other, also over NFS (through the lock manager).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator

from ...errors import BackendError

__all__ = [
    "RETRYABLE_ERRNOS",
    "append_bytes",
    "append_line_locked",
    "backend_error",
    "open_directories",
    "read_bytes",
    "read_counter",
    "unlink_quiet",
    "supports_tmpfile",
    "update_counter_locked",
    "write_all",
    "write_linked",
    "write_new",
]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
_MODE = 0o666  # as open(path, "w") under the umask, like upstream
_CHUNK = 1 << 16
_LOCK_WAIT_SECONDS = 5.0

RETRYABLE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT}
)
"""Failures that may go away (disk space freed, NFS server back); others are permanent."""


def backend_error(action: str, error: OSError, queue: str) -> BackendError:
    """An OSError as a BackendError naming the file and whether a retry may help."""
    where = f" ({error.filename})" if error.filename else ""
    reason = error.strerror or str(error)
    return BackendError(
        f"{action} failed{where}: {reason}", queue=queue, retryable=error.errno in RETRYABLE_ERRNOS
    )


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_new(path: str, data: bytes, *, fsync: bool = False, dir_fd: int | None = None) -> None:
    """Create ``path`` (it must not exist; relative to ``dir_fd`` if given) holding ``data``.

    A failed write removes the file.
    """
    fd = os.open(path, _CREATE, _MODE, dir_fd=dir_fd)
    try:
        written = os.write(fd, data)
        if written != len(data):
            write_all(fd, data[written:])
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path, dir_fd=dir_fd)
        raise
    os.close(fd)


_TMPFILE = getattr(os, "O_TMPFILE", 0)
_TMPFILE_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL, errno.ENOENT})
"""What open(O_TMPFILE) fails with where the filesystem (NFS, FUSE) or the kernel cannot."""
_PROC_FD = "/proc/self/fd"


def supports_tmpfile(dir_fd: int, scratch_dir_fd: int) -> bool:
    """Whether :func:`write_linked` works in the directory ``dir_fd`` (Linux, a local filesystem).

    Writes one unnamed file there and links it into ``scratch_dir_fd`` (a directory
    nobody lists, on the same filesystem), then removes it: the whole path,
    including /proc, which a container may hide.
    """
    if not _TMPFILE or not os.path.isdir(_PROC_FD):
        return False
    try:
        fd = os.open(".", _TMPFILE | os.O_WRONLY | os.O_CLOEXEC, _MODE, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in _TMPFILE_UNSUPPORTED:
            return False
        raise
    probe = f".tmpfile-probe-{os.getpid()}-{time.time_ns()}"
    try:
        os.link(f"{_PROC_FD}/{fd}", probe, dst_dir_fd=scratch_dir_fd, follow_symlinks=True)
    except OSError:
        return False  # the rename fallback works wherever the rest of the queue does
    finally:
        os.close(fd)
    os.unlink(probe, dir_fd=scratch_dir_fd)
    return True


def write_linked(name: str, data: bytes, *, dir_fd: int, fsync: bool = False) -> None:
    """Create ``name`` in the directory ``dir_fd`` holding ``data``, never seen partly written.

    The data goes into an unnamed file (O_TMPFILE) that is then given its name with
    one ``linkat`` (through /proc, which needs no privilege): one directory entry
    operation, where a write elsewhere and a rename take two directories' locks.
    ``name`` must not exist (FileExistsError). Check :func:`supports_tmpfile` first.
    """
    fd = os.open(".", _TMPFILE | os.O_WRONLY | os.O_CLOEXEC, _MODE, dir_fd=dir_fd)
    try:
        written = os.write(fd, data)
        if written != len(data):
            write_all(fd, data[written:])
        if fsync:
            os.fsync(fd)
        os.link(f"{_PROC_FD}/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    finally:
        os.close(fd)  # an unlinked file's space is freed here


@contextlib.contextmanager
def open_directories(*paths: str) -> Iterator[tuple[int, ...]]:
    """Descriptors of ``paths`` for ``dir_fd`` calls (no path walk per file), closed on exit."""
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        yield tuple(fds)
    finally:
        for fd in fds:
            os.close(fd)


def read_bytes(path: str) -> bytes:
    """The whole content of ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _CHUNK)
        if len(data) < _CHUNK:
            return data
        parts = [data]
        while chunk := os.read(fd, _CHUNK * 16):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def unlink_quiet(path: str) -> bool:
    """Remove ``path``; False if it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def append_bytes(path: str, data: bytes) -> int:
    """Append ``data`` to ``path`` (created if missing); return the file's new size."""
    fd = os.open(path, _APPEND | os.O_CREAT, _MODE)
    try:
        write_all(fd, data)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _lock(fd: int, wait_seconds: float = _LOCK_WAIT_SECONDS) -> bool:
    """Take an exclusive POSIX lock; False if another process kept it for ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.001
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.ENOLCK):
                    return False
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def append_line_locked(path: str, line: str, previous: str | None = None) -> int:
    """Append ``line`` + newline to a movement file under upstream's lock.

    Returns the file's size before the append. An empty or missing file first gets
    ``previous`` (the name the task had at insert), so it reads as upstream's would.
    If the lock cannot be had (a stuck holder, or no lock manager), the line is
    appended anyway: O_APPEND keeps it whole on one host, and losing it would lose
    the task's name.
    """
    try:
        fd = os.open(path, _APPEND)
    except FileNotFoundError:
        fd = os.open(path, _APPEND | os.O_CREAT, _MODE)
    try:
        _lock(fd)
        size = os.fstat(fd).st_size
        text = f"{previous}\n{line}\n" if size == 0 and previous else f"{line}\n"
        write_all(fd, text.encode())
        return size
    finally:
        os.close(fd)  # releases the lock


def read_counter(path: str) -> int | None:
    """The integer in upstream's ``insertions`` file: 0 if missing or empty, None if not a number."""
    try:
        text = read_bytes(path).strip()
    except FileNotFoundError:
        return 0
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        return None


def update_counter_locked(path: str, add: int | None, *, fsync: bool = True) -> int:
    """Add ``add`` to the counter in ``path`` (None: set it to 0) under the lock; return the new value.

    Unlike upstream, the read happens under the lock too, so our writers never lose
    each other's updates. A counter that is not a number restarts from ``add``.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE)
    try:
        _lock(fd)
        value = 0
        if add is not None:
            text = os.pread(fd, 64, 0).strip()
            with contextlib.suppress(ValueError):
                value = int(text) if text else 0
            value += add
        data = str(value).encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        if fsync:
            os.fsync(fd)
        return value
    finally:
        os.close(fd)
