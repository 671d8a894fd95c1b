"""Where everything lives in a file queue directory.

Upstream's part (python-task-queue reads and writes these)::

    DIR/queue/<ts>--<id>.json   one file per task
    DIR/movement/<id>           the names the task file has had, one a line
    DIR/insertions              tasks inserted, decimal text (POSIX-locked)
    DIR/completions             tasks completed: its size in bytes

Ours (upstream never looks at ``DIR/tqo``)::

    DIR/tqo/tmp/                task files being written, renamed into queue/ whole
                                (spares being rewritten; new files only where
                                O_TMPFILE is not supported, e.g. NFS)
    DIR/tqo/receives/<id>       one byte per receive after the first (max_receives)
    DIR/tqo/errors/<id>         the last error recorded for a task
    DIR/tqo/dead/<ns>--<id>.json  a dead letter: the task file, moved whole
    DIR/tqo/dead/<ns>--<id>.meta  its receive count and error (JSON)
    DIR/tqo/foreign/            files found in queue/ whose names are not task names
    DIR/tqo/spare/<ns>.<pid>.<n>  files of deleted tasks, to be rewritten by inserts
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["LEGACY_DATABASE_NAME", "Layout"]

LEGACY_DATABASE_NAME = "tq_orchestrate.sqlite3"
"""The SQLite file that ``fq://DIR`` meant before fq:// became upstream's format."""


@dataclass(frozen=True)
class Layout:
    """The paths of one queue directory."""

    root: str

    @property
    def queue(self) -> str:
        return os.path.join(self.root, "queue")

    @property
    def movement(self) -> str:
        return os.path.join(self.root, "movement")

    @property
    def insertions(self) -> str:
        return os.path.join(self.root, "insertions")

    @property
    def completions(self) -> str:
        return os.path.join(self.root, "completions")

    @property
    def ours(self) -> str:
        return os.path.join(self.root, "tqo")

    @property
    def tmp(self) -> str:
        return os.path.join(self.ours, "tmp")

    @property
    def receives(self) -> str:
        return os.path.join(self.ours, "receives")

    @property
    def errors(self) -> str:
        return os.path.join(self.ours, "errors")

    @property
    def dead(self) -> str:
        return os.path.join(self.ours, "dead")

    @property
    def foreign(self) -> str:
        return os.path.join(self.ours, "foreign")

    @property
    def spare(self) -> str:
        return os.path.join(self.ours, "spare")

    @property
    def legacy_database(self) -> str:
        return os.path.join(self.root, LEGACY_DATABASE_NAME)

    def directories(self) -> tuple[str, ...]:
        """Every directory the queue needs, parents first."""
        return (
            self.queue,
            self.movement,
            self.ours,
            self.tmp,
            self.receives,
            self.errors,
            self.dead,
            self.foreign,
            self.spare,
        )
