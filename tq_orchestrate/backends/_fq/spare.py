"""Spare files: the inodes of deleted tasks, kept in ``DIR/tqo/spare`` to be written again.

Creating a file is most of an insert's cost on a disk (ext4 searches for an inode
it may reuse, and avoids recently freed ones). So our deletes rename a task's
file and its movement file into ``tqo/spare`` (upstream never looks in ``tqo/``)
instead of unlinking them, and our inserts take them back:

1. claim: ``rename(tqo/spare/<n>, tqo/tmp/<private>)``; exactly one process wins it,
   the others get ENOENT and try the next spare (or create a file, as before);
2. check it is a plain file of ours with one link (never written through a symlink
   or a hard link), truncate it, write the new content (fsync as the durability
   setting says), and rename it to its final name, so it appears whole.

A spare's name is ``<ns>.<pid>.<n>``: the time it was put there. Inserts take only
spares older than :data:`MIN_AGE_SECONDS`, so a reader that opened a task or
movement file just before it was deleted (an upstream worker deleting the same
task, ``bodies()``) reads its old content, not the next task's. The pool is
bounded (:data:`LIMIT` files of at most :data:`MAX_BYTES`, loosely across
processes: each takes half the room it last counted); beyond it, and for larger
files, deletes unlink as before. Off on tmpfs and ramfs (:data:`_MEMORY_MAGICS`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time

from .._fstype import statfs_magic

__all__ = ["LIMIT", "MIN_AGE_SECONDS", "STALE_SECONDS", "SparePool", "claim", "remove_stale"]

LIMIT = 20_000
"""Spare files kept at most (about: processes count the pool apart)."""
MAX_BYTES = 8192
"""A larger task file is unlinked, not kept: the pool holds at most ~LIMIT x MAX_BYTES on disk."""
MIN_AGE_SECONDS = 1.0
"""A spare is taken only this long after its task was deleted."""
STALE_SECONDS = 600.0
"""A file in ``tqo/tmp`` untouched this long is a crashed producer's: removed on open."""
_RECOUNT_SECONDS = 1.0
_MEMORY_MAGICS = frozenset({0x01021994, 0x858458F6})
"""tmpfs, ramfs: creating a file is cheap there, and rewriting a spare measured ~20% slower."""
_REWRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SparePool:
    """One backend's view of ``tqo/spare``: room left to fill it and names left to take."""

    def __init__(self, path: str, limit: int = LIMIT) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        self._room = 0
        self._counted = -_RECOUNT_SECONDS
        self._listed = -_RECOUNT_SECONDS
        self._names: list[str] = []
        self._seq = 0
        self.enabled = True

    def probe(self) -> None:
        """Turn the pool off where files live in memory (tmpfs, ramfs)."""
        self.enabled = not _in_memory(self.path)

    def _count(self) -> int:
        try:
            return sum(1 for _ in os.scandir(self.path))
        except FileNotFoundError:
            return 0

    def room(self) -> bool:
        """Whether one more file may go in (counts the pool at most once a second when full)."""
        if not self.enabled:
            return False
        with self._lock:
            if self._room > 0:
                self._room -= 1
                return True
            now = time.monotonic()
            if now - self._counted < _RECOUNT_SECONDS:
                return False
            self._counted = now
        free = self.limit - self._count()
        with self._lock:
            self._room = max(0, free // 2)  # the other processes filling it get the other half
            if self._room > 0:
                self._room -= 1
                return True
            return False

    def new_name(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{time.time_ns()}.{os.getpid()}.{self._seq}"

    def put(self, path: str, *, check_size: bool = True) -> None:
        """Move ``path`` into the pool if it is small and there is room, else unlink it.

        FileNotFoundError if ``path`` is gone (either way, nothing was moved).
        """
        if (not check_size or os.stat(path, follow_symlinks=False).st_size <= MAX_BYTES) and self.room():
            os.rename(path, os.path.join(self.path, self.new_name()))
        else:
            os.unlink(path)

    def take(self, n: int) -> list[str]:
        """Up to ``n`` spare names old enough to reuse (some may be taken by others meanwhile)."""
        if not self.enabled:
            return []
        with self._lock:
            if not self._names:
                now = time.monotonic()
                if now - self._listed < _RECOUNT_SECONDS:
                    return []
                self._listed = now
                self._names = _old_enough(self.path, time.time_ns() - int(MIN_AGE_SECONDS * 1e9))
            taken = self._names[-n:] if n > 0 else []
            del self._names[len(self._names) - len(taken) :]
            return taken

    def give_back(self, names: list[str]) -> None:
        """Names :meth:`take` gave that were not used."""
        with self._lock:
            self._names.extend(names)

    def forget(self) -> None:
        with self._lock:
            self._names.clear()
            self._room = 0
            self._counted = self._listed = -_RECOUNT_SECONDS


def _in_memory(path: str) -> bool:
    return statfs_magic(path) in _MEMORY_MAGICS


def _old_enough(path: str, before_ns: int) -> list[str]:
    names = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                stamp = entry.name.partition(".")[0]
                if stamp.isdigit() and int(stamp) < before_ns:
                    names.append(entry.name)
    except FileNotFoundError:
        return []
    return names


def claim(spares: list[str], spare_fd: int, tmp_fd: int, private: str) -> int | None:
    """Rename a spare to ``tmp/<private>`` and return a descriptor to rewrite it from offset 0.

    Spares are popped from ``spares`` until one is won. None when none is left (or
    the one won is not a plain file of ours with one link: it is removed).
    """
    while spares:
        try:
            os.rename(spares.pop(), private, src_dir_fd=spare_fd, dst_dir_fd=tmp_fd)
        except FileNotFoundError:
            continue  # another producer took it, or a purge removed it
        try:
            fd = os.open(private, _REWRITE, dir_fd=tmp_fd)
        except OSError:
            _unlink(private, tmp_fd)
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and info.st_uid == os.geteuid():
                os.ftruncate(fd, 0)
                return fd
        except BaseException:
            os.close(fd)
            _unlink(private, tmp_fd)
            raise
        os.close(fd)
        _unlink(private, tmp_fd)
    return None


def _unlink(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def remove_stale(tmp: str, now: float, older_than: float | None = None) -> int:
    """Remove files in ``tmp`` untouched for ``older_than`` seconds; return how many.

    The default is :data:`STALE_SECONDS`.
    """
    limit = STALE_SECONDS if older_than is None else older_than
    removed = 0
    try:
        with os.scandir(tmp) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if now - max(info.st_mtime, info.st_ctime) > limit:
                        os.unlink(entry.path)
                        removed += 1
    except FileNotFoundError:
        return 0
    return removed
