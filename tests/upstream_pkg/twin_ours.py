"""A tq_orchestrate class with the same name as an upstream one in ``other``."""

from __future__ import annotations

from tests.upstream_pkg._trace import record
from tq_orchestrate import RegisteredTask


class CompatTwin(RegisteredTask):
    def __init__(self, note: str = "") -> None:
        super().__init__(note)
        self.note = note

    def execute(self) -> None:
        record("CompatTwin ours", self.note)
