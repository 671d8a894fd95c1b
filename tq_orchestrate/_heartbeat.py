"""Lease renewal for the tasks a worker holds.

A :class:`Heartbeat` thread renews every tracked lease once a third of it has
passed, so a task that runs longer than its lease is not handed to another
worker. A lease is never extended past ``max_total_seconds`` after it was first
received (SQS refuses to go beyond 12 hours). A lease that cannot be renewed is
reported once through ``on_lost`` and no longer tracked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from .errors import BackendError, LeaseLostError, TaskQueueError

RENEW_FRACTION = 1 / 3
"""Renew a lease once this fraction of it has passed."""

_MIN_RENEW_SECONDS = 1.0


@dataclass(slots=True)
class _Lease:
    received_at: float
    renewed_at: float


class Heartbeat:
    """Renews leases of tracked message handles from a background thread.

    ``renew(handle, seconds)`` sets a lease to ``seconds`` from now.
    ``on_lost(handle, reason)`` is called (from the thread) when a lease could
    not be renewed or reached ``max_total_seconds``.
    Use as a context manager to start and stop the thread; :meth:`beat` runs
    one round synchronously (tests call it with a fake clock).
    """

    def __init__(
        self,
        renew: Callable[[str, float], object],
        lease_seconds: float,
        *,
        max_total_seconds: float = 12 * 3600,
        on_lost: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self._renew = renew
        self.lease_seconds = float(lease_seconds)
        self.max_total_seconds = float(max_total_seconds)
        self.interval = self.lease_seconds * RENEW_FRACTION
        self._on_lost = on_lost
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0

    def add(self, handles: Iterable[str]) -> None:
        """Track leases that were just received."""
        now = self._clock()
        with self._lock:
            for handle in handles:
                self._leases[handle] = _Lease(now, now)

    def discard(self, handle: str) -> None:
        """Stop tracking a lease (its message was deleted, released or dead-lettered)."""
        with self._lock:
            self._leases.pop(handle, None)
            self._lost.discard(handle)

    def lost(self, handle: str) -> bool:
        """Whether renewing this lease failed since it was added."""
        with self._lock:
            return handle in self._lost

    def tracked(self) -> list[str]:
        """Handles whose leases are being kept alive."""
        with self._lock:
            return list(self._leases)

    def beat(self) -> None:
        """Renew every tracked lease that is due."""
        now = self._clock()
        with self._lock:
            due = [(h, lease) for h, lease in self._leases.items() if now - lease.renewed_at >= self.interval]
        for handle, lease in due:
            self._renew_one(handle, lease, now)

    def _renew_one(self, handle: str, lease: _Lease, now: float) -> None:
        left = lease.received_at + self.max_total_seconds - now
        seconds = min(self.lease_seconds, left)
        if seconds < _MIN_RENEW_SECONDS:
            self._report(handle, f"the lease reached its {self.max_total_seconds:.0f} s maximum")
            return
        try:
            self._renew(handle, seconds)
        except LeaseLostError as e:
            self._report(handle, str(e))
            return
        except BackendError as e:
            if not e.retryable:
                self._report(handle, str(e))
            return  # a transient failure: try again on the next beat
        except TaskQueueError as e:
            self._report(handle, str(e))
            return
        with self._lock:
            if handle in self._leases:
                lease.renewed_at = now
                self.renewals += 1

    def _report(self, handle: str, reason: str) -> None:
        with self._lock:
            if self._leases.pop(handle, None) is None:
                return  # deleted or released meanwhile: nothing was lost
            self._lost.add(handle)
        if self._on_lost is not None:
            self._on_lost(handle, reason)

    def _run(self) -> None:
        tick = max(0.05, self.interval / 2)
        while not self._stopped.wait(tick):
            self.beat()

    def start(self) -> None:
        """Start the renewal thread (a daemon: it never keeps the process alive)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tqo-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the renewal thread and wait for it."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
