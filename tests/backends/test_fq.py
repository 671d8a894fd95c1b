"""The file queue (python-task-queue's fq:// format): the backend contract plus its own rules."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.backends.contract import BackendContract
from tq_orchestrate.backends import open_backend
from tq_orchestrate.backends.base import Capabilities
from tq_orchestrate.backends.fq import FileQueueBackend


class SmallFileQueueBackend(FileQueueBackend):
    capabilities: ClassVar[Capabilities] = dataclasses.replace(
        FileQueueBackend.capabilities, max_batch_count=20, max_batch_bytes=4000, max_message_bytes=1000
    )


class TestFileQueueContract(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[FileQueueBackend]:
        backend = FileQueueBackend.from_url(f"fq://{tmp_path}/q", max_receives=self.max_receives)
        yield backend
        backend.close()

    @pytest.fixture
    def limits_backend(self, tmp_path: Path) -> Iterator[FileQueueBackend]:
        backend = SmallFileQueueBackend.from_url(f"fq://{tmp_path}/small")
        yield backend
        backend.close()


class TestFileQueueLazyMovementContract(TestFileQueueContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[FileQueueBackend]:
        url = f"fq://{tmp_path}/q?movement_files=lazy"
        backend = FileQueueBackend.from_url(url, max_receives=self.max_receives)
        yield backend
        backend.close()


def test_fq_scheme_is_the_file_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = open_backend(f"fq://{tmp_path}/abs")
    relative = open_backend("fq://rel/dir?max_receives=2")
    assert isinstance(absolute, FileQueueBackend) and isinstance(relative, FileQueueBackend)
    assert (absolute.path, relative.path) == (str(tmp_path / "abs"), str(tmp_path / "rel" / "dir"))
    assert relative.max_receives == 2
    assert not os.path.exists(absolute.path)  # nothing happens before first use
