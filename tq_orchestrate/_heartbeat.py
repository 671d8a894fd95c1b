"""Lease renewal for the tasks a worker holds.

A :class:`Heartbeat` thread renews every tracked lease once a third of it has
passed, so a task that runs longer than its lease is not handed to another
worker. A lease is never extended past ``max_total_seconds`` after it was first
received (SQS refuses to go beyond 12 hours). A lease that cannot be renewed is
reported once through ``on_lost`` and no longer tracked. A transient failure
(:func:`~tq_orchestrate._backoff.is_transient`) is logged and retried on the
next beat; an error that means the queue cannot be worked
(:func:`~tq_orchestrate._backoff.is_fatal`) also goes to ``on_fatal``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from ._backoff import is_fatal, is_transient
from .errors import LeaseLostError

log = logging.getLogger("tq_orchestrate.worker")

RENEW_FRACTION = 1 / 3
"""Renew a lease once this fraction of it has passed."""

_MIN_RENEW_SECONDS = 1.0

WARN_EVERY_SECONDS = 30.0
"""While renewals keep failing transiently, warn at most this often."""


@dataclass(slots=True)
class _Lease:
    received_at: float
    renewed_at: float


class Heartbeat:
    """Renews leases of tracked message handles from a background thread.

    ``renew(handle, seconds)`` sets a lease to ``seconds`` from now.
    ``on_lost(handle, reason)`` is called (from the thread) when a lease could
    not be renewed or reached ``max_total_seconds``; ``on_fatal(error)`` when
    renewing failed with an error no retry cures (the queue is gone, access
    denied). Once :meth:`discard` returns, no renewal of that handle is under way
    or will start, so a release or delete that follows is never undone.
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
        on_fatal: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self._renew = renew
        self.lease_seconds = float(lease_seconds)
        self.max_total_seconds = float(max_total_seconds)
        self.interval = self.lease_seconds * RENEW_FRACTION
        self._on_lost = on_lost
        self._on_fatal = on_fatal
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._renewing: str | None = None
        self._warned_at: float | None = None
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
        """Stop tracking a lease (its message is being deleted, released or dead-lettered).

        Waits for a renewal of this handle that is under way, so it cannot land
        after the caller's release.
        """
        with self._lock:
            self._leases.pop(handle, None)
            self._lost.discard(handle)
            self._idle.wait_for(lambda: self._renewing != handle)

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
        failed: list[BaseException] = []
        for handle, lease in due:
            error = self._renew_one(handle, lease, now)
            if error is not None:
                failed.append(error)
        if not failed:
            if due and self._warned_at is not None:
                log.info("leases are renewed again")
                self._warned_at = None
            return
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "could not renew %d of %d leases (%s: %s); retrying every %.1f s",
                len(failed),
                len(due),
                type(failed[-1]).__name__,
                failed[-1],
                self.tick,
            )

    @property
    def tick(self) -> float:
        """How often the thread looks for due leases (a failed renewal waits this long)."""
        return max(0.05, self.interval / 2)

    def _renew_one(self, handle: str, lease: _Lease, now: float) -> BaseException | None:
        """Renew one lease; return the error of a transient failure (retried next beat)."""
        left = lease.received_at + self.max_total_seconds - now
        seconds = min(self.lease_seconds, left)
        if seconds < min(self.lease_seconds, _MIN_RENEW_SECONDS):  # too close to the cap to be worth it
            self._report(handle, f"the lease reached its {self.max_total_seconds:.0f} s maximum")
            return None
        with self._lock:
            if handle not in self._leases:
                return None  # discarded meanwhile: its message is being deleted or released
            self._renewing = handle
        try:
            self._renew(handle, seconds)
        except Exception as e:  # the thread must survive any backend failure
            error: Exception | None = e
        else:
            error = None
        finally:
            with self._lock:
                self._renewing = None
                self._idle.notify_all()
        if error is not None:
            return self._failed(handle, error)
        with self._lock:
            if handle in self._leases:
                lease.renewed_at = now
                self.renewals += 1
        return None

    def _failed(self, handle: str, error: Exception) -> BaseException | None:
        if is_transient(error):
            return error
        reason = str(error) if isinstance(error, LeaseLostError) else f"{type(error).__name__}: {error}"
        self._report(handle, reason)
        if is_fatal(error) and self._on_fatal is not None:
            self._on_fatal(error)
        return None

    def _report(self, handle: str, reason: str) -> None:
        with self._lock:
            if self._leases.pop(handle, None) is None:
                return  # deleted or released meanwhile: nothing was lost
            self._lost.add(handle)
        if self._on_lost is not None:
            self._on_lost(handle, reason)

    def _run(self) -> None:
        while not self._stopped.wait(self.tick):
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
