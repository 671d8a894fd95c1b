"""The completion ledger under faults (issue #14): never done early, never stuck.

* kill -9 of workers that record to the ledger (random moments: while a batch
  is held before its record, between record and delete, mid-delete); the
  ledger is sampled throughout and must never hold a task that had not run;
* lost ledger writes: the store refuses a share of writes, or stores them and
  loses the answer; duplicate deliveries; a dead-lettered task.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._harness import CompletionLog, Workers, ids, tally, worker_args
from tests.tasks_fixture import WorkerAppendTask
from tq_orchestrate import LedgerError, TaskQueue
from tq_orchestrate.ledger import DEAD, Identified, Identity, LedgerStore, open_ledger
from tq_orchestrate.ledger.base import BlockFigures
from tq_orchestrate.orchestration.drain import DrainCursor, DrainState, DrainStatus
from tq_orchestrate.orchestration.exact import check_exact
from tq_orchestrate.worker import poll

KILL_TASKS = 1500


def _upload(tq: TaskQueue, log: Path, block: str, n: int) -> list[str]:
    expected = ids(f"{block}-", n)
    tasks = (Identified(WorkerAppendTask(str(log), text), block, i) for i, text in enumerate(expected))
    assert tq.insert_all(tasks, progress=False) == n
    return expected


@pytest.mark.slow
def test_kill_9_of_ledger_workers_never_finishes_a_block_early(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/q.db"
    log = tmp_path / "done.txt"
    done = CompletionLog(log)
    ledger = open_ledger(url)
    rng = random.Random(14)
    with TaskQueue(url, progress=False) as tq:
        expected = _upload(tq, log, "b0", KILL_TASKS)
        ledger.set_total("b0", KILL_TASKS)
        args = worker_args(
            3.0, "--ledger-url", url, "--ledger-flush-tasks", "40", "--ledger-flush-seconds", "0.3"
        )
        thresholds = sorted(rng.uniform(0.05, 0.85) * KILL_TASKS for _ in range(5))
        samples = early = kills = 0
        with Workers(url, tmp_path, args) as pool:
            for _ in range(3):
                pool.start()
            while True:
                figures = ledger.figures("b0")  # the ledger first: the log only grows after it
                ran = done.distinct()
                samples += 1
                early += figures.recorded > ran
                if figures.complete:
                    break
                if thresholds and ran >= thresholds[0]:
                    thresholds.pop(0)
                    time.sleep(rng.uniform(0, 0.05))
                    assert rng.choice(pool.alive()).kill9() == -signal.SIGKILL
                    kills += 1
                    pool.start()
                time.sleep(0.01)
            assert kills == 5 and early == 0, (kills, early, samples)
            assert done.distinct() == KILL_TASKS  # complete exactly when every task ran
            pool.stop_gracefully()
    completed, lost, repeats = tally(expected, done.refresh())
    print(f"ledger kill -9: {KILL_TASKS} tasks, {kills} kills, {samples} samples, repeats {repeats}")
    assert (completed, lost) == (KILL_TASKS, 0)


class _Flaky(LedgerStore):
    """Refuses a share of writes; of another share, stores them and loses the answer."""

    def __init__(self, inner: LedgerStore, seed: int) -> None:
        self.url, self.inner, self.rng = inner.url, inner, random.Random(seed)
        self.refused = self.lost_answers = 0

    def record(self, entries: Any) -> None:
        entries = list(entries)
        roll = self.rng.random()
        if roll < 0.25:
            self.refused += 1
            raise LedgerError("injected: write refused", retryable=True)
        self.inner.record(entries)
        if roll < 0.45:
            self.lost_answers += 1
            raise LedgerError("injected: answer lost after the write", retryable=True)

    def set_total(self, block: str, total: int) -> None:
        self.inner.set_total(block, total)

    def figures(self, block: str, *, compact: bool = True) -> BlockFigures:
        return self.inner.figures(block, compact=compact)

    def close(self) -> None:
        self.inner.close()


def test_lost_ledger_writes_delay_the_block_but_never_lose_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tq_orchestrate.worker import _loop

    url = f"sqlite://{tmp_path}/q.db"
    flaky = _Flaky(open_ledger(url), seed=3)
    monkeypatch.setattr(_loop, "open_ledger", lambda _: flaky)
    log = tmp_path / "done.txt"
    with TaskQueue(url, progress=False) as tq:
        expected = _upload(tq, log, "b0", 200)
        tq.insert(Identified(WorkerAppendTask(str(log), "b0-7"), "b0", 7))  # a duplicate delivery
        open_ledger(url).set_total("b0", 200)
        for _ in range(20):  # tasks whose record failed stay queued; later rounds run them again
            poll(
                tq,
                burst_seconds=0,
                num_tasks=10,
                ledger_url="flaky",
                ledger_flush_tasks=5,
                lease_seconds=0.2,
                sleep=lambda s: None,
            )
            if tq.counts().pending == 0:
                break
            time.sleep(0.25)
        assert tq.counts().pending == 0
    figures = open_ledger(url).figures("b0")
    completed, lost, repeats = tally(expected, CompletionLog(log).refresh())
    print(f"lost writes: refused {flaky.refused}, answers lost {flaky.lost_answers}, repeats {repeats}")
    assert flaky.refused and flaky.lost_answers
    assert figures.complete and len(figures.done) == 200 and (completed, lost) == (200, 0)


def _status(state: DrainState, dead: int = 0) -> DrainStatus:
    from tq_orchestrate.backends.base import Counts

    return DrainStatus(state, "counts", DrainCursor(), Counts(0, 0, 0), dead=dead)


def test_a_dead_lettered_task_finishes_the_block_as_failed_never_stuck(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite://{tmp_path}/q.db")
    ledger.set_total("b0", 3)
    ledger.record([(Identity("b0", 0), "done"), (Identity("b0", 2), "done")])
    waiting = check_exact(_status(DrainState.WAITING), ledger.figures("b0"))
    assert waiting.state is DrainState.WAITING and "1 missing (e.g. b0#1)" in waiting.reason
    ledger.record([(Identity("b0", 1), DEAD)])  # what the chain sensor records from the dead-letter queue
    failed = check_exact(_status(DrainState.FAILED, dead=1), ledger.figures("b0"))
    assert failed.state is DrainState.FAILED and failed.ledger is not None and failed.ledger["missing"] == 0
    assert ledger.figures("b0").complete


def test_duplicates_count_once_and_never_complete_a_block(tmp_path: Path) -> None:
    ledger = open_ledger(f"fq://{tmp_path}")
    ledger.set_total("b0", 3)
    for _ in range(5):
        ledger.record([(Identity("b0", 0), "done"), (Identity("b0", 1), "done")])
    assert not ledger.figures("b0").complete and ledger.figures("b0").recorded == 2
    assert Counter(ledger.figures("b0").missing_sample()) == Counter(["b0#2"])
