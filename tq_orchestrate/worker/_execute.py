"""Running one leased message: decode it, execute its task, or fail it.

The executor side of the worker (dramatiq's split): :class:`Executor` turns a
message into a task and runs it in the caller's thread. An executed task goes to
the completion pipeline (:class:`~._completions.Completions`); a task that
raised is logged with its payload and traceback, its error recorded on the
message, and it is released with a delay that grows with its receive count; a
message that is not a valid task is dead-lettered where the backend can (left
leased elsewhere, for the redrive policy).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from .._backoff import retry_delay
from ..backends.base import Message
from ..errors import ConfigurationError, DeserializationError, TaskQueueError, UnsafeTaskError
from ._completions import Completions
from ._options import WorkerOptions
from ._report import WorkerStats, body_task_name, clip, task_event, task_name
from ._work_queue import WorkQueue

__all__ = ["IMPORT_HINT", "Executor"]

log = logging.getLogger("tq_orchestrate.worker")

IMPORT_HINT = "start the worker with --import MODULE (the module defining it)"
"""Added to the log line of a task whose class or function this worker does not know."""


class Executor:
    """Runs the messages the loop leased, one at a time.

    ``forget(message)`` tells the loop a message is no longer held (before it is
    released or dead-lettered); ``best_effort(fn, *args, fatal=...)`` calls a
    backend method through transient errors; ``back_off()`` asks the loop to
    pause (a task raised one of ``backoff_exceptions``); ``say`` receives human
    progress lines. ``stop_on_error`` is reported through ``stats``.
    """

    def __init__(
        self,
        queue: WorkQueue,
        options: WorkerOptions,
        stats: WorkerStats,
        completions: Completions,
        *,
        forget: Callable[[Message], None],
        best_effort: Callable[..., bool],
        back_off: Callable[[], None],
        say: Callable[[str], object] | None = None,
    ) -> None:
        self.queue = queue
        self.options = options
        self.stats = stats
        self._completions = completions
        self._forget = forget
        self._best_effort = best_effort
        self._back_off = back_off
        self._say = say
        self.previous_seconds = 0.0
        """How long the last executed task took (``stop_fn``'s ``previous_execution_time``)."""

    def run(self, message: Message) -> bool:
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
        self.previous_seconds = seconds
        self._completions.add(message, task, seconds)
        return True

    def _failed(self, message: Message, task: Any, error: Exception, seconds: float) -> None:
        o, s = self.options, self.stats
        s.failed += 1
        name = task_name(task) if task is not None else body_task_name(message.body)
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
        task_event(message, name, seconds, "error", error=f"{type(error).__name__}: {error}")
        if isinstance(error, o.backoff_exceptions):
            self._back_off()
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
        task_event(message, "?", 0.0, outcome, error=error.reason)
