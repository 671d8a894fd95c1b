"""Trivial tasks for benchmarks, defined for both packages under the same names."""

from __future__ import annotations

from typing import Any

import taskqueue

import tq_orchestrate


class NoopTask(tq_orchestrate.RegisteredTask):
    def __init__(self, n: int = 0, label: str = "") -> None:
        super().__init__(n, label)

    def execute(self) -> None:
        pass


class UpstreamNoopTask(taskqueue.RegisteredTask):  # type: ignore[misc]
    def __init__(self, n: int = 0, label: str = "") -> None:
        super().__init__(n, label)

    def execute(self) -> None:
        pass


def ours(n: int) -> Any:
    return (NoopTask(i, "block-0/tile") for i in range(n))


def theirs(n: int) -> Any:
    return (UpstreamNoopTask(i, "block-0/tile") for i in range(n))
