"""Task definitions written against python-task-queue (``taskqueue``), for wire tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from taskqueue import RegisteredTask

SEEN: list[Any] = []


class CompatTask(RegisteredTask):  # type: ignore[misc]
    def __init__(self, name: str, weights: Any, options: Any = None) -> None:
        super().__init__(name, weights, options)
        self.weights = np.asarray(weights, dtype=np.float64)

    def execute(self) -> None:
        SEEN.append(("upstream", self.name, float(self.weights.sum()), self.options))
