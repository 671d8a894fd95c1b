"""A scriptable in-memory backend for testing the upload engine and TaskQueue front."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from tq_orchestrate.backends.base import Backend, Capabilities, Counts, EntryFailure, Message
from tq_orchestrate.errors import BackendError


class FlakyBackend(Backend):
    """Stores bodies in a list; ``fault(call_no, bodies)`` decides what goes wrong.

    The fault returns None (all accepted), a list of indexes to refuse (retryable),
    or raises to fail the whole call.
    """

    capabilities = Capabilities(
        max_batch_count=10, max_batch_bytes=1000, max_message_bytes=600, upload_concurrency=4
    )

    def __init__(self, fault: Callable[[int, Sequence[str]], list[int] | None] | None = None) -> None:
        self.url = "fake://flaky"
        self.fault = fault
        self.stored: list[str] = []
        self.calls = 0
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FlakyBackend:
        return cls()

    def send_batch(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[EntryFailure]:
        assert len(bodies) <= self.capabilities.max_batch_count
        assert sum(len(b.encode()) for b in bodies) <= self.capabilities.max_batch_bytes
        with self._lock:
            self.calls += 1
            call = self.calls
            self.batch_sizes.append(len(bodies))
        refused = self.fault(call, bodies) if self.fault else None
        refused = refused or []
        with self._lock:
            self.stored.extend(b for i, b in enumerate(bodies) if i not in refused)
        return [EntryFailure(i, "InternalError", "injected") for i in refused]

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]:
        raise NotImplementedError

    def delete(self, handles: Sequence[str]) -> int:
        raise NotImplementedError

    def change_lease(self, handle: str, lease_seconds: float) -> None:
        raise NotImplementedError

    def counts(self) -> Counts:
        return Counts(visible=len(self.stored), leased=0, delayed=0)

    def purge(self) -> None:
        self.stored.clear()


def retryable(message: str = "throttled") -> BackendError:
    return BackendError(message, retryable=True)
