"""Writing a batch of new tasks: movement files and task files, two directories at once.

Creating a file is most of an insert's cost on a disk (ext4 spends it in the
kernel allocating the inode), and creates in one directory serialize on its
lock, but creates in two directories do not. So a second thread writes the
movement files while the calling thread writes the task files, each task file
only after its own movement file exists: upstream's lease of a task appends to
(or creates) its movement file, which must therefore come first, as it does
when one thread writes both.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .files import write_linked, write_new

__all__ = ["Directories", "NewTask", "write_tasks"]

_THREAD_FROM = 16
"""Batches smaller than this are written by the calling thread alone (a thread costs ~0.1 ms)."""
_AHEAD = 8
"""Movement files written ahead of their task files at most (on a nearly full disk they take
the room of task files, and the ones ahead of a failure are removed again)."""


@dataclass(frozen=True)
class NewTask:
    name: str
    """Its file name in ``queue/``."""
    ident: str
    data: bytes
    """The task file's content."""


@dataclass(frozen=True)
class Directories:
    movement: int
    tmp: int
    queue: int


def write_tasks(
    dirs: Directories, tasks: Sequence[NewTask], *, movement: bool, tmpfile: bool, fsync: bool
) -> tuple[int, OSError | None]:
    """Write ``tasks`` in order; return how many were written (a prefix) and the error that stopped it.

    ``movement``: write ``movement/<id>`` (the task's name and a newline) before
    each task file. ``tmpfile``: task files are written unnamed in ``queue/`` and
    linked, else in ``tmp/`` and renamed in. Whatever belongs to the unwritten
    tasks is removed.
    """
    if movement and len(tasks) >= _THREAD_FROM:
        return _write_two_threads(dirs, tasks, tmpfile=tmpfile, fsync=fsync)
    for written, task in enumerate(tasks):
        try:
            if movement:
                _write_movement(dirs, task, fsync)
            try:
                _write_task_file(dirs, task, tmpfile, fsync)
            except BaseException:
                if movement:
                    _remove_movement(dirs, task)
                raise
        except OSError as e:
            return written, e
    return len(tasks), None


def _write_movement(dirs: Directories, task: NewTask, fsync: bool) -> None:
    write_new(task.ident, (task.name + "\n").encode(), fsync=fsync, dir_fd=dirs.movement)


def _remove_movement(dirs: Directories, task: NewTask) -> None:
    with contextlib.suppress(OSError):
        os.unlink(task.ident, dir_fd=dirs.movement)


def _write_task_file(dirs: Directories, task: NewTask, tmpfile: bool, fsync: bool) -> None:
    if tmpfile:
        write_linked(task.name, task.data, dir_fd=dirs.queue, fsync=fsync)
        return
    try:
        write_new(task.name, task.data, fsync=fsync, dir_fd=dirs.tmp)
        os.rename(task.name, task.name, src_dir_fd=dirs.tmp, dst_dir_fd=dirs.queue)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(task.name, dir_fd=dirs.tmp)
        raise


class _MovementWriter(threading.Thread):
    """Writes the movement files in order, at most ``_AHEAD`` ahead (``room``).

    ``ready`` gets one release per file written and one more when it stops.
    """

    def __init__(self, dirs: Directories, tasks: Sequence[NewTask], fsync: bool) -> None:
        super().__init__(name="tqo-fq-movement", daemon=True)
        self.dirs = dirs
        self.tasks = tasks
        self.fsync = fsync
        self.ready = threading.Semaphore(0)
        self.room = threading.Semaphore(_AHEAD)
        self.created = 0
        self.error: BaseException | None = None
        self.stop = False

    def run(self) -> None:
        try:
            for task in self.tasks:
                self.room.acquire()
                if self.stop:
                    break
                _write_movement(self.dirs, task, self.fsync)
                self.created += 1
                self.ready.release()
        except BaseException as e:  # handed to the calling thread
            self.error = e
        finally:
            self.ready.release()


def _write_two_threads(
    dirs: Directories, tasks: Sequence[NewTask], *, tmpfile: bool, fsync: bool
) -> tuple[int, OSError | None]:
    writer = _MovementWriter(dirs, tasks, fsync)
    writer.start()
    written = 0
    error: OSError | None = None
    try:
        for task in tasks:
            writer.ready.acquire()
            if writer.created <= written:  # its movement file could not be written
                if not isinstance(writer.error, OSError):
                    raise writer.error or RuntimeError("the movement file writer stopped")
                error = writer.error
                break
            try:
                _write_task_file(dirs, task, tmpfile, fsync)
            except OSError as e:
                error = e
                break
            written += 1
            writer.room.release()
    finally:
        writer.stop = True
        writer.room.release()
        writer.join()
        for task in tasks[written : writer.created]:
            _remove_movement(dirs, task)
    return written, error
