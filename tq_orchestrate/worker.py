"""The worker loop: lease tasks, execute them, delete them; renew, back off, stop cleanly.

One loop serves three callers: :func:`poll` (``TaskQueue.poll``, the library
call with python-task-queue's parameters), ``python -m tq_orchestrate.worker
URL`` and ``tqo work URL`` (both :func:`run_worker`, with SIGTERM handling).

What the loop guarantees:

* a task is deleted only after its ``execute()`` returned;
* a task that raises is logged with its payload and traceback, its error is
  recorded on the message, and it is released with a delay that grows with its
  receive count (:func:`~tq_orchestrate._backoff.retry_delay`); the backend
  dead-letters it after too many receives. The worker goes on unless
  ``stop_on_error``;
* a message that is not a valid task (corrupt JSON, unknown shape) is logged
  with its raw text and dead-lettered at once where the backend can; elsewhere
  it is left leased, so the redrive policy takes it after its receives.
  A payload naming a class or function this worker does not know
  (:class:`~tq_orchestrate.errors.UnsafeTaskError`) is treated as a failed
  task instead: another worker started with the right ``--import`` may run it;
* leases of held tasks are renewed by a heartbeat thread;
* a transient backend error (a retryable
  :class:`~tq_orchestrate.errors.BackendError`, a connection error) in
  receive, delete, release or renew is logged and retried after a backoff; the
  worker goes on. An executed task whose delete keeps failing is kept, with its
  handle, and its delete retried in later rounds (``delete_attempts`` in all,
  spaced by the backoff; it is deleted, not run again, if it comes back to this
  worker meanwhile), then given up: it runs again after its lease (at least
  once). An error no retry cures (the queue was deleted, access denied) stops
  the worker and is raised from :meth:`Worker.run`;
* the first stop signal lets the task in hand finish and be deleted, releases
  the tasks leased but not started, and returns; the second one raises
  (KeyboardInterrupt for SIGINT, ``SystemExit(128 + signum)`` otherwise) after a
  best-effort release of everything still held;
* when the queue is empty the worker sleeps with random exponential backoff
  (:class:`~tq_orchestrate._backoff.Backoff`), reset by work.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from ._backoff import TRANSIENT_ERRORS, Backoff, call_retrying, is_fatal, is_transient, retry_delay
from ._heartbeat import Heartbeat
from .backends.base import Backend, Message
from .errors import (
    BackendError,
    ConfigurationError,
    DeserializationError,
    LeaseLostError,
    TaskQueueError,
    UnsafeTaskError,
)

__all__ = [
    "LEASE_SECONDS",
    "PROGRESS_SECONDS",
    "StopFlag",
    "WorkQueue",
    "Worker",
    "WorkerOptions",
    "WorkerStats",
    "handle_signals",
    "import_task_modules",
    "poll",
    "run_worker",
]

log = logging.getLogger("tq_orchestrate.worker")
task_log = logging.getLogger("tq_orchestrate.worker.tasks")
"""One INFO record per task; ``record.task_event`` holds id, class, seconds, outcome."""

LEASE_SECONDS = 300.0
"""Default lease, as python-task-queue's ``poll``."""

DELETE_FLUSH_SECONDS = 1.0
"""Completed tasks of one batch are deleted together, but never held longer than this."""

PROGRESS_SECONDS = 30.0
"""Default interval of the worker's progress line."""

IMPORT_HINT = "start the worker with --import MODULE (the module defining it)"
"""Added to the log line of a task whose class or function this worker does not know."""

LOG_BODY_CHARS = 4096
"""Message bodies in log lines are cut to this many characters (dead letters keep them whole)."""

_STOP_FN_ARGS = ("executed", "tries", "previous_execution_time", "elapsed_time")
_BACKEND_ERRORS: tuple[type[BaseException], ...] = (TaskQueueError, *TRANSIENT_ERRORS)


class WorkQueue(Protocol):
    """What the loop needs of a queue (``TaskQueue`` provides it)."""

    @property
    def backend(self) -> Backend: ...

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]: ...

    def decode(self, message: Message) -> Any: ...

    def delete(self, tasks: Any) -> int: ...

    def renew(self, task: Any, seconds: float) -> Any: ...

    def release(self, task: Any, delay_seconds: float = 0) -> Any: ...


@dataclass(frozen=True)
class WorkerOptions:
    """Settings of one worker loop (units in the names; None means no limit)."""

    lease_seconds: float = LEASE_SECONDS
    num_tasks: int = 1
    """Tasks leased per receive call (1-10)."""
    wait_seconds: float = 0.0
    """Long-poll time of each receive call (SQS allows up to 20)."""
    burst_seconds: float | None = None
    """Exit once the queue has stayed empty this long (0: at the first empty receive)."""
    max_tasks: int | None = None
    max_seconds: float | None = None
    max_loops: int | None = None
    stop_on_error: bool = False
    heartbeat: bool = True
    min_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    backoff_jitter: bool = True
    retry_delay_seconds: float = 5.0
    """Delay before a failed task is offered again, doubled per receive..."""
    max_retry_delay_seconds: float = 300.0
    """...up to this."""
    delete_attempts: int = 8
    """Rounds of deleting an executed task through transient errors before giving up
    on it (it then runs again after its lease); rounds are spaced by the backoff."""
    execute_args: Sequence[Any] = ()
    execute_kwargs: dict[str, Any] = field(default_factory=dict)
    stop_fn: Callable[..., Any] | None = None
    backoff_exceptions: tuple[type[BaseException], ...] = ()
    before_fn: Callable[[Any], Any] | None = None
    after_fn: Callable[[Any], Any] | None = None
    progress_seconds: float | None = PROGRESS_SECONDS
    """Log a progress line (done, failed, rate) at INFO about this often; None: never."""

    def __post_init__(self) -> None:
        if not 1 <= self.num_tasks <= 10:
            raise ConfigurationError(f"num_tasks must be between 1 and 10, got {self.num_tasks!r}")
        if not self.lease_seconds > 0:
            raise ConfigurationError(f"lease_seconds must be > 0, got {self.lease_seconds!r}")
        for name in ("wait_seconds", "retry_delay_seconds", "max_retry_delay_seconds"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if isinstance(self.delete_attempts, bool) or not (
            isinstance(self.delete_attempts, int) and self.delete_attempts >= 1
        ):
            raise ConfigurationError(f"delete_attempts must be an integer >= 1, got {self.delete_attempts!r}")
        if self.progress_seconds is not None and not self.progress_seconds > 0:
            raise ConfigurationError(f"progress_seconds must be > 0 or None, got {self.progress_seconds!r}")
        for name in ("burst_seconds", "max_tasks", "max_seconds", "max_loops"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must be >= 0 or None, got {value!r}")
        for name in ("stop_fn", "before_fn", "after_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be callable, got {value!r}")
        Backoff(self.min_backoff_seconds, self.max_backoff_seconds)  # validates


@dataclass
class WorkerStats:
    """What a worker loop did."""

    executed: int = 0
    """Tasks whose execute() returned (deleted, or attempted if the lease was lost)."""
    failed: int = 0
    corrupt: int = 0
    lease_lost: int = 0
    undeleted: int = 0
    """Executed tasks whose delete still failed after ``delete_attempts`` rounds (they run again)."""
    released: int = 0
    """Leased tasks handed back unstarted when the worker stopped."""
    loops: int = 0
    stop_reason: str = ""
    error: BaseException | None = None
    """The task error that stopped the loop (``stop_on_error``)."""


class StopFlag:
    """Set once to ask the loop to stop after the task in hand; also its sleep."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; return early when the flag is set."""
        self._event.wait(max(0.0, seconds))


@contextlib.contextmanager
def handle_signals(stop: StopFlag, signums: Iterable[int] = (signal.SIGINT,)) -> Iterator[None]:
    """Route ``signums`` to ``stop`` while the block runs, then restore the old handlers.

    The first signal sets the flag; the second raises KeyboardInterrupt (SIGINT)
    or ``SystemExit(128 + signum)`` and restores the system's default action, so
    a third one kills the process even while it is stuck in C code. Outside the
    main thread this does nothing (Python delivers signals only there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            stop.set(name)
            log.warning("%s received: finishing the task in hand, then exiting (again to exit now)", name)
            return
        log.warning("%s received again: exiting now", name)
        signal.signal(signum, signal.SIG_DFL)  # a third one ends the process even inside C code
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {s: signal.getsignal(s) for s in signums}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


def _task_name(task: Any) -> str:
    key = getattr(task, "key", None)
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]}:{key[1]}"
    return type(task).__name__


def clip(text: str, limit: int = LOG_BODY_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text)} chars]"


def body_task_name(body: str) -> str:
    """The class or function a message body names, without building it ("?" if none)."""
    from ._payload import loads, unwrap

    try:
        payload, _ = unwrap(loads(body))
    except DeserializationError:
        return "?"
    if isinstance(payload, dict) and isinstance(payload.get("class"), str):
        return str(payload["class"])
    if isinstance(payload, list) and payload and isinstance(payload[0], list) and len(payload[0]) == 2:
        return f"{payload[0][0]}:{payload[0][1]}"
    return "?"


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


@dataclass(slots=True)
class _Done:
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
        self._done: list[_Done] = []
        self._heartbeat: Heartbeat | None = None
        self._delete_pool: ThreadPoolExecutor | None = None
        self._deleting: tuple[list[_Done], set[str], Future[_Deletion]] | None = None
        self._pending: dict[str, _Done] = {}
        """Executed tasks whose delete failed transiently, by message id."""
        self._fatal: BaseException | None = None
        """An error no retry cures, met by the heartbeat thread."""
        self._started_at = 0.0
        self._tasks_started = 0
        self._tries = 0
        self._previous_seconds = 0.0
        self._empty_since: float | None = None
        self._report = _Report()
        self._back_off = False
        self._retrying = call_retrying(self._retry_sleep)

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
            if self._concurrent_calls():
                self._delete_pool = stack.enter_context(ThreadPoolExecutor(1, "tqo-delete"))
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
        self._retry_deletes()
        messages = self._receive()
        if messages:
            self._empty_since = None
            self._process(messages)
        elif messages is not None:
            self._collect()
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
        if burst_over and not self._pending:  # deletes to retry are work not done yet
            self.stats.stop_reason = "queue empty (burst)"
            return
        if self._stop_fn_says_stop():
            return
        self._back_off = True

    def _pause(self, seconds: float) -> None:
        """Sleep, but not past a burst or run-time deadline."""
        o, now = self.options, self._clock()
        if o.burst_seconds is not None and self._empty_since is not None and not self._pending:
            seconds = min(seconds, self._empty_since + o.burst_seconds - now)
        if o.max_seconds is not None:
            seconds = min(seconds, self._started_at + o.max_seconds - now)
        if seconds > 0:
            self._sleep(seconds)

    def _process(self, messages: list[Message]) -> None:
        worked = False
        if self._pending:  # before any stop check: these must never be handed back
            messages = [m for m in messages if not self._adopt(m)]
        for m in messages:
            if self._should_stop(between_tasks=True):
                break
            if self._done and self._clock() - self._done[0].at >= DELETE_FLUSH_SECONDS:
                self._flush(wait=False)
            elif self._deleting is not None and self._deleting[2].done():
                self._collect()  # report finished deletes before a task that may run long
            self._tasks_started += 1
            worked = self._handle(m) or worked
            self._progress()
            if self._stop_fn_says_stop():
                break
        self._flush(wait=False)
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
            "previous_execution_time": self._previous_seconds,
            "elapsed_time": self._clock() - self._started_at,
        }
        if fn(**{k: values[k] for k in self._stop_args}):
            self.stats.stop_reason = self.stats.stop_reason or "stop_fn"
            return True
        return False

    # -- one message --------------------------------------------------------

    def _handle(self, message: Message) -> bool:
        """Run one message; True if its task executed."""
        try:
            task = self.queue.decode(message)
        except UnsafeTaskError as e:
            self._failed(message, None, e, 0.0)
            return False
        except DeserializationError as e:
            self._corrupt(message, e)
            return False
        except Exception as e:  # the task's constructor refused its arguments
            self._failed(message, None, e, 0.0)
            return False
        o = self.options
        if self._say is not None:
            self._say(f"INFO Running {task!r} (id: {message.message_id})")
        start = time.perf_counter()
        try:
            if o.before_fn is not None:
                o.before_fn(task)
            task.execute(*o.execute_args, **o.execute_kwargs)
        except Exception as e:
            self._failed(message, task, e, time.perf_counter() - start)
            return False
        seconds = time.perf_counter() - start
        self.stats.executed += 1
        self._previous_seconds = seconds
        self._done.append(_Done(message, task, seconds, self._clock()))
        return True

    def _failed(self, message: Message, task: Any, error: Exception, seconds: float) -> None:
        o, s = self.options, self.stats
        s.failed += 1
        name = _task_name(task) if task is not None else body_task_name(message.body)
        hint = ""
        if isinstance(error, UnsafeTaskError) and "--import" not in str(error):
            hint = f"; {IMPORT_HINT}"
        log.error(
            "task %s (%s) failed after %.3f s on receive %d: %s: %s%s\npayload: %s\n%s",
            message.message_id,
            name,
            seconds,
            message.receive_count,
            type(error).__name__,
            error,
            hint,
            clip(message.body),
            "".join(traceback.format_exception(error)).rstrip(),
        )
        if self._say is not None:
            self._say(f"ERROR {name} {message.message_id} raised {type(error).__name__}: {error}")
        self._best_effort(self.queue.backend.record_error, message.handle, f"{type(error).__name__}: {error}")
        delay = retry_delay(message.receive_count, o.retry_delay_seconds, o.max_retry_delay_seconds)
        self._forget(message)
        self._best_effort(self.queue.release, message.handle, delay, fatal=True)
        self._task_event(message, name, seconds, "error", error=f"{type(error).__name__}: {error}")
        if isinstance(error, o.backoff_exceptions):
            self._back_off = True
        elif o.stop_on_error:
            s.error = error
            s.stop_reason = f"task {message.message_id} failed (stop_on_error)"

    def _corrupt(self, message: Message, error: DeserializationError) -> None:
        self.stats.corrupt += 1
        raw = error.raw if error.raw is not None else message.body
        log.error(
            "message %s (receive %d) is not a valid task: %s\nraw text: %s",
            message.message_id,
            message.receive_count,
            error.reason,
            clip(repr(raw)),
        )
        self._forget(message)
        outcome = "dead_lettered"
        try:
            self.queue.backend.dead_letter(message.handle, f"corrupt payload: {error.reason}")
        except ConfigurationError:
            outcome = "corrupt"  # no dead_letter call: left leased, the redrive policy takes it
            self._best_effort(self.queue.backend.record_error, message.handle, error.reason)
        except TaskQueueError as e:
            outcome = "corrupt"
            log.warning("could not dead-letter message %s: %s", message.message_id, e)
        self._task_event(message, "?", 0.0, outcome, error=error.reason)

    def _lease_lost(self, handle: str, reason: str) -> None:
        m = self._held.get(handle)
        if m is None:
            m = next((d.message for d in list(self._pending.values()) if d.message.handle == handle), None)
        ident = m.message_id if m is not None else handle
        log.warning("lease of task %s could not be renewed (%s); another worker may run it", ident, reason)

    def _fatal_error(self, error: BaseException) -> None:
        """From the heartbeat thread: stop after the task in hand, then raise ``error``."""
        if self._fatal is None:
            log.error("renewing a lease failed for good, stopping: %s", error)
            self._fatal = error

    # -- handing messages back ----------------------------------------------

    def _forget(self, message: Message) -> None:
        self._held.pop(message.handle, None)
        if self._heartbeat is not None:
            self._heartbeat.discard(message.handle)

    def _flush(self, *, wait: bool = True) -> None:
        """Delete the completed tasks, then run ``after_fn`` on each.

        With ``wait=False`` on a network backend the delete runs in the background
        while the loop receives the next batch; :meth:`_collect` finishes it.
        """
        self._collect()
        if not self._done:
            return
        done, self._done = self._done, []
        lost = self._lost_of(done)
        handles = [d.message.handle for d in done]
        if self._delete_pool is not None and not wait:
            self._deleting = (done, lost, self._delete_pool.submit(self._delete, handles))
        else:
            self._settle(done, lost, self._delete(handles))

    def _lost_of(self, done: list[_Done]) -> set[str]:
        """Forget the messages of ``done``; return the handles whose renewal had failed."""
        lost = {d.message.handle for d in done if self._heartbeat and self._heartbeat.lost(d.message.handle)}
        for d in done:
            self._forget(d.message)
        return lost

    def _collect(self) -> None:
        """Wait for a background delete and report its tasks."""
        if self._deleting is not None:
            done, lost, future = self._deleting
            self._deleting = None
            self._settle(done, lost, future.result())

    def _settle(self, done: list[_Done], lost: set[str], result: _Deletion) -> None:
        """Report the tasks a delete call removed; keep those it could not reach for later."""
        failed = set(result.failed)
        if failed:
            self._delete_failed([d for d in done if d.message.handle in failed], result.error)
        settled = [d for d in done if d.message.handle not in failed]
        if settled:
            self._deleted(settled, lost, result.deleted)

    def _deleted(self, done: list[_Done], lost: set[str], deleted: int) -> None:
        if deleted < len(done):
            self.stats.lease_lost += len(done) - deleted
            log.warning(
                "%d of %d completed tasks could not be deleted (lease lost); they may run again",
                len(done) - deleted,
                len(done),
            )
        for d in done:
            name = _task_name(d.task)
            outcome = "lease_lost" if d.message.handle in lost or deleted == 0 else "ok"
            self._task_event(d.message, name, d.seconds, outcome)
            if self._say is not None:
                self._say(f"INFO {name} {d.message.message_id} successfully executed in {d.seconds:.2f} sec.")
            self._after(d.task)

    def _delete_failed(self, failed: list[_Done], error: BaseException | None) -> None:
        """Keep executed tasks whose delete failed transiently, or give up on them."""
        self._back_off = True
        limit = self.options.delete_attempts
        keep: list[_Done] = []
        for d in failed:
            d.attempts += 1
            if d.attempts < limit:
                keep.append(d)
        if keep:
            for d in keep:
                self._pending[d.message.message_id] = d
            if self._heartbeat is not None:
                self._heartbeat.add(d.message.handle for d in keep)
            log.warning(
                "could not delete %d executed tasks (attempt %d of %d): %s; retrying after a backoff",
                len(keep),
                max(d.attempts for d in keep),
                limit,
                error,
            )
        given_up = [d for d in failed if d.attempts >= limit]
        if given_up:
            self._give_up(given_up, error)

    def _give_up(self, done: list[_Done], error: BaseException | None) -> None:
        self.stats.undeleted += len(done)
        log.warning(
            "gave up deleting %d executed tasks after %d attempts (%s); they will run again after "
            "their lease: %s",
            len(done),
            self.options.delete_attempts,
            error,
            ", ".join(d.message.message_id for d in done),
        )
        for d in done:
            self._task_event(d.message, _task_name(d.task), d.seconds, "delete_failed", error=str(error))
            self._after(d.task)

    def _retry_deletes(self, *, last: bool = False) -> None:
        """One more round of deleting the tasks kept by :meth:`_delete_failed`."""
        if not self._pending:
            return
        done = list(self._pending.values())
        self._pending.clear()
        if last:  # the worker stops: this round is their last
            for d in done:
                d.attempts = max(d.attempts, self.options.delete_attempts - 1)
        lost = self._lost_of(done)
        log.info("retrying the delete of %d executed tasks", len(done))
        self._settle(done, lost, self._delete([d.message.handle for d in done]))

    def _adopt(self, message: Message) -> bool:
        """A task whose delete is pending came back: delete it with its new lease, do not run it."""
        d = self._pending.pop(message.message_id, None)
        if d is None:
            return False
        if self._heartbeat is not None:
            self._heartbeat.discard(d.message.handle)
        self._held.pop(message.handle, None)  # never released: it ran
        log.info(
            "task %s came back while its delete was pending: deleting it, not running it again",
            message.message_id,
        )
        self._done.append(_Done(message, d.task, d.seconds, self._clock(), d.attempts))
        return True

    def _delete(self, handles: list[str]) -> _Deletion:
        """Delete ``handles``, retrying transient errors briefly; others (but a lost lease) raise."""
        try:
            return _Deletion(int(self._retrying(self.queue.delete, handles)))
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
                result.deleted += int(self._retrying(self.queue.delete, [handle]))
            except LeaseLostError:
                pass
            except Exception as e:
                if not is_transient(e):
                    raise
                result.failed.append(handle)
                result.error = e
        return result

    def _after(self, task: Any) -> None:
        if self.options.after_fn is None:
            return
        try:
            self.options.after_fn(task)
        except Exception:
            log.exception("after_fn raised for %r", task)

    def _release_held(self) -> None:
        """Hand back every held message at once (leased but not started, or interrupted)."""
        for m in list(self._held.values()):
            self._forget(m)
            if self._best_effort(self.queue.release, m.handle, 0.0):
                self.stats.released += 1

    def _finish(self) -> None:
        try:
            self._flush()
            self._retry_deletes(last=True)
        finally:
            self._release_held()

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

    def _task_event(self, message: Message, name: str, seconds: float, outcome: str, **more: Any) -> None:
        if not task_log.isEnabledFor(logging.INFO):
            return
        event = {
            "id": message.message_id,
            "class": name,
            "seconds": round(seconds, 6),
            "outcome": outcome,
            "receive_count": message.receive_count,
            **more,
        }
        task_log.info(
            "%s %s %s in %.3f s", outcome, name, message.message_id, seconds, extra={"task_event": event}
        )


# -- entry points -------------------------------------------------------------


def poll(
    tq: WorkQueue,
    lease_seconds: float = LEASE_SECONDS,
    verbose: bool = False,
    execute_args: Sequence[Any] = (),
    execute_kwargs: dict[str, Any] | None = None,
    stop_fn: Callable[..., Any] | None = None,
    backoff_exceptions: Iterable[type[BaseException]] = (),
    min_backoff_window: float = 1.0,
    max_backoff_window: float = 60.0,
    before_fn: Callable[[Any], Any] | None = None,
    after_fn: Callable[[Any], Any] | None = None,
    tally: bool = False,
    *,
    max_loops: int | None = None,
    num_tasks: int = 1,
    wait_seconds: float = 0.0,
    burst_seconds: float | None = None,
    max_tasks: int | None = None,
    max_seconds: float | None = None,
    stop_on_error: bool = False,
    heartbeat: bool = True,
    retry_delay_seconds: float = 5.0,
    max_retry_delay_seconds: float = 300.0,
    handle_sigterm: bool = True,
    progress_seconds: float | None = PROGRESS_SECONDS,
    sleep: Callable[[float], object] | None = None,
    clock: Callable[[], float] | None = None,
) -> int:
    """Execute tasks from ``tq`` until a stop condition; return how many executed.

    The first nine parameters are python-task-queue's: ``stop_fn`` receives
    whichever of ``executed``, ``tries``, ``previous_execution_time`` and
    ``elapsed_time`` it names and is evaluated after every task and every empty
    receive; ``backoff_exceptions`` raised by a task (or by a receive) make the
    loop back off instead of counting as failures; the backoff window doubles
    from ``min_backoff_window`` to ``max_backoff_window`` seconds. ``tally`` is
    accepted for compatibility: backends that keep totals count completions
    themselves.

    Unlike upstream, a task that raises does not end the loop (it is released
    with a delay and retried; ``stop_on_error=True`` re-raises its error after
    cleaning up). Ours: ``max_loops``, ``num_tasks`` (1-10 per receive),
    ``wait_seconds`` (long polling), ``burst_seconds`` (exit after the queue
    stayed empty this long), ``max_tasks``, ``max_seconds``, ``heartbeat``
    (renew leases of held tasks), ``retry_delay_seconds`` /
    ``max_retry_delay_seconds`` (delay of failed tasks), and injectable
    ``sleep`` / ``clock``. SIGINT stops after the task in hand when called
    from the main thread, and so does SIGTERM (Kubernetes, SLURM) unless
    ``handle_sigterm=False``: the task in hand finishes and is deleted, the
    tasks leased but not started are released, poll returns, and the previous
    handlers are restored. A second SIGINT raises KeyboardInterrupt, a second
    SIGTERM ``SystemExit(143)``. ``progress_seconds``: log a progress line at
    INFO this often (None: never).
    """
    del tally
    options = WorkerOptions(
        lease_seconds=lease_seconds,
        num_tasks=num_tasks,
        wait_seconds=wait_seconds,
        burst_seconds=burst_seconds,
        max_tasks=max_tasks,
        max_seconds=max_seconds,
        max_loops=max_loops,
        stop_on_error=stop_on_error,
        heartbeat=heartbeat,
        min_backoff_seconds=min_backoff_window,
        max_backoff_seconds=max_backoff_window,
        retry_delay_seconds=retry_delay_seconds,
        max_retry_delay_seconds=max_retry_delay_seconds,
        execute_args=tuple(execute_args),
        execute_kwargs=dict(execute_kwargs or {}),
        stop_fn=stop_fn,
        backoff_exceptions=tuple(backoff_exceptions),
        before_fn=before_fn,
        after_fn=after_fn,
        progress_seconds=progress_seconds,
    )
    worker = Worker(tq, options, sleep=sleep, clock=clock, say=print if verbose else None)
    signums = (signal.SIGINT, signal.SIGTERM) if handle_sigterm else (signal.SIGINT,)
    with handle_signals(worker.stop, signums):
        stats = worker.run()
    if verbose:
        print("Task execution loop exited.")
    if stats.error is not None:
        raise stats.error
    return stats.executed


def import_task_modules(modules: Iterable[str]) -> None:
    """Import task modules and allow their tasks (see :func:`tq_orchestrate.import_task_modules`)."""
    from ._task import import_task_modules as load

    load(modules)


def run_worker(
    url: str,
    options: WorkerOptions,
    *,
    imports: Iterable[str] = (),
    backend_options: dict[str, Any] | None = None,
) -> WorkerStats:
    """The worker process: import task modules, open ``url``, work until told to stop.

    ``backend_options`` go to the queue's backend (as ``TaskQueue``'s keywords).
    SIGTERM and SIGINT stop after the task in hand (a second one exits now); they
    are handled from the start, so a stop that comes while task modules are
    imported ends the worker cleanly before it leases anything.
    """
    stop = StopFlag()
    with handle_signals(stop, (signal.SIGINT, signal.SIGTERM)):
        from ._queue import TaskQueue

        import_task_modules(imports)
        tq = TaskQueue(url, progress=False, **(backend_options or {}))
        try:
            worker = Worker(tq, options, stop=stop)
            log.info("worker %d polling %s", os.getpid(), url)
            return worker.run()
        finally:
            tq.close()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tq_orchestrate.worker URL [options]``: the same command as ``tqo work``."""
    from .cli import work

    work.main(args=list(argv) if argv is not None else None, prog_name="python -m tq_orchestrate.worker")


if __name__ == "__main__":
    main()
