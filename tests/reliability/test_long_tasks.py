"""A task running three times its lease keeps it through the heartbeat and runs once.

Two worker processes poll the same queue (lease 2 s, task 6 s); the one
that leases the task must renew its lease so the other never gets it. Run on
the embedded queue and on the SQS stand-in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability._harness import Workers, wait_for
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures
from tests.tasks_fixture import WorkerSleepTask, read_lines
from tq_orchestrate import TaskQueue
from tq_orchestrate.testing import SqsStandIn

pytestmark = pytest.mark.slow

LEASE = 2.0
TASK_SECONDS = 3 * LEASE


def run_one_long_task(url: str, tmp_path: Path) -> tuple[list[str], list[dict[str, object]]]:
    out = tmp_path / "out.txt"
    with TaskQueue(url, progress=False) as tq:
        tq.insert(WorkerSleepTask(str(out), "long", TASK_SECONDS))
    args = ["--lease-seconds", str(LEASE), "--min-backoff", "0.1", "--max-backoff", "0.2", "--log-json"]
    with Workers(url, tmp_path, args) as pool:
        pair = [pool.start(), pool.start()]
        wait_for(
            lambda: any(line.startswith("done long") for line in read_lines(out)), "the long task to end"
        )
        # a lease lost during the run shows as a second start within the competitor's 0.2 s backoff
        time.sleep(0.5)
        assert all(w.alive() for w in pair), "both workers kept polling"
        assert pool.stop_gracefully() == [0, 0]
    events = [e for w in pair for e in w.events()]
    return read_lines(out), events


def check_once(lines: list[str], events: list[dict[str, object]]) -> None:
    assert len(lines) == 2, lines
    (start, pid), (done, pid2) = (line.rsplit(" ", 1) for line in lines)
    assert (start, done, pid) == ("start long", "done long", pid2), (
        "started once, finished by the same worker"
    )
    assert [(e["outcome"], e["receive_count"]) for e in events] == [("ok", 1)], "never leased a second time"


def test_a_long_task_keeps_its_lease_on_the_embedded_queue(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    check_once(*run_one_long_task(url, tmp_path))
    with TaskQueue(url, progress=False) as tq:
        counts = tq.counts()
    assert (counts.pending, counts.completed) == (0, 1)


def test_a_long_task_keeps_its_lease_on_sqs(aws_env: Path, tmp_path: Path) -> None:
    with SqsStandIn() as server:
        url = server.create_queue("long-task")
        before: Callable[[], int] = lambda: server.stats.requests["ChangeMessageVisibility"]  # noqa: E731
        renewals = before()
        check_once(*run_one_long_task(url, tmp_path))
        assert before() - renewals >= 2, "the heartbeat renewed the lease"
        assert server.counts("long-task") == (0, 0, 0)


def test_a_frozen_worker_loses_its_lease_and_the_task_is_completed_once_by_another(tmp_path: Path) -> None:
    """SIGSTOP past the lease (a paused VM, a long GC): the task is taken over, never double-deleted."""
    import signal

    url = f"sqlite://{tmp_path}/q.db"
    out = tmp_path / "out.txt"
    with TaskQueue(url, progress=False) as tq:
        tq.insert(WorkerSleepTask(str(out), "frozen", 2.0))
    args = ["--lease-seconds", str(LEASE), "--min-backoff", "0.1", "--max-backoff", "0.2", "--log-json"]
    with Workers(url, tmp_path, args) as pool:
        frozen = pool.start()
        wait_for(lambda: read_lines(out) == [f"start frozen {frozen.pid}"], "the task to start")
        frozen.proc.send_signal(signal.SIGSTOP)
        other = pool.start()
        wait_for(lambda: f"done frozen {other.pid}" in read_lines(out), "the other worker to complete it")
        frozen.proc.send_signal(signal.SIGCONT)
        wait_for(
            lambda: f"done frozen {frozen.pid}" in read_lines(out), "the frozen worker to wake and finish"
        )
        wait_for(
            lambda: any(e["outcome"] == "lease_lost" for e in frozen.events()), "the frozen worker's report"
        )
        assert pool.stop_gracefully() == [0, 0]
    assert [(e["outcome"], e["receive_count"]) for e in other.events()] == [("ok", 2)]
    assert [(e["outcome"], e["receive_count"]) for e in frozen.events()] == [("lease_lost", 1)]
    assert "could not be renewed" in frozen.text() or "could not be deleted" in frozen.text()
    with TaskQueue(url, progress=False) as tq:
        counts = tq.counts()
    assert (counts.pending, counts.completed, counts.dead) == (0, 1, 0), "deleted once, by the lease holder"
