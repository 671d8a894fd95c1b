"""The fast engine's transport retry policy: named parameters that build a tenacity policy.

Like botocore's ``standard`` retry mode: up to ``attempts`` tries while the call
fails with a retryable :class:`~tq_orchestrate.errors.BackendError` (a transport
error, HTTP 5xx or 429, a throttling code), sleeping a random time up to
``initial_seconds * multiplier**(n-1)`` (at most ``max_seconds``) in between.

tenacity is imported only once a first attempt has failed (about 5 ms of a
fresh process's first call): :meth:`RetryPolicy.call` makes the first attempt
itself and hands a failure to the same tenacity policy as its attempt 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ...errors import BackendError, ConfigurationError

if TYPE_CHECKING:
    import tenacity

__all__ = ["RetryPolicy"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _retryable(error: BaseException) -> bool:
    return isinstance(error, BackendError) and error.retryable


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.debug("attempt %d failed (%s); retrying", state.attempt_number, type(error).__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one SQS call is tried again."""

    attempts: int = 5
    initial_seconds: float = 1.0
    max_seconds: float = 20.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigurationError(f"retry attempts must be a whole number >= 1, got {self.attempts!r}")
        if not 0 < self.initial_seconds <= self.max_seconds or not self.multiplier >= 1:
            raise ConfigurationError(
                f"retry backoff needs 0 < initial_seconds <= max_seconds and multiplier >= 1, got {self}"
            )

    def retrying(self, sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
        """A fresh tenacity controller for one call (re-raises the last error)."""
        import tenacity

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_random_exponential(
                multiplier=self.initial_seconds, max=self.max_seconds, exp_base=self.multiplier
            ),
            retry=tenacity.retry_if_exception(_retryable),
            before_sleep=_log_retry,
            sleep=sleep,
            reraise=True,
        )

    def call(self, fn: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
        """``fn()``, tried again while it raises a retryable BackendError.

        The first attempt runs here; only its failure builds the tenacity policy,
        whose attempt 1 re-raises that failure, so the numbering, the waits and
        the stop are exactly the policy's.
        """
        try:
            return fn()
        except Exception as e:
            if not _retryable(e) or self.attempts == 1:
                raise
            first: list[Exception] = [e]

        def again() -> T:
            if first:
                raise first.pop()
            return fn()

        return self.retrying(sleep)(again)
