"""An in-memory queue for tests and single-process runs (``mem://name``).

Queues are process-global and named: two backends for ``mem://jobs`` in one
process share the same messages. They are neither durable nor shared across
processes; a forked child starts with no queues at all. The semantics match
the SQLite backend: leases that expire, receive counts, dead letters after
``max_receives`` (the only option, default 5; keyword or URL query), stale
handles that cannot delete or renew, delays, and exact counts with totals.
:meth:`MemoryBackend.reset_all` forgets every queue (for tests).
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import BackendError, ConfigurationError, LeaseLostError
from ._common import (
    LOCAL_CAPABILITIES,
    OptionSpec,
    check_batch,
    check_lease,
    check_receive,
    decode_handle,
    encode_handle,
    exhausted_reason,
    new_token,
    positive_int,
    resolve_options,
)
from .base import Backend, Capabilities, Counts, DeadLetter, EntryFailure, Message

__all__ = ["MemoryBackend"]

_OPTIONS = {"max_receives": OptionSpec(positive_int, 5)}


@dataclass(slots=True)
class _Entry:
    body: str
    visible_at: float
    receive_count: int = 0
    token: int | None = None
    last_error: str | None = None


@dataclass
class _Store:
    """One named queue. ``heap`` holds ``(visible_at, id)``; stale entries are skipped."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: dict[int, _Entry] = field(default_factory=dict)
    heap: list[tuple[float, int]] = field(default_factory=list)
    dead: list[tuple[int, DeadLetter]] = field(default_factory=list)
    next_id: int = 1
    inserted: int = 0
    completed: int = 0

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def schedule(self, ident: int, entry: _Entry, visible_at: float) -> None:
        entry.visible_at = visible_at
        heapq.heappush(self.heap, (visible_at, ident))

    def next_visible(self, now: float) -> tuple[int, _Entry] | None:
        """Pop the earliest message visible at ``now``, skipping stale heap entries."""
        while self.heap and self.heap[0][0] <= now:
            visible_at, ident = heapq.heappop(self.heap)
            entry = self.messages.get(ident)
            if entry is not None and entry.visible_at == visible_at:
                return ident, entry
        return None

    def wait_hint(self, now: float, remaining: float) -> float:
        """Seconds to sleep: until the next message becomes visible, at most ``remaining``."""
        if self.heap:
            return max(0.0, min(remaining, self.heap[0][0] - now))
        return remaining

    def bury(self, ident: int, error: str | None) -> None:
        entry = self.messages.pop(ident)
        reason = error or entry.last_error or exhausted_reason(entry.receive_count)
        self.dead.append((ident, DeadLetter(str(ident), entry.body, entry.receive_count, reason)))


_STORES: dict[str, _Store] = {}
_STORES_LOCK = threading.Lock()
_STORES_PID = os.getpid()


def _stores_lock() -> threading.Lock:
    """The registry's lock; in a forked child, first drop the parent's queues and locks."""
    global _STORES_LOCK, _STORES_PID
    if os.getpid() != _STORES_PID:
        _STORES.clear()
        _STORES_LOCK = threading.Lock()
        _STORES_PID = os.getpid()
    return _STORES_LOCK


def _store(name: str) -> _Store:
    with _stores_lock():
        store = _STORES.get(name)
        if store is None:
            store = _STORES[name] = _Store()
        return store


class MemoryBackend(Backend):
    """A process-global named queue held in memory (not durable, one process only)."""

    capabilities: ClassVar[Capabilities] = LOCAL_CAPABILITIES

    def __init__(self, url: str, name: str, *, max_receives: int = 5) -> None:
        self.url = url
        self.name = name
        self.max_receives = max_receives
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryBackend:
        """``mem://name``: the queue called ``name`` in this process."""
        resolved = resolve_options(url, options, _OPTIONS)
        name = url.partition("://")[2].partition("?")[0]
        if not name:
            raise ConfigurationError(f"{url!r} names no queue; use mem://name")
        return cls(url, name, **resolved)

    @classmethod
    def reset_all(cls) -> None:
        """Forget every in-memory queue of this process."""
        with _stores_lock():
            _STORES.clear()

    def _store(self) -> _Store:
        if self._closed:
            raise BackendError("the backend is closed", queue=self.url)
        return _store(self.name)

    def close(self) -> None:
        """Mark this backend unusable (the queue itself lives on for other backends)."""
        self._closed = True

    def send_batch(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[EntryFailure]:
        """Append ``bodies``; oversized or non-text bodies are refused one by one."""
        failures = check_batch(self.capabilities, self.url, bodies, delay_seconds)
        refused = {f.index for f in failures}
        store = self._store()
        with store.lock:
            visible_at = time.monotonic() + delay_seconds
            for index, body in enumerate(bodies):
                if index in refused:
                    continue
                entry = _Entry(body, visible_at)
                store.messages[store.next_id] = entry
                store.schedule(store.next_id, entry, visible_at)
                store.next_id += 1
                store.inserted += 1
            store.arrived.notify_all()
        return failures

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]:
        """Lease up to ``max_messages``, waiting up to ``wait_seconds`` for one to be visible."""
        check_receive(self.capabilities, max_messages, lease_seconds, wait_seconds)
        store = self._store()
        deadline = time.monotonic() + wait_seconds
        with store.lock:
            while True:
                messages = self._lease(store, max_messages, lease_seconds)
                now = time.monotonic()
                if messages or now >= deadline:
                    return messages
                store.arrived.wait(store.wait_hint(now, deadline - now))

    def _lease(self, store: _Store, max_messages: int, lease_seconds: float) -> list[Message]:
        now = time.monotonic()
        token = new_token()
        leased: list[Message] = []
        while len(leased) < max_messages:
            found = store.next_visible(now)
            if found is None:
                break
            ident, entry = found
            if entry.receive_count >= self.max_receives:
                store.bury(ident, None)
                continue
            entry.receive_count += 1
            entry.token = token
            store.schedule(ident, entry, now + lease_seconds)
            leased.append(Message(encode_handle(ident, token), entry.body, str(ident), entry.receive_count))
        return leased

    def _held(self, store: _Store, handle: str) -> tuple[int, _Entry] | None:
        key = decode_handle(handle)
        if key is None:
            return None
        entry = store.messages.get(key[0])
        if entry is None or entry.token != key[1]:
            return None
        return key[0], entry

    def delete(self, handles: Sequence[str]) -> int:
        """Delete the messages whose lease the handles still hold; return how many."""
        store = self._store()
        deleted = 0
        with store.lock:
            for handle in handles:
                held = self._held(store, handle)
                if held is not None:
                    del store.messages[held[0]]
                    deleted += 1
            store.completed += deleted
        return deleted

    def change_lease(self, handle: str, lease_seconds: float) -> None:
        """Set the remaining lease; 0 makes the message visible now."""
        check_lease(self.capabilities, lease_seconds)
        store = self._store()
        with store.lock:
            held = self._held(store, handle)
            if held is None:
                raise LeaseLostError(f"lease {handle!r} is no longer held", queue=self.url)
            store.schedule(held[0], held[1], time.monotonic() + lease_seconds)
            store.arrived.notify_all()

    def record_error(self, handle: str, error: str) -> None:
        """Keep ``error`` with the message; dead_letters() shows it if it ends there."""
        store = self._store()
        with store.lock:
            held = self._held(store, handle)
            if held is not None:
                held[1].last_error = error

    def dead_letter(self, handle: str, error: str) -> None:
        """Move a leased message (raw body kept) to the dead letters now."""
        store = self._store()
        with store.lock:
            held = self._held(store, handle)
            if held is None:
                raise LeaseLostError(f"lease {handle!r} is no longer held", queue=self.url)
            store.bury(held[0], error)

    def counts(self) -> Counts:
        """Exact counts."""
        store = self._store()
        with store.lock:
            now = time.monotonic()
            visible = leased = delayed = 0
            for entry in store.messages.values():
                if entry.visible_at <= now:
                    visible += 1
                elif entry.token is not None:
                    leased += 1
                else:
                    delayed += 1
            return Counts(visible, leased, delayed, store.inserted, store.completed, len(store.dead))

    def purge(self) -> None:
        """Delete every message and dead letter and zero the counters."""
        store = self._store()
        with store.lock:
            store.messages.clear()
            store.heap.clear()
            store.dead.clear()
            store.inserted = store.completed = 0

    def release_all(self) -> int:
        """Make every leased message visible now; return how many."""
        store = self._store()
        with store.lock:
            now = time.monotonic()
            released = [
                (ident, entry)
                for ident, entry in store.messages.items()
                if entry.token is not None and entry.visible_at > now
            ]
            for ident, entry in released:
                store.schedule(ident, entry, now)
            store.arrived.notify_all()
            return len(released)

    def rezero(self) -> None:
        """Set the inserted and completed totals to zero; messages stay."""
        store = self._store()
        with store.lock:
            store.inserted = store.completed = 0

    def bodies(self) -> Iterator[str]:
        """Yield the bodies of the messages present now, oldest first (a snapshot)."""
        store = self._store()
        with store.lock:
            snapshot = [store.messages[i].body for i in sorted(store.messages)]
        yield from snapshot

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first."""
        store = self._store()
        with store.lock:
            return [letter for _, letter in store.dead[:limit]]

    def redrive(self) -> int:
        """Put every dead letter back (same message id, receive count 0); return how many."""
        store = self._store()
        with store.lock:
            now = time.monotonic()
            for ident, letter in store.dead:
                entry = _Entry(letter.body, now)
                store.messages[ident] = entry
                store.schedule(ident, entry, now)
            moved = len(store.dead)
            store.dead.clear()
            store.arrived.notify_all()
            return moved
