"""A submodule of the admitted task module."""

from __future__ import annotations

from typing import Any

import taskqueue

from tests.upstream_pkg._trace import record


class ImageTask(taskqueue.RegisteredTask):
    def __init__(self, shape: Any, offset: Any, mip: int = 0) -> None:
        super().__init__(shape, offset, mip)
        self.shape = list(shape)
        self.offset = list(offset)
        self.mip = int(mip)

    def execute(self) -> None:
        record("ImageTask", self.shape, self.offset, self.mip)


@taskqueue.queueable
def scale_image(shape: Any, factor: int = 2, method: int = 0) -> None:
    record("scale_image", list(shape), factor, method)
