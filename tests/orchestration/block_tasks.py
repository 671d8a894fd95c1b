"""Tasks and task factories for the orchestration tests (importable by worker processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tq_orchestrate import RegisteredTask


class BlockMarkTask(RegisteredTask):
    """Appends ``block index`` to a file: the tests read back what ran, in which order."""

    path: str
    block: str
    index: int

    def __init__(self, path: str, block: str, index: int) -> None:
        super().__init__(path, block, index)

    def execute(self) -> None:
        with open(self.path, "a") as f:
            f.write(f"{self.block} {self.index}\n")


def task_count(block: str, path: str, n: str = "5") -> int:
    """Every block has ``n`` tasks."""
    del block, path
    return int(n)


def task_factory(block: str, start: int, stop: int, path: str, n: str = "5") -> Iterator[BlockMarkTask]:
    """Tasks ``start..stop-1`` of ``block``."""
    del n
    for index in range(start, stop):
        yield BlockMarkTask(path, block, index)


def short_factory(block: str, start: int, stop: int, path: str, n: str = "5") -> Iterator[BlockMarkTask]:
    """A broken factory: one task fewer than ``task_count`` says."""
    tasks = list(task_factory(block, start, stop, path, n))
    yield from tasks[:-1]


def not_a_function() -> None:
    """Placeholder so that 'module:missing' and 'module:attribute' errors can be told apart."""


NOT_CALLABLE = 42


def executed(path: str | Path) -> list[tuple[str, int]]:
    """``(block, index)`` pairs in the order they ran."""
    p = Path(path)
    if not p.exists():
        return []
    return [(b, int(i)) for b, i in (line.split() for line in p.read_text().splitlines())]
