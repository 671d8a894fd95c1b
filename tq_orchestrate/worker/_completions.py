"""The completion pipeline: delete executed tasks, in batches and off the loop's thread.

The loop hands each executed task to :meth:`Completions.add`. A batch is
deleted together (:meth:`~Completions.flush`), never held longer than
:data:`DELETE_FLUSH_SECONDS`; on a network queue the delete runs on a thread of
its own while the loop receives the next batch, and :meth:`~Completions.collect`
reports it. A delete that fails with a transient error keeps its tasks
*pending*: they are deleted again in later rounds (:meth:`~Completions.retry`,
``delete_attempts`` in all), and a pending task that comes back to this worker
is deleted with its new lease, not run again (:meth:`~Completions.adopt`).
After the last round it is given up: it runs again after its lease. Each task's
outcome goes to the ``completed`` callback ("ok", "lease_lost" or
"delete_failed"); errors no retry cures are raised.

With a completion ledger (``ledger``), each batch's identities are recorded
*before* its delete, in the same background call: a worker killed between the
two runs the task again (harmless, the ledger is a set); one killed before the
record never deletes. A failed record counts as a failed delete (kept pending,
recorded again next round). The batch is then held up to ``ledger_flush_seconds``
or ``ledger_flush_tasks``, so each worker writes at most one ledger request per
that many tasks or seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import tenacity

from .._backoff import is_transient
from .._heartbeat import Heartbeat
from ..backends.base import Message
from ..errors import LeaseLostError
from ..ledger.base import DONE, LedgerStore
from ..ledger.identity import Identity, identity_of
from . import _faults
from ._report import WorkerStats

__all__ = ["DELETE_FLUSH_SECONDS", "Completed", "Completions"]

log = logging.getLogger("tq_orchestrate.worker")

DELETE_FLUSH_SECONDS = 1.0
"""Completed tasks of one batch are deleted together, but never held longer than this."""


@dataclass(slots=True)
class Completed:
    """A task whose ``execute()`` returned, waiting for its message to be deleted."""

    message: Message
    task: Any
    seconds: float
    at: float
    attempts: int = 0
    """Delete rounds that failed with a transient error."""


@dataclass(slots=True)
class _Deletion:
    """What one delete call came to."""

    deleted: int = 0
    failed: list[str] = field(default_factory=list)
    """Handles whose delete failed with a transient error (to retry)."""
    error: BaseException | None = None


class Completions:
    """Deletes the messages of executed tasks for one worker loop.

    ``delete(handles)`` deletes messages (``TaskQueue.delete``), retried through
    transient errors by ``retrying``; ``forget(message)`` tells the loop a
    message is no longer held; ``completed(done, outcome, error)`` reports each
    task once; ``back_off()`` asks the loop to pause (a delete failed).
    ``heartbeat`` (leases to keep or drop) and ``pool`` (the delete thread; None:
    delete in the loop's thread) are set by the loop when it starts.
    """

    def __init__(
        self,
        delete: Callable[[list[str]], int],
        retrying: tenacity.Retrying,
        stats: WorkerStats,
        *,
        attempts: int,
        clock: Callable[[], float],
        forget: Callable[[Message], None],
        completed: Callable[[Completed, str, str | None], None],
        back_off: Callable[[], None],
        ledger: LedgerStore | None = None,
        ledger_flush_tasks: int = 100,
        ledger_flush_seconds: float = 2.0,
    ) -> None:
        self._delete_call = delete
        self._retrying = retrying
        self._stats = stats
        self._attempts = attempts
        self._clock = clock
        self._forget = forget
        self._completed = completed
        self._back_off = back_off
        self._ledger = ledger
        self._flush_tasks = ledger_flush_tasks
        self._flush_seconds = ledger_flush_seconds if ledger is not None else DELETE_FLUSH_SECONDS
        self.heartbeat: Heartbeat | None = None
        self.pool: ThreadPoolExecutor | None = None
        self._batch: list[Completed] = []
        self._deleting: tuple[list[Completed], set[str], Future[_Deletion]] | None = None
        self._pending: dict[str, Completed] = {}
        """Executed tasks whose delete failed transiently, by message id."""

    # -- what the loop asks ---------------------------------------------------

    def add(self, message: Message, task: Any, seconds: float) -> None:
        """Queue the delete of a task that executed."""
        self._batch.append(Completed(message, task, seconds, self._clock()))

    @property
    def pending(self) -> bool:
        """Whether executed tasks wait for another delete round (work not done yet)."""
        return bool(self._pending)

    def due(self) -> bool:
        """Whether the batch is due: its oldest task waited :data:`DELETE_FLUSH_SECONDS` (with a
        ledger: ``ledger_flush_seconds``, or the batch holds ``ledger_flush_tasks``)."""
        if not self._batch:
            return False
        full = self._ledger is not None and len(self._batch) >= self._flush_tasks
        return full or self._clock() - self._batch[0].at >= self._flush_seconds

    def batched(self, handle: str) -> bool:
        """Whether an executed task with this handle waits in the batch (never release it)."""
        return any(d.message.handle == handle for d in self._batch)

    def deleted_in_background(self) -> bool:
        """Whether a background delete finished and waits to be collected."""
        return self._deleting is not None and self._deleting[2].done()

    def find(self, handle: str) -> Message | None:
        """The pending message with this handle, if any."""
        return next((d.message for d in list(self._pending.values()) if d.message.handle == handle), None)

    # -- deleting ---------------------------------------------------------------

    def flush(self, *, wait: bool = True) -> None:
        """Delete the batch, then report each task.

        With ``wait=False`` and a pool the delete runs in the background while
        the loop receives the next batch; :meth:`collect` finishes it.
        """
        self.collect()
        if not self._batch or (not wait and self._ledger is not None and not self.due()):
            return
        done, self._batch = self._batch, []
        lost = self._lost_of(done)
        handles = [d.message.handle for d in done]
        if self.pool is not None and not wait:
            self._deleting = (done, lost, self.pool.submit(self._record_then_delete, done, handles))
        else:
            self._settle(done, lost, self._record_then_delete(done, handles))

    def collect(self) -> None:
        """Wait for a background delete and report its tasks."""
        if self._deleting is not None:
            done, lost, future = self._deleting
            self._deleting = None
            self._settle(done, lost, future.result())

    def retry(self, *, last: bool = False) -> None:
        """One more round of deleting the pending tasks (``last``: the worker stops)."""
        if not self._pending:
            return
        done = list(self._pending.values())
        self._pending.clear()
        if last:  # this round is their last
            for d in done:
                d.attempts = max(d.attempts, self._attempts - 1)
        lost = self._lost_of(done)
        log.info("retrying the delete of %d executed tasks", len(done))
        self._settle(done, lost, self._record_then_delete(done, [d.message.handle for d in done]))

    def adopt(self, message: Message) -> bool:
        """A pending task came back: delete it with its new lease; True if it was pending."""
        d = self._pending.pop(message.message_id, None)
        if d is None:
            return False
        if self.heartbeat is not None:
            self.heartbeat.discard(d.message.handle)
        log.info(
            "task %s came back while its delete was pending: deleting it, not running it again",
            message.message_id,
        )
        self._batch.append(Completed(message, d.task, d.seconds, self._clock(), d.attempts))
        return True

    def close(self) -> None:
        """Close the ledger's connections (if any)."""
        if self._ledger is not None:
            self._ledger.close()

    # -- inside -----------------------------------------------------------------

    def _lost_of(self, done: list[Completed]) -> set[str]:
        """Forget the messages of ``done``; return the handles whose renewal had failed."""
        hb = self.heartbeat
        lost = {d.message.handle for d in done if hb is not None and hb.lost(d.message.handle)}
        for d in done:
            self._forget(d.message)
        return lost

    def _settle(self, done: list[Completed], lost: set[str], result: _Deletion) -> None:
        """Report the tasks a delete call removed; keep those it could not reach for later."""
        failed = set(result.failed)
        if failed:
            self._delete_failed([d for d in done if d.message.handle in failed], result.error)
        settled = [d for d in done if d.message.handle not in failed]
        if settled:
            self._deleted(settled, lost, result.deleted)

    def _deleted(self, done: list[Completed], lost: set[str], deleted: int) -> None:
        if deleted < len(done):
            self._stats.lease_lost += len(done) - deleted
            log.warning(
                "%d of %d completed tasks could not be deleted (lease lost); they may run again",
                len(done) - deleted,
                len(done),
            )
        for d in done:
            self._completed(d, "lease_lost" if d.message.handle in lost or deleted == 0 else "ok", None)

    def _delete_failed(self, failed: list[Completed], error: BaseException | None) -> None:
        """Keep executed tasks whose delete failed transiently, or give up on them."""
        self._back_off()
        for d in failed:
            d.attempts += 1
        keep = [d for d in failed if d.attempts < self._attempts]
        if keep:
            for d in keep:
                self._pending[d.message.message_id] = d
            if self.heartbeat is not None:
                self.heartbeat.add(d.message.handle for d in keep)
            log.warning(
                "could not delete %d executed tasks (attempt %d of %d): %s; retrying after a backoff",
                len(keep),
                max(d.attempts for d in keep),
                self._attempts,
                error,
            )
        given_up = [d for d in failed if d.attempts >= self._attempts]
        if given_up:
            self._give_up(given_up, error)

    def _give_up(self, done: list[Completed], error: BaseException | None) -> None:
        self._stats.undeleted += len(done)
        log.warning(
            "gave up deleting %d executed tasks after %d attempts (%s); they will run again after "
            "their lease: %s",
            len(done),
            self._attempts,
            error,
            ", ".join(d.message.message_id for d in done),
        )
        for d in done:
            self._completed(d, "delete_failed", str(error))

    def _record_then_delete(self, done: list[Completed], handles: list[str]) -> _Deletion:
        """Record ``done`` in the ledger (if any), then delete ``handles``; never delete unrecorded."""
        if self._ledger is not None:
            entries = [(i, DONE) for i in _identities(done)]
            if entries:
                _faults.before_record(len(entries))  # test-only hooks, inert unless set
                try:
                    self._retrying(self._ledger.record, entries)
                except Exception as e:
                    if not is_transient(e):
                        raise
                    return _Deletion(0, list(handles), e)
                _faults.after_record(len(entries))
        return self._delete(handles)

    def _delete(self, handles: list[str]) -> _Deletion:
        """Delete ``handles``, retrying transient errors briefly; others (but a lost lease) raise."""
        try:
            return _Deletion(int(self._retrying(self._delete_call, handles)))
        except LeaseLostError:
            if len(handles) == 1:
                return _Deletion()
        except Exception as e:
            if not is_transient(e):
                raise
            return _Deletion(0, list(handles), e)
        result = _Deletion()
        for handle in handles:
            try:
                result.deleted += int(self._retrying(self._delete_call, [handle]))
            except LeaseLostError:
                pass
            except Exception as e:
                if not is_transient(e):
                    raise
                result.failed.append(handle)
                result.error = e
        return result


def _identities(done: list[Completed]) -> list[Identity]:
    """The identities stamped into the bodies of ``done`` (unstamped tasks have none)."""
    found = (identity_of(d.message.body) for d in done)
    return [i for i in found if i is not None]
