"""Stamped task bodies stay python-task-queue's: a real upstream worker runs them (issue #14)."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import pytest
import taskqueue

from tests.backends.test_fq_upstream import _lines, record
from tq_orchestrate import TaskQueue
from tq_orchestrate.ledger import Identified, open_ledger

pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning"
)


def _identified(log: Path, block: str, n: int) -> list[Identified]:
    return [Identified(functools.partial(record, str(log), f"{block}-{i}"), block, i) for i in range(n)]


def test_an_upstream_worker_runs_stamped_tasks_and_writes_no_ledger(tmp_path: Path) -> None:
    url = f"fq://{tmp_path}/q"
    TaskQueue(url, progress=False).insert_all(_identified(tmp_path / "log", "b0", 4), progress=False)
    up = taskqueue.TaskQueue(url, progress=False)
    assert up.poll(lease_seconds=30, tally=True, stop_fn=up.is_empty) == 4
    assert _lines(tmp_path / "log") == Counter(f"b0-{i}" for i in range(4))
    assert open_ledger(url).figures("b0").recorded == 0  # what the sensor's fallback detects


def test_our_worker_records_fq_tasks_in_files_beside_the_queue(tmp_path: Path) -> None:
    url = f"fq://{tmp_path}/q"
    with TaskQueue(url, progress=False) as tq:
        tq.insert_all(_identified(tmp_path / "log", "b0", 6), progress=False)
        open_ledger(url).set_total("b0", 6)
        assert tq.poll(lease_seconds=30, num_tasks=4, burst_seconds=0, ledger_url=url) == 6
    assert open_ledger(url).figures("b0").complete
    assert (tmp_path / "q" / "tqo" / "ledger" / "b0" / "total.json").exists()
