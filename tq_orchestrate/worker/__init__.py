"""The worker: lease tasks, execute them, delete them; renew, back off, stop cleanly.

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

Where each part lives (this package re-exports the public names):

* ``_options``: :class:`WorkerOptions`, the one table of settings that
  :func:`poll` and ``tqo work`` are built from;
* ``_loop``: :class:`Worker`, the consumer loop (receive, hand out, release, stop);
* ``_execute``: running one message (decode, execute, fail or dead-letter it);
* ``_completions``: the delete pipeline (batched, backgrounded, retried);
* ``_signals``: :class:`StopFlag` and :func:`handle_signals`;
* ``_report``: :class:`WorkerStats` and the per-task log records;
* ``_work_queue``: :class:`WorkQueue`, what the worker needs of a queue;
* ``_poll``: :func:`poll`; ``_process``: :func:`run_worker`;
  ``__main__``: ``python -m tq_orchestrate.worker`` (the only part that imports click).
"""

from __future__ import annotations

from ._completions import DELETE_FLUSH_SECONDS as DELETE_FLUSH_SECONDS
from ._execute import IMPORT_HINT as IMPORT_HINT
from ._loop import Worker
from ._options import LEASE_SECONDS, PROGRESS_SECONDS, WorkerOptions
from ._poll import poll
from ._process import import_task_modules, run_worker
from ._report import LOG_BODY_CHARS as LOG_BODY_CHARS
from ._report import WorkerStats
from ._report import body_task_name as body_task_name
from ._report import clip as clip
from ._report import task_log as task_log
from ._signals import StopFlag, handle_signals
from ._work_queue import WorkQueue

# Also importable from here, as before the split (not in __all__): DELETE_FLUSH_SECONDS,
# IMPORT_HINT, LOG_BODY_CHARS, body_task_name, clip, task_log.

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
