"""LocalTaskQueue and MockTaskQueue: in process, in a pool, failures, dying children."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import sample_tasks as st
from tq_orchestrate import (
    LocalTaskQueue,
    MockTaskQueue,
    SerializationError,
    TaskExecutionError,
    TaskQueueError,
)


def test_readme_listing_with_five_processes(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with LocalTaskQueue(parallel=5, progress=False) as tq:
        for i in range(1000):
            tq.insert(st.RecordTask(str(out), i))
    assert sorted(st.read_numbers(out)) == list(range(1000))


@pytest.mark.parametrize("parallel", [1, 2])
def test_insert_all_runs_now_and_returns_count(tmp_path: Path, parallel: int) -> None:
    out = tmp_path / "out.txt"
    tq = LocalTaskQueue(parallel=parallel, progress=False)
    assert tq.insert_all(st.RecordTask(str(out), i) for i in range(50)) == 50
    assert sorted(st.read_numbers(out)) == list(range(50))


def test_failure_reports_the_task_payload() -> None:
    tq = LocalTaskQueue(parallel=2, progress=False)
    with pytest.raises(TaskExecutionError) as info:
        tq.insert_all([st.FailTask("bad input 17")] + [st.KwTask(n=i) for i in range(5)])
    assert "bad input 17" in str(info.value)
    assert '"class":"FailTask"' in info.value.payload


def test_a_dying_child_raises_instead_of_hanging() -> None:
    tq = LocalTaskQueue(parallel=2, progress=False)
    with pytest.raises(TaskQueueError, match="worker process died"):
        tq.insert_all([st.DieTask(), st.KwTask(n=1)])


def test_unencodable_task_fails_at_insert() -> None:
    tq = LocalTaskQueue(progress=False)
    with pytest.raises(SerializationError):
        tq.insert(st.RecordTask({"a"}, 1))  # type: ignore[arg-type]


def test_mock_queue_executes_inline() -> None:
    st.RESULTS.clear()
    tq = MockTaskQueue()
    assert tq.insert([st.PrintTask("x"), st.PrintTask("y")]) == 2
    assert st.RESULTS == ["x", "y"]
