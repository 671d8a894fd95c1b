"""Fault injection for the SQS stand-in: what to break, how often, and what broke."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_SEND_OPERATIONS = frozenset({"SendMessageBatch", "SendMessage"})


@dataclass(frozen=True)
class Faults:
    """What to break, and how often. Rates are fractions of requests (or of entries).

    Request-level faults (one at most per request, drawn in this order) apply to
    the ``operations`` listed: ``drop_before_rate`` closes the connection without
    processing the request (nothing stored: resending is safe),
    ``throttle_rate`` answers HTTP 400 ``ThrottlingException``, ``error_rate``
    answers HTTP 500 ``InternalFailure``, ``drop_after_rate`` processes the
    request and closes the connection without answering (a resend duplicates).
    Independently, ``slow_rate`` adds ``slow_seconds`` to a response.

    Per entry of ``SendMessageBatch``: ``fail_entry(body)`` or
    ``entry_failure_rate`` refuses the entry with a retryable ``Failed`` entry;
    ``bad_md5_rate`` stores the entry but answers a wrong ``MD5OfMessageBody``.

    ``close_after_requests`` answers the Nth request of every connection with
    ``Connection: close`` and closes it (graceful keep-alive end). (The server's
    ``keep_alive_timeout_seconds`` closes idle connections, like Node or nginx.)
    """

    entry_failure_rate: float = 0.0
    fail_entry: Callable[[str], bool] | None = None
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_before_rate: float = 0.0
    drop_after_rate: float = 0.0
    bad_md5_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    close_after_requests: int = 0
    operations: frozenset[str] = _SEND_OPERATIONS
    seed: int | None = 0


@dataclass
class FaultStats:
    """What the server saw and did: request counts by operation, faults injected."""

    requests: Counter[str] = field(default_factory=Counter)
    entry_failures: int = 0
    throttled: int = 0
    errors: int = 0
    dropped_before: int = 0
    dropped_after: int = 0
    bad_md5: int = 0
    slowed: int = 0
    closed: int = 0
    connections: int = 0

    def copy(self) -> FaultStats:
        return dataclasses.replace(self, requests=Counter(self.requests))


def _injects_nothing(faults: Faults) -> bool:
    """True if ``faults`` never changes an answer (``close_after_requests`` aside)."""
    return not (
        faults.entry_failure_rate
        or faults.fail_entry
        or faults.throttle_rate
        or faults.error_rate
        or faults.drop_before_rate
        or faults.drop_after_rate
        or faults.bad_md5_rate
        or faults.slow_rate
    )


def _cumulative(rates: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for rate in rates:
        total += rate
        out.append(total)
    return out
