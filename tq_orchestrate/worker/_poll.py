"""``poll()``: python-task-queue's worker call (``TaskQueue.poll``) over the worker loop.

Its parameters are the settings table's (:func:`~._options.settings`), under
upstream's names where upstream has them; their defaults are read from the
table, and tests/test_worker_options.py checks that every setting is here.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._loop import Worker
from ._options import WorkerOptions, settings
from ._signals import handle_signals
from ._work_queue import WorkQueue

__all__ = ["poll"]

_D = WorkerOptions()
"""The defaults of the table, for poll's signature."""


def poll(
    tq: WorkQueue,
    lease_seconds: float = _D.lease_seconds,
    verbose: bool = False,
    execute_args: Sequence[Any] = _D.execute_args,
    execute_kwargs: dict[str, Any] | None = None,
    stop_fn: Callable[..., Any] | None = _D.stop_fn,
    backoff_exceptions: Iterable[type[BaseException]] = _D.backoff_exceptions,
    min_backoff_window: float = _D.min_backoff_seconds,
    max_backoff_window: float = _D.max_backoff_seconds,
    before_fn: Callable[[Any], Any] | None = _D.before_fn,
    after_fn: Callable[[Any], Any] | None = _D.after_fn,
    tally: bool = False,
    *,
    max_loops: int | None = _D.max_loops,
    num_tasks: int = _D.num_tasks,
    wait_seconds: float = _D.wait_seconds,
    burst_seconds: float | None = _D.burst_seconds,
    max_tasks: int | None = _D.max_tasks,
    max_seconds: float | None = _D.max_seconds,
    stop_on_error: bool = _D.stop_on_error,
    heartbeat: bool = _D.heartbeat,
    backoff_jitter: bool = _D.backoff_jitter,
    retry_delay_seconds: float = _D.retry_delay_seconds,
    max_retry_delay_seconds: float = _D.max_retry_delay_seconds,
    delete_attempts: int = _D.delete_attempts,
    progress_seconds: float | None = _D.progress_seconds,
    ledger_url: str | None = _D.ledger_url,
    ledger_flush_tasks: int = _D.ledger_flush_tasks,
    ledger_flush_seconds: float = _D.ledger_flush_seconds,
    handle_sigterm: bool = True,
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
    cleaning up). The keyword-only settings are :class:`WorkerOptions`' (see
    its table for each one's meaning), plus injectable ``sleep`` / ``clock``.
    SIGINT stops after the task in hand when called from the main thread, and
    so does SIGTERM (Kubernetes, SLURM) unless ``handle_sigterm=False``: the
    task in hand finishes and is deleted, the tasks leased but not started are
    released, poll returns, and the previous handlers are restored. A second
    SIGINT raises KeyboardInterrupt, a second SIGTERM ``SystemExit(143)``.
    ``progress_seconds``: log a progress line at INFO this often (None: never).
    """
    given = locals()
    values = {s.name: given[s.poll_name] for s in settings()}
    values.update(
        execute_args=tuple(execute_args),
        execute_kwargs=dict(execute_kwargs or {}),
        backoff_exceptions=tuple(backoff_exceptions),
    )
    worker = Worker(tq, WorkerOptions(**values), sleep=sleep, clock=clock, say=print if verbose else None)
    signums = (signal.SIGINT, signal.SIGTERM) if handle_sigterm else (signal.SIGINT,)
    with handle_signals(worker.stop, signums):
        stats = worker.run()
    if verbose:
        print("Task execution loop exited.")
    if stats.error is not None:
        raise stats.error
    return stats.executed
