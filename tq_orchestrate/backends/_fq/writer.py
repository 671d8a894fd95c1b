"""Writing a batch of new tasks: each task's movement file, then its task file.

The movement file comes first: upstream's lease of a task appends to (or
creates) its movement file. Creating the two files is most of an insert's cost
on a disk, spent in the kernel allocating the inodes. A second thread writing
the movement files ahead (creates in two directories do not share a lock) was
measured: ~10% faster on an idle machine, slower and more CPU on the loaded
2-core VM the benchmarks ran on; not kept. Where our workers left spare files
(:mod:`.spare`), both files are rewritten spares instead: no inode is created.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .files import write_all, write_linked, write_new
from .spare import claim

__all__ = ["Directories", "NewTask", "write_tasks"]


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
    spare: int


def write_tasks(
    dirs: Directories,
    tasks: Sequence[NewTask],
    *,
    movement: bool,
    tmpfile: bool,
    fsync: bool,
    spares: list[str] | None = None,
) -> tuple[int, OSError | None]:
    """Write ``tasks`` in order; return how many were written (a prefix) and the error that stopped it.

    ``movement``: write ``movement/<id>`` (the task's name and a newline) before
    each task file. ``tmpfile``: task files are written unnamed in ``queue/`` and
    linked, else in ``tmp/`` and renamed in. Whatever belongs to the unwritten
    tasks is removed. ``spares``: names in ``tqo/spare`` to rewrite (popped as used)
    before creating files (see :mod:`.spare`).
    """
    spares = spares if spares is not None else []
    for written, task in enumerate(tasks):
        try:
            if movement:
                _write_movement(dirs, task, fsync, spares)
            try:
                _write_task_file(dirs, task, tmpfile, fsync, spares)
            except BaseException:
                if movement:
                    _remove_movement(dirs, task)
                raise
        except OSError as e:
            return written, e
    return len(tasks), None


def _rewrite_spare(
    dirs: Directories, spares: list[str], private: str, data: bytes, fsync: bool, dst_fd: int, name: str
) -> bool:
    """Write ``data`` into a claimed spare and rename it to ``name`` in ``dst_fd``; False if none."""
    if not spares:
        return False
    fd = claim(spares, dirs.spare, dirs.tmp, private)
    if fd is None:
        return False
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(private, name, src_dir_fd=dirs.tmp, dst_dir_fd=dst_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(private, dir_fd=dirs.tmp)
        raise
    return True


def _write_movement(dirs: Directories, task: NewTask, fsync: bool, spares: list[str]) -> None:
    data = (task.name + "\n").encode()
    if _rewrite_spare(dirs, spares, task.ident + ".movement", data, fsync, dirs.movement, task.ident):
        return
    write_new(task.ident, (task.name + "\n").encode(), fsync=fsync, dir_fd=dirs.movement)


def _remove_movement(dirs: Directories, task: NewTask) -> None:
    with contextlib.suppress(OSError):
        os.unlink(task.ident, dir_fd=dirs.movement)


def _write_task_file(dirs: Directories, task: NewTask, tmpfile: bool, fsync: bool, spares: list[str]) -> None:
    if _rewrite_spare(dirs, spares, task.name, task.data, fsync, dirs.queue, task.name):
        return
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
