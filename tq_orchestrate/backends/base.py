"""The narrow interface every queue backend implements.

A backend moves opaque message bodies (JSON text) with leases. It knows nothing
about tasks: :mod:`tq_orchestrate._queue` turns tasks into bodies and back.

Required methods: :meth:`Backend.send_batch`, :meth:`Backend.receive`,
:meth:`Backend.delete`, :meth:`Backend.change_lease`, :meth:`Backend.counts`,
:meth:`Backend.purge`. The rest have defaults that either work everywhere or
raise :class:`~tq_orchestrate.errors.ConfigurationError` naming the backend.

A backend instance must be usable from several threads at once. It is never
shared between processes: each process builds its own from the same URL and
options (see :func:`tq_orchestrate.backends.open_backend`).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Message:
    """One leased message.

    ``handle`` is what :meth:`Backend.delete` and :meth:`Backend.change_lease`
    take (the SQS receipt handle); it is valid only while the lease lasts.
    ``message_id`` is stable across leases.
    """

    handle: str
    body: str
    message_id: str
    receive_count: int


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """One entry of a batch send that the backend did not accept."""

    index: int
    code: str
    message: str
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class Counts:
    """Queue depth. ``None`` where the backend cannot know the figure.

    ``exact`` is False for backends whose counts lag (SQS's approximate counts).
    """

    visible: int
    leased: int
    delayed: int
    inserted: int | None = None
    completed: int | None = None
    dead: int | None = None
    exact: bool = True

    @property
    def pending(self) -> int:
        """Messages not yet deleted: visible + leased + delayed."""
        return self.visible + self.leased + self.delayed


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message moved aside after too many failed receives (or a corrupt body)."""

    message_id: str
    body: str
    receive_count: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do and the limits the upload engine packs batches to."""

    max_batch_count: int
    max_batch_bytes: int
    max_message_bytes: int
    max_receive_count: int = 10
    max_lease_seconds: float = 12 * 3600
    max_delay_seconds: float = 900
    exact_counts: bool = True
    counts_completions: bool = False
    dead_letters: bool = False
    upload_concurrency: int = 1
    """Concurrent send_batch calls worth running (1 for a local database)."""


SendOutcome = list[EntryFailure] | BaseException
"""What a batch send came to: the refused entries (maybe none), or the error raised."""


class BatchSender(Protocol):
    """Runs many :meth:`Backend.send_batch` calls at once for the upload engine."""

    def submit(
        self, bodies: Sequence[str], delay_seconds: float, done: Callable[[SendOutcome], None]
    ) -> None:
        """Start sending ``bodies``; block while the sender is full.

        ``done`` is called exactly once, from any thread, with the outcome.
        """

    def close(self) -> None:
        """Wait until every submitted batch's ``done`` has run, then free resources."""


class ThreadSender:
    """The default BatchSender: a bounded pool of threads calling ``send_batch``."""

    def __init__(self, backend: Backend, concurrency: int) -> None:
        self._backend = backend
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="tqo-send")

    def submit(
        self, bodies: Sequence[str], delay_seconds: float, done: Callable[[SendOutcome], None]
    ) -> None:
        self._slots.acquire()
        self._pool.submit(self._run, list(bodies), delay_seconds, done)

    def _run(self, bodies: list[str], delay_seconds: float, done: Callable[[SendOutcome], None]) -> None:
        try:
            outcome: SendOutcome = self._backend.send_batch(bodies, delay_seconds)
        except BaseException as e:  # handed to the engine, which decides
            outcome = e
        finally:
            self._slots.release()
        done(outcome)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Backend(ABC):
    """A queue of message bodies with leases."""

    capabilities: ClassVar[Capabilities]
    url: str

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, **options: Any) -> Backend:
        """Build the backend for ``url``; raise ConfigurationError on bad options."""

    @abstractmethod
    def send_batch(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[EntryFailure]:
        """Enqueue ``bodies`` (at most ``max_batch_count``); return the entries refused.

        Raise :class:`~tq_orchestrate.errors.BackendError` if the whole call failed;
        set ``retryable`` when sending the same batch again may succeed.
        """

    @abstractmethod
    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]:
        """Lease up to ``max_messages`` visible messages for ``lease_seconds``.

        Waits up to ``wait_seconds`` for a message to arrive (long polling).
        No message is returned to two callers while its lease lasts.
        """

    @abstractmethod
    def delete(self, handles: Sequence[str]) -> int:
        """Delete leased messages (any number); return how many were deleted."""

    @abstractmethod
    def change_lease(self, handle: str, lease_seconds: float) -> None:
        """Set a leased message's remaining lease; 0 makes it visible now.

        Raise :class:`~tq_orchestrate.errors.LeaseLostError` if the lease is gone.
        """

    @abstractmethod
    def counts(self) -> Counts:
        """Read the queue's depth (and totals, where the backend keeps them)."""

    @abstractmethod
    def purge(self) -> None:
        """Delete every message, leased or not."""

    def open_sender(self, concurrency: int | None = None, expected_batches: int | None = None) -> BatchSender:
        """A sender for bulk upload (``None``: the backend's own default concurrency).

        ``expected_batches`` (when the upload's size is known) lets a sender open
        connections ahead. Backends with a faster engine override this.
        """
        return ThreadSender(self, concurrency or self.capabilities.upload_concurrency)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections and files. The backend is unusable afterwards."""

    def release_all(self) -> int:
        """Make every leased message visible now; return how many."""
        raise self._unsupported("release_all")

    def rezero(self) -> None:
        """Set the inserted and completed totals to zero (python-task-queue's ``rezero``)."""
        raise self._unsupported("rezero")

    def bodies(self) -> Iterator[str]:
        """Yield the body of every message not yet deleted, leased or not, without leasing."""
        raise self._unsupported("listing its messages")

    def record_error(self, handle: str, error: str) -> None:  # noqa: B027 - optional
        """Remember why a leased message failed (shown by :meth:`dead_letters`)."""

    def dead_letter(self, handle: str, error: str) -> None:
        """Move a leased message to the dead letters now (e.g. a corrupt body)."""
        raise self._unsupported("dead_letter")

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """List up to ``limit`` dead-lettered messages, oldest first."""
        raise self._unsupported("dead_letters")

    def redrive(self) -> int:
        """Put every dead-lettered message back in the queue; return how many."""
        raise self._unsupported("redrive")

    def _unsupported(self, what: str) -> ConfigurationError:
        return ConfigurationError(f"{type(self).__name__} ({self.url}) does not support {what}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
