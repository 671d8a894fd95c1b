"""Backoff policies of the worker, built from tenacity's wait strategies.

* :class:`Backoff`: how long an idle worker sleeps after finding the queue
  empty. The window doubles from ``initial_seconds`` up to ``max_seconds`` and
  the sleep is drawn at random inside it ("full jitter", so thousands of
  workers do not poll in step); :meth:`Backoff.reset` after work.
* :func:`retry_delay`: how long a task that raised stays invisible before it
  is offered again, growing with the number of times it was received.
* :func:`call_retrying`: the short in-place retry of one backend call through a
  transient error (:func:`is_transient`); :func:`is_fatal` names the errors no
  retry will cure.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from .errors import BackendError, ConfigurationError, LeaseLostError, QueueNotFoundError

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
"""Built-in errors of a connection that may work again (besides a retryable BackendError)."""


def _state(attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = max(1, attempt)
    return state


def _check(initial_seconds: float, max_seconds: float) -> None:
    if not initial_seconds > 0:
        raise ConfigurationError(f"initial backoff must be > 0 seconds, got {initial_seconds!r}")
    if not max_seconds >= initial_seconds:
        raise ConfigurationError(
            f"max backoff ({max_seconds!r} s) must be >= the initial backoff ({initial_seconds!r} s)"
        )


class Backoff:
    """Random exponential backoff for an idle worker.

    The n-th consecutive call of :meth:`next` returns a value in
    ``[0, min(initial * 2**(n-1), max)]``; with ``jitter=False`` it returns the
    upper end exactly (deterministic, for tests and tools).
    """

    def __init__(
        self, initial_seconds: float = 1.0, max_seconds: float = 60.0, *, jitter: bool = True
    ) -> None:
        _check(initial_seconds, max_seconds)
        self.initial_seconds = float(initial_seconds)
        self.max_seconds = float(max_seconds)
        self.jitter = jitter
        self._window = tenacity.wait_exponential(multiplier=initial_seconds, max=max_seconds)
        self._wait: tenacity.wait.wait_base = (
            tenacity.wait_random_exponential(multiplier=initial_seconds, max=max_seconds)
            if jitter
            else self._window
        )
        self.attempts = 0
        """Consecutive idle rounds since the last :meth:`reset`."""

    def window(self) -> float:
        """Upper bound of the sleep the next :meth:`next` call returns."""
        return float(self._window(_state(self.attempts + 1)))

    def next(self) -> float:
        """Count one more idle round and return how long to sleep."""
        self.attempts += 1
        return float(self._wait(_state(self.attempts)))

    def reset(self) -> None:
        """Start again from the initial window (call after doing work)."""
        self.attempts = 0

    def __repr__(self) -> str:
        return (
            f"Backoff(initial_seconds={self.initial_seconds}, max_seconds={self.max_seconds}, "
            f"jitter={self.jitter}, attempts={self.attempts})"
        )


def retry_delay(receive_count: int, initial_seconds: float, max_seconds: float) -> float:
    """Delay before a failed task is offered again: ``initial * 2**(receives-1)``, capped.

    ``initial_seconds == 0`` means "offer it again at once".
    """
    if initial_seconds <= 0:
        return 0.0
    wait = tenacity.wait_exponential(multiplier=initial_seconds, max=max(initial_seconds, max_seconds))
    return float(wait(_state(receive_count)))


def is_transient(error: BaseException) -> bool:
    """Whether the same backend call may succeed later (retryable BackendError, connection error)."""
    if isinstance(error, BackendError):
        return error.retryable
    return isinstance(error, TRANSIENT_ERRORS)


def is_fatal(error: BaseException) -> bool:
    """Whether a backend error means the queue cannot be worked (gone, access denied...).

    A lost lease is not fatal: it concerns one task.
    """
    if isinstance(error, QueueNotFoundError):
        return True
    return isinstance(error, BackendError) and not error.retryable and not isinstance(error, LeaseLostError)


def call_retrying(
    sleep: Callable[[float], None],
    *,
    attempts: int = 4,
    initial_seconds: float = 0.2,
    max_seconds: float = 5.0,
) -> tenacity.Retrying:
    """A policy retrying one call ``attempts`` times in all through transient errors.

    Waits are random and exponential (``initial * 2**n``, capped at ``max_seconds``),
    spent in ``sleep``; the last error is re-raised.
    """
    if attempts < 1:
        raise ConfigurationError(f"attempts must be >= 1, got {attempts!r}")
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_random_exponential(multiplier=initial_seconds, max=max_seconds),
        retry=tenacity.retry_if_exception(is_transient),
        sleep=sleep,
        reraise=True,
    )
