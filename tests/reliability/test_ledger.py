"""The completion ledger under faults (issue #14): never done early, never stuck.

* kill -9 of workers that record to the ledger (random moments: while a batch
  is held before its record, between record and delete, mid-delete); the
  ledger is sampled throughout and must never hold a task that had not run;
* lost ledger writes: the store refuses a share of writes, or stores them and
  loses the answer; duplicate deliveries; a dead-lettered task;
* pinned faults in worker subprocesses (sqlite and fq ledgers), through the
  test-only hooks of ``tq_orchestrate/worker/_faults.py``: kill -9 just before
  a record, just after it (before the delete), and the first writes refused,
  each with a duplicate delivery and a dead-lettered task.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._harness import CompletionLog, Workers, ids, tally, wait_for, worker_args
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


# -- pinned faults in worker subprocesses (the test-only hooks of tq_orchestrate/worker/_faults.py) --

PINNED_TASKS = 300
STUCK_SECONDS = 12.0
"""Once every task ran or was dead-lettered, the ledger must be complete within this (lease 1 s)."""

PINNED = {
    "kill9-before-record": {"TQO_FAULT_BEFORE_RECORD": "60"},
    "kill9-after-record": {"TQO_FAULT_AFTER_RECORD": "60"},
    "lost-writes": {"TQO_FAULT_LEDGER_FAIL_WRITES": "12"},
}


def _ledger_url(store: str, tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/q.db" if store == "sqlite" else f"fq://{tmp_path}/ledger"


@pytest.mark.parametrize("fault", sorted(PINNED))
@pytest.mark.parametrize("store", ["sqlite", "fq"])
def test_pinned_faults_never_finish_a_block_early_nor_leave_it_stuck(
    tmp_path: Path, store: str, fault: str
) -> None:
    import os

    from tq_orchestrate.ledger.identity import identity_of

    url, ledger_url = f"sqlite://{tmp_path}/q.db", _ledger_url(store, tmp_path)
    log = tmp_path / "done.txt"
    done = CompletionLog(log)
    ledger = open_ledger(ledger_url)
    with TaskQueue(url, progress=False) as tq:
        expected = _upload(tq, log, "b0", PINNED_TASKS)
        [letter] = tq.receive(1, 60)
        dead = identity_of(letter.body)
        assert dead is not None
        tq.backend.dead_letter(letter.handle, "ValueError: injected")
        ledger.record([(dead, DEAD)])  # what the chain sensor records from the dead-letter queue
        twin = (dead.index + 1) % PINNED_TASKS  # a duplicate delivery of another task
        tq.insert(Identified(WorkerAppendTask(str(log), f"b0-{twin}"), "b0", twin))
        ledger.set_total("b0", PINNED_TASKS)
    env = {**os.environ, **PINNED[fault], "TQO_FAULT_ONCE": str(tmp_path / "killed")}
    args = worker_args(
        1.0, "--ledger-url", ledger_url, "--ledger-flush-tasks", "20", "--ledger-flush-seconds", "0.2"
    )
    waiting = DrainStatus(DrainState.WAITING, "counts", DrainCursor(), _status(DrainState.WAITING).counts)
    samples = early = 0
    exits: list[int] = []
    all_ran_at: float | None = None
    started = time.monotonic()
    with Workers(url, tmp_path, args, env) as pool:
        for _ in range(2):
            pool.start()
        while True:
            figures = ledger.figures("b0")  # the ledger first: the log only grows after it
            ran = done.refresh()
            samples += 1
            unrun = [i for i in range(PINNED_TASKS) if f"b0-{i}" not in ran and i not in figures.dead]
            early += any(i in figures.done for i in unrun)  # a completion record of a task never run
            verdict = check_exact(waiting, figures)
            if verdict.state is DrainState.DONE:
                assert unrun == [], f"block done early: {unrun[:5]} neither ran nor were dead-lettered"
                break
            now = time.monotonic()
            if not unrun:
                all_ran_at = all_ran_at or now
                assert now - all_ran_at < STUCK_SECONDS, f"stuck: {verdict.reason}"
            assert now - started < 60, f"no progress: {verdict.reason}"
            for w in [w for w in pool.all if w not in pool.alive() and w.proc.returncode is None]:
                exits.append(w.wait())
            if len(pool.alive()) < 2:
                pool.start()
            time.sleep(0.02)
        settle = 0.0 if all_ran_at is None else time.monotonic() - all_ran_at
        with TaskQueue(url, progress=False) as tq:  # reruns (recorded, not deleted) are harmless
            wait_for(lambda: tq.counts().pending == 0, "the queue to empty", timeout=STUCK_SECONDS)
        assert ledger.figures("b0").complete
        killed = sum(1 for w in pool.all if w.proc.poll() == -signal.SIGKILL)  # before the clean-up's kills
        refused = sum(w.text().count("injected (TQO_FAULT_LEDGER_FAIL_WRITES)") for w in pool.all)
    completed, lost, repeats = tally(expected, done.refresh())
    print(
        f"pinned {store} {fault}: {PINNED_TASKS} tasks, {samples} samples, early {early}, "
        f"kills {killed}, refused-write rounds {refused}, repeats {repeats}, "
        f"complete {settle:.2f} s after the last task ran, "
        f"{time.monotonic() - started:.1f} s in all"
    )
    assert early == 0
    assert (completed, lost) == (PINNED_TASKS - 1, 1)  # every task but the dead-lettered one ran
    assert f"b0-{dead.index}" not in done.counts
    if fault.startswith("kill9"):
        assert (tmp_path / "killed").exists() and killed == 1
    else:
        assert refused > 0
