"""The worker loop: lease batches, hand each message to the executor, renew, back off, stop.

:class:`Worker` is the consumer (dramatiq's split): it receives a batch, gives
each message to the :class:`~._execute.Executor` in this thread, and lets the
:class:`~._completions.Completions` pipeline delete what executed (the ack side,
apart from execution). It renews held leases with a
:class:`~tq_orchestrate._heartbeat.Heartbeat`, sleeps with backoff when the
queue is empty, checks the stop conditions, and hands back what it leased but
did not start. It imports neither the queue front end nor click: it works on
any :class:`~._work_queue.WorkQueue`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .._backoff import TRANSIENT_ERRORS, Backoff, call_retrying, is_fatal
from .._heartbeat import Heartbeat
from ..backends.base import Message
from ..errors import BackendError, TaskQueueError
from ..ledger import open_ledger
from . import _faults
from ._completions import Completed, Completions
from ._execute import Executor
from ._options import WorkerOptions
from ._report import WorkerStats, task_event, task_name
from ._signals import StopFlag
from ._work_queue import WorkQueue

__all__ = ["Worker"]

log = logging.getLogger("tq_orchestrate.worker")

_STOP_FN_ARGS = ("executed", "tries", "previous_execution_time", "elapsed_time")
_BACKEND_ERRORS: tuple[type[BaseException], ...] = (TaskQueueError, *TRANSIENT_ERRORS)


def _bind_stop_fn(stop_fn: Callable[..., Any]) -> tuple[str, ...]:
    """The injectable arguments ``stop_fn`` names (all four if it takes ``**kwargs``)."""
    params = inspect.signature(stop_fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return _STOP_FN_ARGS
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return tuple(n for n in _STOP_FN_ARGS if n in names)


@dataclass(frozen=True, slots=True)
class _Report:
    """When the last progress line was logged, and the tasks done then."""

    at: float = 0.0
    done: int = 0


class Worker:
    """One worker loop over ``queue``. Build it, then call :meth:`run` once.

    ``sleep`` (default: the stop flag's interruptible wait; the short retries of
    one backend call use ``time.sleep`` then, so they still wait while stopping)
    and ``clock`` (default: ``time.monotonic``) are injectable so backoff and
    time limits can be tested without waiting. ``say`` receives human progress
    lines (``print`` for ``poll(verbose=True)``).
    """

    def __init__(
        self,
        queue: WorkQueue,
        options: WorkerOptions | None = None,
        *,
        stop: StopFlag | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] | None = None,
        say: Callable[[str], object] | None = None,
    ) -> None:
        self.queue = queue
        self.options = options or WorkerOptions()
        self.stop = stop or StopFlag()
        self._sleep = sleep or self.stop.wait
        self._retry_wait: Callable[[float], object] = sleep or time.sleep
        self._clock = clock or time.monotonic
        self._say = say
        o = self.options
        self.backoff = Backoff(o.min_backoff_seconds, o.max_backoff_seconds, jitter=o.backoff_jitter)
        self.stats = WorkerStats()
        self._stop_args = _bind_stop_fn(o.stop_fn) if o.stop_fn is not None else ()
        self._held: dict[str, Message] = {}
        self._heartbeat: Heartbeat | None = None
        self._fatal: BaseException | None = None
        """An error no retry cures, met by the heartbeat thread."""
        self._started_at = 0.0
        self._tasks_started = 0
        self._tries = 0
        self._empty_since: float | None = None
        self._report = _Report()
        self._back_off = False
        self._retrying = call_retrying(self._retry_sleep)
        self._completions = Completions(
            queue.delete,
            self._retrying,
            self.stats,
            attempts=o.delete_attempts,
            clock=self._clock,
            forget=self._forget,
            completed=self._completed,
            back_off=self._request_back_off,
            ledger=_faults.wrap_ledger(open_ledger(o.ledger_url)) if o.ledger_url else None,
            ledger_flush_tasks=o.ledger_flush_tasks,
            ledger_flush_seconds=o.ledger_flush_seconds,
        )
        self._executor = Executor(
            queue,
            o,
            self.stats,
            self._completions,
            forget=self._forget,
            best_effort=self._best_effort,
            back_off=self._request_back_off,
            say=say,
        )

    def _retry_sleep(self, seconds: float) -> None:
        self._retry_wait(seconds)

    # -- the loop -----------------------------------------------------------

    def run(self) -> WorkerStats:
        """Work until a stop condition; return what was done."""
        self._started_at = self._clock()
        self._report = _Report(self._started_at)
        with contextlib.ExitStack() as stack:
            if self.options.heartbeat:
                self._heartbeat = stack.enter_context(self._make_heartbeat())
                self._completions.heartbeat = self._heartbeat
            if self._concurrent_calls():
                self._completions.pool = stack.enter_context(ThreadPoolExecutor(1, "tqo-delete"))
            try:
                while not self._should_stop():
                    self._iterate()
            finally:
                self._finish()
        if self._fatal is not None:
            raise self._fatal
        if self.stats.stop_reason == "" and self.stop.is_set():
            self.stats.stop_reason = f"stop requested ({self.stop.reason})"
        log.info(
            "worker stopped (%s): %d executed, %d failed, %d corrupt, %d released%s",
            self.stats.stop_reason or "done",
            self.stats.executed,
            self.stats.failed,
            self.stats.corrupt,
            self.stats.released,
            f", {self.stats.undeleted} not deleted" if self.stats.undeleted else "",
        )
        return self.stats

    def _concurrent_calls(self) -> bool:
        """Whether the backend gains from calls in parallel (a network queue, not a local file)."""
        try:
            return int(self.queue.backend.capabilities.upload_concurrency) > 1
        except AttributeError:
            return False

    def _make_heartbeat(self) -> Heartbeat:
        try:
            cap = float(self.queue.backend.capabilities.max_lease_seconds)
        except AttributeError:
            cap = 12 * 3600.0
        return Heartbeat(
            self.queue.renew,
            self.options.lease_seconds,
            max_total_seconds=cap,
            on_lost=self._lease_lost,
            on_fatal=self._fatal_error,
        )

    def _should_stop(self, *, between_tasks: bool = False) -> bool:
        """Whether to stop; ``between_tasks`` ignores ``max_loops`` (the batch is this loop's)."""
        o, s = self.options, self.stats
        if self.stop.is_set() or s.stop_reason:
            return True
        reason = ""
        if self._fatal is not None:
            reason = f"backend error: {self._fatal}"
        elif o.max_loops is not None and s.loops >= o.max_loops and not between_tasks:
            reason = f"max_loops={o.max_loops}"
        elif o.max_tasks is not None and self._tasks_started >= o.max_tasks:
            reason = f"max_tasks={o.max_tasks}"
        elif o.max_seconds is not None and self._clock() - self._started_at >= o.max_seconds:
            reason = f"max_seconds={o.max_seconds}"
        s.stop_reason = reason
        return bool(reason)

    def _iterate(self) -> None:
        self.stats.loops += 1
        self._completions.retry()
        messages = self._receive()
        if messages:
            self._empty_since = None
            self._process(messages)
        elif messages is not None:
            self._completions.flush()  # nothing more to batch with: record and delete now
            self._tries += 1
            self._idle()
        self._progress()
        if self._back_off and not self._should_stop():
            self._pause(self.backoff.next())
        self._back_off = False

    def _progress(self) -> None:
        """Log what the worker did since the last line, every ``progress_seconds``."""
        every, now, r = self.options.progress_seconds, self._clock(), self._report
        if every is None or now - r.at < every:
            return
        s = self.stats
        done, failed = s.executed, s.failed + s.corrupt
        recent = (done - r.done) / max(now - r.at, 1e-9)
        overall = done / max(now - self._started_at, 1e-9)
        log.info(
            "progress: %d done, %d failed, %.2f tasks/s in the last %.0f s, %.2f tasks/s overall",
            done,
            failed,
            recent,
            now - r.at,
            overall,
        )
        self._report = _Report(now, done)

    def _receive(self) -> list[Message] | None:
        """Lease a batch; None after a transient failure (the loop backs off)."""
        o = self.options
        want = o.num_tasks
        if o.max_tasks is not None:
            want = max(1, min(want, o.max_tasks - self._tasks_started))
        try:
            messages = self.queue.receive(want, o.lease_seconds, o.wait_seconds)
        except BackendError as e:
            if not e.retryable:
                raise
            log.warning("receive failed, backing off: %s", e)
        except TRANSIENT_ERRORS as e:
            log.warning("receive failed, backing off: %s: %s", type(e).__name__, e)
        except o.backoff_exceptions as e:
            log.warning("receive raised %s, backing off: %s", type(e).__name__, e)
        else:
            for m in messages:
                self._held[m.handle] = m
            if self._heartbeat is not None and messages:
                self._heartbeat.add(m.handle for m in messages)
            return messages
        self._tries += 1
        self._back_off = True
        return None

    def _idle(self) -> None:
        o = self.options
        now = self._clock()
        if self._empty_since is None:
            self._empty_since = now
        burst_over = o.burst_seconds is not None and now - self._empty_since >= o.burst_seconds
        if burst_over and not self._completions.pending:  # deletes to retry are work not done yet
            self.stats.stop_reason = "queue empty (burst)"
            return
        if self._stop_fn_says_stop():
            return
        self._back_off = True

    def _pause(self, seconds: float) -> None:
        """Sleep, but not past a burst or run-time deadline."""
        o, now = self.options, self._clock()
        if o.burst_seconds is not None and self._empty_since is not None and not self._completions.pending:
            seconds = min(seconds, self._empty_since + o.burst_seconds - now)
        if o.max_seconds is not None:
            seconds = min(seconds, self._started_at + o.max_seconds - now)
        if seconds > 0:
            self._sleep(seconds)

    def _process(self, messages: list[Message]) -> None:
        worked = False
        if self._completions.pending:  # before any stop check: these must never be handed back
            messages = [m for m in messages if not self._adopt(m)]
        for m in messages:
            if self._should_stop(between_tasks=True):
                break
            if self._completions.due():
                self._completions.flush(wait=False)
            elif self._completions.deleted_in_background():
                self._completions.collect()  # report finished deletes before a task that may run long
            self._tasks_started += 1
            worked = self._executor.run(m) or worked
            self._progress()
            if self._stop_fn_says_stop():
                break
        self._completions.flush(wait=False)
        self._release_held()
        if worked:
            self._tries = 0
            self.backoff.reset()

    def _stop_fn_says_stop(self) -> bool:
        fn = self.options.stop_fn
        if fn is None:
            return False
        values = {
            "executed": self.stats.executed,
            "tries": self._tries,
            "previous_execution_time": self._executor.previous_seconds,
            "elapsed_time": self._clock() - self._started_at,
        }
        if fn(**{k: values[k] for k in self._stop_args}):
            self.stats.stop_reason = self.stats.stop_reason or "stop_fn"
            return True
        return False

    # -- callbacks of the heartbeat, the executor and the completion pipeline ----

    def _lease_lost(self, handle: str, reason: str) -> None:
        m = self._held.get(handle)
        if m is None:
            m = self._completions.find(handle)
        ident = m.message_id if m is not None else handle
        log.warning("lease of task %s could not be renewed (%s); another worker may run it", ident, reason)

    def _fatal_error(self, error: BaseException) -> None:
        """From the heartbeat thread: stop after the task in hand, then raise ``error``."""
        if self._fatal is None:
            log.error("renewing a lease failed for good, stopping: %s", error)
            self._fatal = error

    def _forget(self, message: Message) -> None:
        self._held.pop(message.handle, None)
        if self._heartbeat is not None:
            self._heartbeat.discard(message.handle)

    def _adopt(self, message: Message) -> bool:
        """A task whose delete is pending came back: it is deleted, not run (never released: it ran)."""
        if not self._completions.adopt(message):
            return False
        self._held.pop(message.handle, None)
        return True

    def _completed(self, done: Completed, outcome: str, error: str | None) -> None:
        """The completion pipeline settled an executed task: log it, then run ``after_fn``."""
        name = task_name(done.task)
        m = done.message
        task_event(m, name, done.seconds, outcome, **({} if error is None else {"error": error}))
        if self._say is not None and outcome != "delete_failed":
            self._say(f"INFO {name} {m.message_id} successfully executed in {done.seconds:.2f} sec.")
        self._after(done.task)

    def _request_back_off(self) -> None:
        self._back_off = True

    def _after(self, task: Any) -> None:
        if self.options.after_fn is None:
            return
        try:
            self.options.after_fn(task)
        except Exception:
            log.exception("after_fn raised for %r", task)

    # -- handing messages back ----------------------------------------------

    def _release_held(self) -> None:
        """Hand back every held message at once (leased but not started, or interrupted)."""
        for m in list(self._held.values()):
            if self._completions.batched(m.handle):
                continue  # executed, waiting for its ledger record and delete
            self._forget(m)
            if self._best_effort(self.queue.release, m.handle, 0.0):
                self.stats.released += 1

    def _finish(self) -> None:
        try:
            self._completions.flush()
            self._completions.retry(last=True)
        finally:
            self._release_held()
            self._completions.close()

    def _best_effort(self, fn: Callable[..., object], *args: Any, fatal: bool = False) -> bool:
        """Call ``fn``, retrying transient errors briefly; log a failure and go on.

        With ``fatal``, an error no retry cures (:func:`is_fatal`) is raised instead.
        """
        try:
            self._retrying(fn, *args)
        except _BACKEND_ERRORS as e:
            if fatal and is_fatal(e):
                raise
            log.warning("%s failed for %s: %s", getattr(fn, "__name__", fn), args[0], e)
            return False
        return True
