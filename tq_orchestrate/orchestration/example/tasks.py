"""The example's tasks, and the task factory the block job names.

Workers import this module (``--import tq_orchestrate.orchestration.example.tasks``) to run the tasks.
"""

from __future__ import annotations

from collections.abc import Iterator

from tq_orchestrate import RegisteredTask

from .volume import cumsum_tile, load_layout


class CumsumTile(RegisteredTask):
    """Running sum along z of one (y, x) tile of one block; needs the previous block's output."""

    root: str
    block: int
    y0: int
    y1: int
    x0: int
    x1: int

    def __init__(self, root: str, block: int, y0: int, y1: int, x0: int, x1: int) -> None:
        super().__init__(root, block, y0, y1, x0, x1)

    def execute(self) -> None:
        cumsum_tile(self.root, self.block, self.y0, self.y1, self.x0, self.x1)


def task_count(block: str, root: str) -> int:
    """Tasks of a block: one per tile."""
    del block
    return len(load_layout(root).tiles())


def task_factory(block: str, start: int, stop: int, root: str) -> Iterator[CumsumTile]:
    """Tasks ``start..stop-1`` of block ``block`` (partition key such as ``"0003"``)."""
    index = int(block)
    for y0, y1, x0, x1 in load_layout(root).tiles()[start:stop]:
        yield CumsumTile(root, index, y0, y1, x0, x1)
