"""The completion pipeline on its own: batched deletes, pending retries, adoption, giving up.

``Completions`` is driven here with a fake delete call and a fake clock; the
same behaviour through a real loop and queue is in test_worker.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tq_orchestrate._backoff import call_retrying
from tq_orchestrate.backends.base import Message
from tq_orchestrate.errors import BackendError, LeaseLostError, QueueNotFoundError
from tq_orchestrate.worker._completions import DELETE_FLUSH_SECONDS, Completed, Completions
from tq_orchestrate.worker._report import WorkerStats


class Deletes:
    """A fake ``TaskQueue.delete``: the next ``fail`` calls raise ``error``; ``lost`` handles are gone."""

    def __init__(self, fail: int = 0, error: BaseException | None = None, lost: tuple[str, ...] = ()) -> None:
        self.fail, self.error, self.lost = fail, error, set(lost)
        self.calls: list[list[str]] = []

    def __call__(self, handles: list[str]) -> int:
        self.calls.append(list(handles))
        if self.fail:
            self.fail -= 1
            raise self.error or BackendError("throttled", retryable=True)
        if len(handles) == 1 and handles[0] in self.lost:
            raise LeaseLostError("gone")
        if self.lost & set(handles):
            raise LeaseLostError("some gone")
        return len(handles)


class Pipeline:
    """A Completions with its callbacks recorded."""

    def __init__(self, deletes: Deletes, attempts: int = 3) -> None:
        self.now = 0.0
        self.stats = WorkerStats()
        self.forgotten: list[str] = []
        self.outcomes: list[tuple[str, str, str | None]] = []
        self.back_offs = 0
        self.completions = Completions(
            deletes,
            call_retrying(lambda s: None, attempts=1),
            self.stats,
            attempts=attempts,
            clock=lambda: self.now,
            forget=lambda m: self.forgotten.append(m.handle),
            completed=self._completed,
            back_off=self._back_off,
        )

    def _completed(self, done: Completed, outcome: str, error: str | None) -> None:
        self.outcomes.append((done.message.message_id, outcome, error))

    def _back_off(self) -> None:
        self.back_offs += 1


def message(n: int, lease: int = 1) -> Message:
    return Message(handle=f"h{n}.{lease}", body="{}", message_id=f"m{n}", receive_count=lease)


def add(p: Pipeline, *ns: int) -> None:
    for n in ns:
        p.completions.add(message(n), task=object(), seconds=0.5)


def test_a_batch_is_deleted_in_one_call_and_each_task_reported_once() -> None:
    deletes = Deletes()
    p = Pipeline(deletes)
    add(p, 1, 2, 3)
    assert not p.completions.due()
    p.now = DELETE_FLUSH_SECONDS
    assert p.completions.due()
    p.completions.flush()
    assert deletes.calls == [["h1.1", "h2.1", "h3.1"]]
    assert p.forgotten == ["h1.1", "h2.1", "h3.1"]
    assert p.outcomes == [("m1", "ok", None), ("m2", "ok", None), ("m3", "ok", None)]
    p.completions.flush()
    assert len(deletes.calls) == 1  # nothing left


def test_a_lost_lease_is_reported_and_the_others_deleted_one_by_one() -> None:
    deletes = Deletes(lost=("h2.1",))
    p = Pipeline(deletes)
    add(p, 1, 2)
    p.completions.flush()
    assert deletes.calls == [["h1.1", "h2.1"], ["h1.1"], ["h2.1"]]
    assert p.stats.lease_lost == 1
    assert [o for _, o, _ in p.outcomes] == ["ok", "ok"]  # outcome per batch: one of two was deleted


def test_a_transient_failure_keeps_the_tasks_pending_until_a_later_round_deletes_them() -> None:
    deletes = Deletes(fail=1)
    p = Pipeline(deletes)
    add(p, 1)
    p.completions.flush()
    assert p.completions.pending and p.back_offs == 1 and p.outcomes == []
    assert p.completions.find("h1.1") == message(1)
    p.completions.retry()
    assert not p.completions.pending
    assert p.outcomes == [("m1", "ok", None)]


def test_a_delete_failing_every_round_is_given_up_after_its_attempts() -> None:
    deletes = Deletes(fail=99)
    p = Pipeline(deletes, attempts=3)
    add(p, 1)
    p.completions.flush()
    p.completions.retry()
    assert p.completions.pending and p.outcomes == []
    p.completions.retry()
    assert not p.completions.pending
    assert p.stats.undeleted == 1
    assert p.outcomes == [("m1", "delete_failed", "throttled")]
    assert len(deletes.calls) == 3


def test_the_last_round_gives_up_at_once() -> None:
    p = Pipeline(Deletes(fail=99), attempts=8)
    add(p, 1)
    p.completions.flush()
    p.completions.retry(last=True)
    assert p.stats.undeleted == 1 and not p.completions.pending


def test_a_pending_task_that_comes_back_is_deleted_with_its_new_handle() -> None:
    deletes = Deletes(fail=1)
    p = Pipeline(deletes)
    add(p, 1)
    p.completions.flush()
    assert not p.completions.adopt(message(2))  # not pending: the loop runs it
    assert p.completions.adopt(message(1, lease=2))
    assert not p.completions.pending
    p.completions.flush()
    assert deletes.calls[-1] == ["h1.2"]
    assert p.outcomes == [("m1", "ok", None)]


@pytest.mark.parametrize("error", [QueueNotFoundError("q"), BackendError("denied", retryable=False)])
def test_an_error_no_retry_cures_is_raised(error: BaseException) -> None:
    p = Pipeline(Deletes(fail=1, error=error))
    add(p, 1)
    with pytest.raises(type(error)):
        p.completions.flush()


def test_with_a_pool_the_delete_runs_in_the_background_until_collected() -> None:
    deletes = Deletes()
    p = Pipeline(deletes)
    with ThreadPoolExecutor(1) as pool:
        p.completions.pool = pool
        add(p, 1, 2)
        p.completions.flush(wait=False)
        assert p.outcomes == []  # reported when collected, in the loop's thread
        p.completions.collect()
    assert p.outcomes == [("m1", "ok", None), ("m2", "ok", None)]
    assert not p.completions.deleted_in_background()
