"""The queue service goes away for a while: workers wait it out and go on.

The SQS stand-in is stopped (connections refused) and started again on the
same port with its state, as after a network partition or an endpoint restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._harness import (
    CompletionLog,
    Workers,
    append_tasks,
    ids,
    tally,
    upload_outage_scenario,
    wait_for,
    worker_args,
)
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures
from tests.tasks_fixture import WorkerAppendTask, read_lines
from tq_orchestrate import TaskQueue
from tq_orchestrate.backends.memory import MemoryBackend
from tq_orchestrate.backends.sqs import SQSBackend
from tq_orchestrate.backends.sqs_fast import DEFAULT_CONCURRENCY
from tq_orchestrate.errors import BackendError
from tq_orchestrate.testing import SqsStandIn
from tq_orchestrate.worker import Worker, WorkerOptions

OUTAGE_SECONDS = 3.0


@pytest.mark.slow
def test_polling_workers_wait_out_an_sqs_outage_and_then_drain(aws_env: Path, tmp_path: Path) -> None:
    server = SqsStandIn().start()
    try:
        url = server.create_queue("outage")
        log = tmp_path / "done.txt"
        with Workers(url, tmp_path, worker_args(3.0)) as pool:
            pair = [pool.start(), pool.start()]
            wait_for(lambda: all("polling" in w.text() for w in pair), "the workers to poll")
            server.stop()  # connections refused from now on
            wait_for(
                lambda: all("receive failed, backing off" in w.text() for w in pair),
                "both workers to see the outage",
            )
            time.sleep(OUTAGE_SECONDS)  # the outage goes on: nothing here is a proof
            assert all(w.alive() for w in pair), "a worker gave up during the outage"
            server.start()  # same port, same queues
            expected = ids("o", 500)
            with TaskQueue(url, progress=False) as tq:
                assert tq.insert_all(append_tasks(log, expected)) == 500
            done = CompletionLog(log)
            wait_for(lambda: done.distinct() == 500, "the tasks inserted after the outage")
            assert pool.stop_gracefully() == [0, 0]
        assert tally(expected, done.refresh())[:2] == (500, 0)
    finally:
        server.stop()


class DeleteOutage:
    """A queue whose deletes fail with a retryable error until ``until()`` says the outage is over."""

    def __init__(self, tq: TaskQueue, until: Callable[[], bool]) -> None:
        self.tq = tq
        self.until = until
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tq, name)

    def delete(self, tasks: Any) -> int:
        if not self.until():
            self.failed += 1
            raise BackendError(
                "DeleteMessageBatch failed: EndpointConnectionError", queue="q", retryable=True
            )
        return self.tq.delete(tasks)


def test_a_delete_that_fails_through_an_outage_does_not_end_the_worker(tmp_path: Path) -> None:
    tq = TaskQueue("mem://delete-outage", progress=False)
    out = tmp_path / "out.txt"
    tq.insert([WorkerAppendTask(str(out), f"d{i}") for i in range(5)])
    clock = [0.0]
    outage_over = lambda: clock[0] >= 30.0  # noqa: E731 - the outage lasts 30 s of the fake clock

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    queue = DeleteOutage(tq, outage_over)
    options = WorkerOptions(lease_seconds=60, num_tasks=10, burst_seconds=120, heartbeat=False)
    try:
        stats = Worker(queue, options, sleep=sleep, clock=lambda: clock[0]).run()
    finally:
        MemoryBackend.reset_all()
    assert queue.failed > 0
    assert stats.executed >= 5 and sorted(set(read_lines(out))) == [f"d{i}" for i in range(5)]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["boto3", "fast"])
def test_an_upload_outlasts_an_sqs_outage(
    aws_env: Path, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = upload_outage_scenario(20_000, engine, OUTAGE_SECONDS)
    with capsys.disabled():
        print(f"\n[{figures.scenario}] {figures.repeats} duplicates")
    assert (figures.completed, figures.lost) == (20_000, 0), "every task stored"
    # only batches in flight when the server went away can be stored twice, each at most once more
    in_flight = DEFAULT_CONCURRENCY if engine == "fast" else SQSBackend.capabilities.upload_concurrency
    assert figures.repeats <= 10 * in_flight
