"""Crashes and load: kill -9 of workers and producers, two workers under a live producer.

CI sizes (the soak, ``bench/soak.py``, runs the same scenarios at 10,000 tasks
for the kill tests and 100,000 for the load test): 2,500 tasks with 5 kills on
the embedded queue, 2,000 with 4 kills on the SQS stand-in, 5,000 tasks of
load. Every task must complete at least once; repeats (tasks a killed worker
executed but had not deleted) are printed, never asserted away.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability._harness import (
    Figures,
    Numbered,
    kill_workers_scenario,
    load_scenario,
    producer_crash_scenario,
)
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures
from tq_orchestrate import TaskQueue
from tq_orchestrate.testing import SqsStandIn

pytestmark = pytest.mark.slow

KILL_TASKS_EMBEDDED = 2500
KILL_TASKS_SQS = 2000
LOAD_TASKS = 5000
BATCH = 10  # tasks a worker leases per call (worker_args)


def report(capsys: pytest.CaptureFixture[str], figures: Figures) -> None:
    with capsys.disabled():
        print(
            f"\n[{figures.scenario}] kills/faults={figures.faults} inserted={figures.inserted} "
            f"completed={figures.completed} lost={figures.lost} repeats={figures.repeats} "
            f"leased_twice={figures.leased_twice} {figures.tasks_per_second:.0f} tasks/s; "
            + "; ".join(figures.notes)
        )


def check_kills(figures: Figures, n: int, kills: int) -> None:
    assert figures.faults == kills, "every planned kill happened"
    assert (figures.inserted, figures.completed, figures.lost) == (n, n, 0)
    # A killed worker can repeat only what it held: its batch in hand and the
    # completed batch whose delete had not gone through.
    assert figures.repeats <= kills * 2 * BATCH, f"{figures.repeats} repeats for {kills} kills"
    assert figures.leased_twice is not None, "the kill scenarios measure redeliveries"
    assert figures.leased_twice <= kills * 2 * BATCH, f"{figures.leased_twice} redelivered for {kills} kills"
    assert figures.notes == ["pending after drain: 0"]


def test_kill_9_of_random_workers_on_the_embedded_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    figures = kill_workers_scenario(
        url, tmp_path, KILL_TASKS_EMBEDDED, label="embedded kill -9", kills=5, seed=11
    )
    report(capsys, figures)
    check_kills(figures, KILL_TASKS_EMBEDDED, 5)
    with TaskQueue(url, progress=False) as tq:
        counts = tq.counts()
    # the queue itself agrees: each task deleted once, repeats' deletes refused as stale
    assert (counts.inserted, counts.completed, counts.dead) == (KILL_TASKS_EMBEDDED, KILL_TASKS_EMBEDDED, 0)


def test_kill_9_of_random_workers_on_sqs(
    aws_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SqsStandIn() as server:
        url = server.create_queue("reliability-kill")
        figures = kill_workers_scenario(url, tmp_path, KILL_TASKS_SQS, label="SQS kill -9", kills=4, seed=12)
        assert server.counts("reliability-kill") == (0, 0, 0)
        assert server.stats.requests["DeleteMessageBatch"] > 0
    report(capsys, figures)
    check_kills(figures, KILL_TASKS_SQS, 4)


@pytest.mark.parametrize("parallel", [1, 2])
def test_kill_9_of_a_producer_leaves_whole_batches(tmp_path: Path, parallel: int) -> None:
    path = tmp_path / "q.db"
    figures = producer_crash_scenario(path, parallel=parallel, batches=6)
    assert figures.inserted >= 6000  # check_prefixes already proved the rows are whole batches
    with TaskQueue(f"sqlite://{path}", progress=False) as tq:  # opens cleanly and works on
        counts = tq.counts()
        assert (counts.visible, counts.inserted) == (figures.inserted, figures.inserted)
        assert tq.insert_all(Numbered(10**9, 10**9 + 5)) == 5
        leased = tq.lease(seconds=60, num_tasks=10)
        assert len(leased) == 10 and tq.delete(leased) == 10
        assert tq.counts().completed == 10


def test_kill_9_of_the_producer_alone_stops_its_upload_processes(tmp_path: Path) -> None:
    """Only the process that called insert_all(parallel=2) is killed: its upload processes must
    not go on inserting the rest of their shards on their own."""
    path = tmp_path / "q.db"
    figures = producer_crash_scenario(path, parallel=2, batches=6, group=False)  # waits for them to exit
    assert figures.inserted >= 6000
    with TaskQueue(f"sqlite://{path}", progress=False) as tq:
        assert tq.counts().inserted == figures.inserted, "nothing was inserted after they were gone"


def test_two_workers_drain_while_a_producer_inserts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    figures = load_scenario(url, tmp_path, LOAD_TASKS, label="load, 2 workers", workers=2)
    report(capsys, figures)
    assert (figures.completed, figures.lost) == (LOAD_TASKS, 0)
    assert figures.repeats == 0, "no task completed twice"
    assert figures.leased_twice == 0, "with 600 s leases and no crash no task is leased twice"
    assert figures.counted == (LOAD_TASKS, LOAD_TASKS)


def test_an_upload_process_killed_mid_insert_all_is_an_error_that_counts_what_is_in(tmp_path: Path) -> None:
    """One of insert_all(parallel=2)'s processes is kill -9'd (as by the OOM killer)."""
    import multiprocessing
    import os
    import signal
    import threading
    import time

    from tests.reliability._harness import check_prefixes, wait_for
    from tq_orchestrate import UploadError

    path = tmp_path / "q.db"
    total = 2_000_000
    tq = TaskQueue(f"sqlite://{path}", progress=False)
    tq.counts()
    killed: list[int] = []

    def kill_one_child() -> None:
        wait_for(lambda: (tq.counts().inserted or 0) >= 10_000, "10 batches")
        victim = multiprocessing.active_children()[0].pid or 0
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    killer = threading.Thread(target=kill_one_child)
    killer.start()
    start = time.monotonic()
    with pytest.raises(UploadError) as info:
        tq.insert_all(Numbered(0, total), parallel=2)
    killer.join(60)
    assert killed and time.monotonic() - start < 120
    error = info.value
    assert "BrokenProcessPool" in str(error) and "may have inserted one more batch" in str(error)
    rows = check_prefixes(path, total, 2)  # intact, whole batches, each shard a prefix
    assert rows >= 10_000
    # the error counts what is in the queue, less at most the batch each dying process
    # committed but had not counted yet (not "0 tasks inserted")
    assert rows - 2 * 1000 <= error.inserted <= rows
    tq.close()
