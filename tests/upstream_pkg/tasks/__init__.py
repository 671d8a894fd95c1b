"""The admitted task module: its own task, and one from a submodule."""

from __future__ import annotations

from typing import Any

import taskqueue

from tests.upstream_pkg._trace import record
from tests.upstream_pkg.tasks.image import ImageTask, scale_image

__all__ = ["ImageTask", "TopTask", "scale_image"]


class TopTask(taskqueue.RegisteredTask):
    def __init__(self, name: str, values: Any) -> None:
        super().__init__(name, values)
        self.name = name
        self.values = values

    def execute(self, *extra: Any) -> None:
        record("TopTask", self.name, sum(self.values), *extra)
