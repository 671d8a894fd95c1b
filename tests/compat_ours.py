"""The same task as compat_upstream.py, written against tq_orchestrate."""

from __future__ import annotations

from typing import Any

import numpy as np

from tq_orchestrate import RegisteredTask

SEEN: list[Any] = []


class CompatTask(RegisteredTask):
    def __init__(self, name: str, weights: Any, options: Any = None) -> None:
        super().__init__(name, weights, options)
        self.weights = np.asarray(weights, dtype=np.float64)

    def execute(self) -> None:
        SEEN.append(("ours", self.name, float(self.weights.sum()), self.options))
