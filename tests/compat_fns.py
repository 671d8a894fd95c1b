"""A queueable function registered with both packages (same module and name)."""

from __future__ import annotations

from typing import Any

from taskqueue import queueable as upstream_queueable

from tq_orchestrate import queueable

CALLS: list[Any] = []


@queueable
@upstream_queueable  # type: ignore[misc]
def scale(values: list[float], factor: float = 1.0) -> None:
    CALLS.append([v * factor for v in values])
