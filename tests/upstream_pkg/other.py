"""Registered with python-task-queue by being imported (as any dependency's tasks would be)."""

from __future__ import annotations

import taskqueue

from tests.upstream_pkg._trace import record


class OtherTask(taskqueue.RegisteredTask):
    def __init__(self, note: str = "") -> None:
        super().__init__(note)
        self.note = note

    def execute(self) -> None:
        record("OtherTask", self.note)


class CompatTwin(taskqueue.RegisteredTask):
    """Shares its name with a tq_orchestrate class in tests.upstream_pkg.twin_ours."""

    def __init__(self, note: str = "") -> None:
        super().__init__(note)
        self.note = note

    def execute(self) -> None:
        record("CompatTwin upstream", self.note)


@taskqueue.queueable
def other_fn(note: str = "") -> None:
    record("other_fn", note)
