"""A look-alike of ``tasks`` by prefix; never admitted by ``--import tests.upstream_pkg.tasks``."""

from __future__ import annotations

import taskqueue

from tests.upstream_pkg._trace import record


class LookalikeTask(taskqueue.RegisteredTask):
    def __init__(self, note: str = "") -> None:
        super().__init__(note)
        self.note = note

    def execute(self) -> None:
        record("LookalikeTask", self.note)


@taskqueue.queueable
def lookalike_fn(note: str = "") -> None:
    record("lookalike_fn", note)
