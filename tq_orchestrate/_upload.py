"""The upload engine behind ``insert_all``.

It packs encoded tasks into batches by count and bytes, hands them to the
backend's :class:`~tq_orchestrate.backends.base.BatchSender` (which bounds how
many are in flight, so memory stays constant for generators of any length),
and resends what failed: whole batches after a retryable error, single entries
that a batch call refused. A task that still cannot be sent ends the upload with
an :class:`~tq_orchestrate.errors.UploadError` saying how many were inserted and
which were not. Nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any

from .backends.base import Backend, EntryFailure, SendOutcome
from .errors import BackendError, PayloadError, PayloadTooLargeError, UploadError

log = logging.getLogger(__name__)

_RETRY_TICK_SECONDS = 0.05
"""How often a finishing upload looks for resends that fell due."""

Encoder = Callable[[Any], str]
Progress = Callable[[int], object]


@dataclass(frozen=True)
class RetryPolicy:
    """How failed sends are retried: random exponential waits, a bounded number of tries."""

    attempts: int = 10
    initial_seconds: float = 0.05
    max_seconds: float = 20.0
    multiplier: float = 2.0

    def wait_seconds(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` (tenacity's strategy)."""
        import tenacity  # needed only once a send failed

        strategy = tenacity.wait_random_exponential(
            multiplier=self.initial_seconds, max=self.max_seconds, exp_base=self.multiplier
        )
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(strategy(state))


@dataclass
class _Batch:
    indexes: list[int]
    bodies: list[str]
    attempt: int = 1


@dataclass
class _State:
    """Shared between the producer thread and the senders' callbacks."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    outstanding: int = 0
    inserted: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    fatal: BaseException | None = None
    retries: queue.Queue[tuple[float, _Batch]] = field(default_factory=queue.Queue)


class Uploader:
    """Sends an iterable of tasks through one backend; see :func:`upload`."""

    def __init__(
        self,
        backend: Backend,
        encode: Encoder,
        *,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        delay_seconds: float = 0,
        progress: Progress | None = None,
    ) -> None:
        caps = backend.capabilities
        self._backend = backend
        self._encode = encode
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self._delay = delay_seconds
        self._progress = progress
        self._max_count = caps.max_batch_count
        self._max_bytes = caps.max_batch_bytes
        self._max_message = caps.max_message_bytes
        self._state = _State()
        self._read = 0

    def run(self, tasks: Iterable[Any]) -> int:
        """Send every task; return how many were inserted or raise UploadError."""
        size = len(tasks) if isinstance(tasks, Sized) else None
        expected = -(-size // self._max_count) if size else None
        sender = self._backend.open_sender(self._concurrency, expected_batches=expected)
        self._submit_to = sender.submit
        try:
            for batch in self._batches(tasks):
                self._submit_retries(block=False)
                if self._state.fatal is not None:
                    break
                self._submit(batch)
            self._finish()
        except Exception as e:  # bad input, a broken generator: what was read still goes in
            self._finish_quietly()
            add_note(e, f"{self._state.inserted} tasks were inserted before this error")
            raise
        except BaseException as e:  # Ctrl-C, SystemExit: stop now, resend nothing
            unsent = self._wait_in_flight()
            add_note(
                e,
                f"{self._state.inserted} tasks were inserted before the upload was interrupted"
                + (f"; refused and not resent: {unsent}" if unsent else ""),
            )
            raise
        finally:
            sender.close()
        return self._check()

    def _batches(self, tasks: Iterable[Any]) -> Iterator[_Batch]:
        encode, max_message, max_count, max_bytes = (
            self._encode,
            self._max_message,
            self._max_count,
            self._max_bytes,
        )
        indexes: list[int] = []
        bodies: list[str] = []
        size = 0
        index = -1
        for index, task in enumerate(tasks):
            try:
                body = encode(task)
            except PayloadError as e:
                self._read = index + 1
                add_note(e, f"in task #{index}: {_describe(task)}")
                raise
            nbytes = len(body) if body.isascii() else len(body.encode("utf-8"))
            if nbytes > max_message:
                self._read = index + 1
                raise PayloadTooLargeError(f"#{index} {_describe(task)}", nbytes, max_message)
            if bodies and (len(bodies) == max_count or size + nbytes > max_bytes):
                self._read = index + 1
                yield _Batch(indexes, bodies)
                indexes, bodies, size = [], [], 0
            indexes.append(index)
            bodies.append(body)
            size += nbytes
        self._read = index + 1
        if bodies:
            yield _Batch(indexes, bodies)

    def _submit(self, batch: _Batch) -> None:
        with self._state.lock:
            self._state.outstanding += 1
        self._submit_to(batch.bodies, self._delay, lambda outcome: self._done(batch, outcome))

    def _done(self, batch: _Batch, outcome: SendOutcome) -> None:
        """Sender callback (any thread): count successes, queue retries, record failures."""
        state = self._state
        failures = self._whole_batch_failed(batch, outcome) if isinstance(outcome, BaseException) else outcome
        ok = len(batch.bodies) - len(failures)
        with state.lock:
            state.inserted += ok
            if failures:  # the common case has none: nothing more to do under the lock
                self._handle_failures(batch, failures)
            state.outstanding -= 1
            state.lock.notify_all()
        if ok and self._progress is not None:
            self._progress(ok)

    def _handle_failures(self, batch: _Batch, failures: list[EntryFailure]) -> None:
        """Queue the retryable failures of ``batch`` for resending, record the rest (lock held)."""
        state = self._state
        retry = _Batch([], [], batch.attempt + 1)
        for failure in failures:
            index = batch.indexes[failure.index]
            if failure.retryable and batch.attempt < self._retry.attempts:
                retry.indexes.append(index)
                retry.bodies.append(batch.bodies[failure.index])
            else:
                state.failed.append((index, f"{failure.code}: {failure.message}"))
        if retry.bodies:
            due = time.monotonic() + self._retry.wait_seconds(batch.attempt)
            state.retries.put((due, retry))
            state.outstanding += 1

    def _whole_batch_failed(self, batch: _Batch, error: BaseException) -> list[EntryFailure]:
        retryable = isinstance(error, BackendError) and error.retryable
        if not retryable:
            with self._state.lock:
                self._state.fatal = self._state.fatal or error
        code = type(error).__name__
        return [EntryFailure(i, code, str(error), retryable) for i in range(len(batch.bodies))]

    def _submit_retries(self, *, block: bool) -> None:
        """Resend batches whose wait is over; with ``block`` wait for the next one."""
        retries = self._state.retries
        while True:
            try:
                due, batch = retries.get(block=block, timeout=0.05 if block else None)
            except queue.Empty:
                return
            wait = due - time.monotonic()
            if wait > 0 and not block:
                retries.put((due, batch))
                return
            if wait > 0:
                time.sleep(wait)
            with self._state.lock:
                self._state.outstanding -= 1  # the retry's own count moves to the new submit
            self._submit(batch)
            block = False

    def _finish(self) -> None:
        """Wait for every batch in flight and resend retries as they fall due.

        Each completion notifies the lock, so the wait ends as the last batch
        lands (not on the next 50 ms tick, which cost a small upload a third of
        its time); the timeout only paces retries that are not yet due.
        """
        state = self._state
        while True:
            self._submit_retries(block=False)
            with state.lock:
                if state.outstanding == 0 and state.retries.empty():
                    return
                state.lock.wait(_RETRY_TICK_SECONDS if not state.retries.empty() else 1.0)

    def _wait_in_flight(self) -> int:
        """Wait for the batches in flight (not the queued retries); return the tasks not resent."""
        state = self._state
        with state.lock:
            while state.outstanding > state.retries.qsize():
                state.lock.wait(0.05)
            return sum(len(batch.bodies) for _, batch in list(state.retries.queue))

    def _finish_quietly(self) -> None:
        try:
            self._finish()
        except Exception:  # the original error is what the caller needs
            log.exception("error while waiting for in-flight batches")

    def _check(self) -> int:
        state = self._state
        if state.failed or state.fatal is not None:
            state.failed.sort()
            reason = (
                (
                    f"upload to {self._backend.url} stopped by {state.fatal}; "
                    f"tasks from #{self._read} on were not read"
                )
                if state.fatal
                else (
                    f"{len(state.failed)} tasks could not be sent to {self._backend.url} "
                    f"after {self._retry.attempts} attempts"
                )
            )
            raise UploadError(reason, inserted=state.inserted, failed=state.failed) from state.fatal
        return state.inserted


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)``, also on Python 3.10 (which has no add_note)."""
    adder = getattr(error, "add_note", None)
    if callable(adder):
        adder(note)
        return
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes.append(note)
        return
    with contextlib.suppress(AttributeError):  # a type with __slots__: keep the error itself intact
        setattr(error, "__notes__", [note])  # noqa: B010 - BaseException declares __notes__ from 3.11 only


def _describe(task: Any) -> str:
    text = repr(task)
    return text if len(text) <= 120 else text[:117] + "..."


def upload(backend: Backend, tasks: Iterable[Any], encode: Encoder, **options: Any) -> int:
    """Send ``tasks`` (encoded by ``encode``) to ``backend``; return the number inserted."""
    return Uploader(backend, encode, **options).run(tasks)


# --- process sharding ---------------------------------------------------------

_SHARD: tuple[Any, Any, float] | None = None
"""(queue, tasks, delay_seconds) inherited by forked children; never set outside an upload."""


def default_start_method() -> str:
    """``"fork"`` where the platform has it, else ``"spawn"``.

    The same answer as ``"fork" in multiprocessing.get_all_start_methods()``
    (every platform but Windows), without importing multiprocessing.
    """
    return "spawn" if sys.platform == "win32" else "fork"


def split_ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(start, stop)`` ranges covering ``range(total)``."""
    parts = max(1, min(parts, total)) if total else 1
    step, extra = divmod(total, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + step + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def upload_sharded(
    tq: Any,
    tasks: Any,
    total: int,
    parallel: int,
    *,
    start_method: str,
    delay_seconds: float,
    progress: Progress | None,
) -> int:
    """Upload ``tasks[start:stop]`` shards from ``parallel`` processes.

    ``tasks`` must support ``len`` and slicing (a list, a range-like object, or an
    iterator class with ``__getitem__(slice)`` as in python-task-queue's listings).
    With the ``fork`` start method the children inherit ``tasks``; nothing is pickled.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    global _SHARD
    ctx = mp.get_context(start_method)
    counter = ctx.Value("q", 0)
    ranges = split_ranges(total, parallel)
    inherit = start_method == "fork"
    _SHARD = (tq, tasks, delay_seconds) if inherit else None
    try:
        with ProcessPoolExecutor(
            len(ranges), mp_context=ctx, initializer=_init_child, initargs=(counter,)
        ) as pool:
            if inherit:
                futures = [pool.submit(_upload_range, start, stop) for start, stop in ranges]
            else:
                futures = [
                    pool.submit(_upload_slice, tq, tasks[start:stop], start, delay_seconds)
                    for start, stop in ranges
                ]
            shown = 0
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                shown = _show(counter, shown, progress)
                if any(f.done() and f.exception() for f in futures):
                    break
            results = [_result(f) for f in futures]
            _show(counter, shown, progress)
    finally:
        _SHARD = None
    return _combine(results, tq, int(counter.value))


def _show(counter: Any, shown: int, progress: Progress | None) -> int:
    value = int(counter.value)
    if progress is not None and value > shown:
        progress(value - shown)
    return value


def _result(future: Any) -> int | BaseException:
    try:
        return int(future.result())
    except BaseException as e:  # combined below into one UploadError
        return e


def _combine(results: list[int | BaseException], tq: Any, counted: int) -> int:
    """The total inserted, or one UploadError for every shard that failed.

    ``counted`` is what the children reported as inserted through the shared
    counter: it includes the shares of processes that died (kill -9, OOM killer)
    without returning a count.
    """
    inserted = sum(r if isinstance(r, int) else getattr(r, "inserted", 0) for r in results)
    errors = [r for r in results if isinstance(r, BaseException)]
    if not errors:
        return inserted
    died = [e for e in errors if not isinstance(e, UploadError)]
    if died:  # a dead process's count is only in the counter; its last batch may be in too
        inserted = max(inserted, counted)
    failed = [f for e in errors for f in getattr(e, "failed", [])]
    reasons = "; ".join(f"{type(e).__name__}: {e}" for e in errors[:3])
    after = "; a process that died may have inserted one more batch than counted" if died else ""
    raise UploadError(
        f"{len(errors)} of {len(results)} upload processes for {tq.url} failed ({reasons}){after}",
        inserted=inserted,
        failed=sorted(failed),
    ) from errors[0]


_COUNTER: Any = None


_ORPHAN_CHECK_SECONDS = 0.2


def _init_child(counter: Any) -> None:
    global _COUNTER
    _COUNTER = counter
    reset_signals()
    parent = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="tqo-orphan", daemon=True).start()


def reset_signals() -> None:
    """Give a forked pool process the default SIGTERM/SIGINT actions.

    A fork inherits the parent's Python handlers (a worker's graceful-stop
    handler, say); with them a pool process ignores the SIGTERM that
    concurrent.futures sends when the pool breaks, and the parent waits forever.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _exit_when_orphaned(parent: int) -> None:
    """End this upload process once the one that started it is gone (kill -9, OOM killer).

    Without this, a killed ``insert_all`` left its processes uploading the rest of
    their shards on their own.
    """
    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_SECONDS)
    os._exit(1)


def _count(n: int) -> None:
    with _COUNTER.get_lock():
        _COUNTER.value += n


def _upload_range(start: int, stop: int) -> int:
    assert _SHARD is not None, "forked upload child without a shard"
    tq, tasks, delay_seconds = _SHARD
    return _upload_slice(tq, tasks[start:stop], start, delay_seconds)


def _upload_slice(tq: Any, tasks: Any, offset: int, delay_seconds: float) -> int:
    try:
        return int(tq._insert_here(tasks, delay_seconds, _count))
    except UploadError as e:
        raise UploadError(
            f"shard starting at #{offset}: {e.reason}",
            inserted=e.inserted,
            failed=[(i + offset, why) for i, why in e.failed],
        ) from None
