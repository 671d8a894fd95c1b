"""The behaviour every queue backend shares, as a reusable test class.

Subclass :class:`BackendContract` and provide a ``backend`` fixture that yields
a fresh, empty backend which dead-letters after ``max_receives`` receives (when
``capabilities.dead_letters`` is true)::

    class TestMyContract(BackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            b = MyBackend.from_url(..., max_receives=self.max_receives)
            yield b
            b.close()

Backend differences are read from ``backend.capabilities`` (exact counts,
completion counts, dead letters) and from the class attributes below, which a
subclass may override (e.g. a remote backend whose counts lag).
``limits_backend`` may be overridden to give a backend with small size limits
when the real ones are too large to exercise cheaply.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, TypeVar

import pytest

from tq_orchestrate.backends.base import Backend, Counts, DeadLetter, Message
from tq_orchestrate.errors import ConfigurationError, LeaseLostError, TaskQueueError

T = TypeVar("T")


class BackendContract:
    """Tests any backend must pass. Lease times are whole seconds >= 1."""

    max_receives: ClassVar[int] = 3
    """The fixture's backend must dead-letter a message after this many receives."""
    short_lease_seconds: ClassVar[int] = 1
    """The lease the expiry tests wait out."""
    long_lease_seconds: ClassVar[int] = 120
    """A lease no test outlives."""
    timeout_seconds: ClassVar[float] = 20.0
    """Deadline for anything the tests wait for (expiry, lagging counts)."""
    supports_release_all: ClassVar[bool] = True
    """Whether release_all() works (False: it must raise ConfigurationError)."""
    lists_messages: ClassVar[bool] = False
    """Whether bodies() and rezero() work (False: they must raise ConfigurationError)."""
    receiver_threads: ClassVar[int] = 4
    """Threads receiving at once in the concurrency test."""

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        raise NotImplementedError("subclasses provide a fresh, empty backend")

    @pytest.fixture
    def limits_backend(self, backend: Backend) -> Backend:
        """A backend whose size limits are small enough to exceed in a test."""
        return backend

    # -- helpers ------------------------------------------------------------

    def eventually(self, probe: Callable[[], T | None], what: str | Callable[[], str]) -> T:
        """Call ``probe`` until it returns something truthy; fail after the deadline."""
        deadline = time.monotonic() + self.timeout_seconds
        pause = 0.02
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                shown = what() if callable(what) else what
                pytest.fail(f"timed out after {self.timeout_seconds}s waiting for {shown}")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def batch(self, backend: Backend) -> int:
        return min(10, backend.capabilities.max_receive_count)

    def send(self, backend: Backend, bodies: Sequence[str], delay_seconds: float = 0) -> None:
        size = backend.capabilities.max_batch_count
        for start in range(0, len(bodies), size):
            assert backend.send_batch(bodies[start : start + size], delay_seconds) == []

    def receive_n(self, backend: Backend, n: int, lease_seconds: float | None = None) -> list[Message]:
        """Receive until ``n`` messages are leased (fails after the deadline)."""
        lease = self.long_lease_seconds if lease_seconds is None else lease_seconds
        got: list[Message] = []

        def probe() -> bool:
            while len(got) < n:
                batch = backend.receive(min(self.batch(backend), n - len(got)), lease)
                if not batch:
                    return False
                got.extend(batch)
            return True

        self.eventually(probe, lambda: f"{n} messages (got {len(got)})")
        return got

    def receive_one(self, backend: Backend, lease_seconds: float | None = None) -> Message:
        (message,) = self.receive_n(backend, 1, lease_seconds)
        return message

    def assert_counts(self, backend: Backend, **expected: int) -> Counts:
        """Exact backends must match at once; approximate ones within the deadline."""

        def matches() -> Counts | None:
            counts = backend.counts()
            return counts if all(getattr(counts, k) == v for k, v in expected.items()) else None

        if backend.capabilities.exact_counts:
            counts = backend.counts()
            assert {k: getattr(counts, k) for k in expected} == expected
            return counts
        return self.eventually(matches, f"counts {expected}")

    def assert_nothing_visible(self, backend: Backend) -> None:
        assert backend.receive(self.batch(backend), self.long_lease_seconds) == []

    # -- sending and receiving ----------------------------------------------

    def test_bodies_round_trip(self, backend: Backend) -> None:
        caps = backend.capabilities
        large = "L" * min(caps.max_message_bytes, caps.max_batch_bytes, 1024 * 1024)
        bodies = [
            "plain",
            "unicode: héllo wörld ✓ 日本語 🎉 \u00a0",
            '{"json": "text", "quotes": "\\"", "list": [1, 2.5, null]}',
            "multi\nline\ttabs\r\n",
        ]
        self.send(backend, bodies)
        self.send(backend, [large])
        got = self.receive_n(backend, len(bodies) + 1)
        assert Counter(m.body for m in got) == Counter([*bodies, large])
        assert len({m.message_id for m in got}) == len(got)
        assert len({m.handle for m in got}) == len(got)
        assert all(m.receive_count == 1 for m in got)

    def test_full_batch_is_accepted(self, backend: Backend) -> None:
        n = backend.capabilities.max_batch_count
        bodies = [f"message {i}" for i in range(n)]
        assert backend.send_batch(bodies) == []
        got = self.receive_n(backend, n)
        assert sorted(m.body for m in got) == sorted(bodies)

    def test_batch_over_max_count_is_refused_whole(self, backend: Backend) -> None:
        n = backend.capabilities.max_batch_count + 1
        with pytest.raises(TaskQueueError):
            backend.send_batch([f"m{i}" for i in range(n)])
        self.assert_nothing_visible(backend)

    def test_oversized_message_is_refused(self, limits_backend: Backend) -> None:
        backend = limits_backend
        limit = backend.capabilities.max_message_bytes
        bodies = ["small before", "x" * (limit + 1), "small after"]
        try:
            failures = backend.send_batch(bodies)
        except TaskQueueError:
            self.assert_nothing_visible(backend)
            return
        assert [(f.index, f.retryable) for f in failures] == [(1, False)]
        got = self.receive_n(backend, 2)
        assert sorted(m.body for m in got) == ["small after", "small before"]
        self.assert_nothing_visible(backend)

    def test_message_at_the_size_limit_is_accepted(self, limits_backend: Backend) -> None:
        backend = limits_backend
        caps = backend.capabilities
        body = "é" * (min(caps.max_message_bytes, caps.max_batch_bytes) // 2)  # 2 bytes per char
        assert backend.send_batch([body]) == []
        assert self.receive_one(backend).body == body

    def test_batch_over_max_bytes_is_refused(self, limits_backend: Backend) -> None:
        backend = limits_backend
        caps = backend.capabilities
        each = min(caps.max_message_bytes, caps.max_batch_bytes)
        n = caps.max_batch_bytes // each + 1
        assert n <= caps.max_batch_count, "limits_backend must allow a batch over max_batch_bytes"
        bodies = [f"{i}".ljust(each, "b") for i in range(n)]
        try:
            failures = backend.send_batch(bodies)
        except TaskQueueError:
            self.assert_nothing_visible(backend)
            return
        assert failures, "a batch over max_batch_bytes must not be accepted whole"
        got = self.receive_n(backend, n - len(failures))
        refused = {bodies[f.index] for f in failures}
        assert {m.body for m in got} == set(bodies) - refused

    def test_receive_from_empty_queue(self, backend: Backend) -> None:
        assert backend.receive(1, self.long_lease_seconds) == []
        assert backend.receive(self.batch(backend), self.long_lease_seconds, wait_seconds=1) == []

    def test_receive_waits_for_a_message_sent_later(self, backend: Backend) -> None:
        sender = threading.Timer(0.3, backend.send_batch, args=(["late"],))
        sender.start()
        try:
            got = self.eventually(
                lambda: backend.receive(1, self.long_lease_seconds, wait_seconds=5), "the late message"
            )
        finally:
            sender.join()
        assert [m.body for m in got] == ["late"]

    # -- leases ---------------------------------------------------------------

    def test_leased_messages_are_not_received_again(self, backend: Backend) -> None:
        bodies = [f"m{i}" for i in range(25)]
        self.send(backend, bodies)
        got = self.receive_n(backend, 25)
        assert sorted(m.body for m in got) == sorted(bodies)
        assert len({m.message_id for m in got}) == 25
        self.assert_nothing_visible(backend)

    def test_expired_lease_returns_message_with_higher_count(self, backend: Backend) -> None:
        self.send(backend, ["expiring"])
        first = self.receive_one(backend, self.short_lease_seconds)
        assert first.receive_count == 1
        second = self.receive_one(backend, self.long_lease_seconds)
        assert (second.body, second.message_id) == ("expiring", first.message_id)
        assert second.receive_count == 2
        assert second.handle != first.handle

    def test_delete_removes_messages(self, backend: Backend) -> None:
        self.send(backend, ["gone 1", "gone 2", "gone 3", "control"])
        got = self.receive_n(backend, 4, self.short_lease_seconds)
        doomed = [m.handle for m in got if m.body != "control"]
        assert backend.delete(doomed) == 3
        # the control message's lease ends with the others'; once it is back, none of them may be
        back = self.receive_one(backend)
        assert back.body == "control"
        self.assert_nothing_visible(backend)
        assert backend.delete([back.handle]) == 1
        self.assert_counts(backend, visible=0, leased=0, delayed=0)

    def test_delete_nothing(self, backend: Backend) -> None:
        assert backend.delete([]) == 0

    def test_stale_handle_cannot_delete_or_renew(self, backend: Backend) -> None:
        """Backends where an old handle still works set this test to None."""
        self.send(backend, ["contested"])
        stale = self.receive_one(backend, self.short_lease_seconds)
        fresh = self.receive_one(backend, self.long_lease_seconds)
        assert fresh.message_id == stale.message_id
        assert backend.delete([stale.handle]) == 0
        with pytest.raises(LeaseLostError):
            backend.change_lease(stale.handle, self.long_lease_seconds)
        self.assert_nothing_visible(backend)
        assert backend.delete([fresh.handle]) == 1

    def test_change_lease_extends(self, backend: Backend) -> None:
        self.send(backend, ["extended", "control"])
        got = self.receive_n(backend, 2, self.short_lease_seconds)
        extended = next(m for m in got if m.body == "extended")
        backend.change_lease(extended.handle, self.long_lease_seconds)
        # once the control message's original lease has ended, the extended one must still be held
        assert self.receive_one(backend).body == "control"
        self.assert_nothing_visible(backend)
        assert backend.delete([extended.handle]) == 1

    def test_change_lease_zero_releases_now(self, backend: Backend) -> None:
        self.send(backend, ["released"])
        first = self.receive_one(backend)
        backend.change_lease(first.handle, 0)
        again = self.receive_one(backend)
        assert (again.message_id, again.receive_count) == (first.message_id, 2)

    def test_delay_seconds(self, backend: Backend) -> None:
        self.send(backend, ["delayed"], delay_seconds=2)
        self.assert_nothing_visible(backend)
        if backend.capabilities.exact_counts:
            self.assert_counts(backend, visible=0, delayed=1)
        assert self.receive_one(backend).body == "delayed"

    def test_concurrent_receivers_get_disjoint_messages(self, backend: Backend) -> None:
        n = 200
        self.send(backend, [f"c{i}" for i in range(n)])
        got: list[list[Message]] = [[] for _ in range(self.receiver_threads)]
        deadline = time.monotonic() + self.timeout_seconds

        def work(mine: list[Message]) -> None:
            while time.monotonic() < deadline and sum(map(len, got)) < n:
                mine.extend(backend.receive(self.batch(backend), self.long_lease_seconds))

        threads = [threading.Thread(target=work, args=(g,)) for g in got]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = [m.message_id for g in got for m in g]
        twice = sorted(i for i, k in Counter(ids).items() if k > 1)
        assert twice == [], f"leased twice: {twice[:10]} ({len(twice)} messages)"
        assert len(ids) == n, f"received {len(ids)} of {n} messages before the deadline"
        assert sorted(m.body for g in got for m in g) == sorted(f"c{i}" for i in range(n))

    # -- whole queue ----------------------------------------------------------

    def test_counts(self, backend: Backend) -> None:
        caps = backend.capabilities
        self.send(backend, [f"n{i}" for i in range(5)])
        self.send(backend, ["later"], delay_seconds=self.long_lease_seconds)
        got = self.receive_n(backend, 2)
        counts = self.assert_counts(backend, visible=3, leased=2, delayed=1)
        assert counts.pending == 6
        assert counts.exact == caps.exact_counts
        if caps.counts_completions:
            assert (counts.inserted, counts.completed) == (6, 0)
        assert backend.delete([got[0].handle]) == 1
        counts = self.assert_counts(backend, visible=3, leased=1, delayed=1)
        if caps.counts_completions:
            assert (counts.inserted, counts.completed) == (6, 1)
        if caps.dead_letters:
            assert counts.dead == 0

    def test_purge(self, backend: Backend) -> None:
        self.send(backend, [f"p{i}" for i in range(5)])
        self.send(backend, ["delayed"], delay_seconds=self.long_lease_seconds)
        self.receive_n(backend, 2)
        backend.purge()
        self.assert_counts(backend, visible=0, leased=0, delayed=0)
        self.assert_nothing_visible(backend)

    def test_release_all(self, backend: Backend) -> None:
        if not self.supports_release_all:
            with pytest.raises(ConfigurationError):
                backend.release_all()
            return
        self.send(backend, ["r1", "r2", "r3"])
        got = self.receive_n(backend, 2)
        assert backend.release_all() == 2
        again = self.receive_n(backend, 3)
        assert sorted(m.body for m in again) == ["r1", "r2", "r3"]
        assert {m.message_id for m in got} <= {m.message_id for m in again}

    def test_bodies_lists_leased_and_delayed_without_leasing(self, backend: Backend) -> None:
        if not self.lists_messages:
            with pytest.raises(ConfigurationError):
                list(backend.bodies())
            return
        self.send(backend, ["b1", "b2", "b3"])
        self.send(backend, ["later"], delay_seconds=self.long_lease_seconds)
        (leased,) = self.receive_n(backend, 1)
        assert sorted(backend.bodies()) == ["b1", "b2", "b3", "later"]
        backend.delete([leased.handle])
        assert sorted(backend.bodies()) == sorted({"b1", "b2", "b3", "later"} - {leased.body})
        self.assert_counts(backend, visible=2, leased=0, delayed=1)

    def test_bodies_ignores_messages_sent_while_listing(self, backend: Backend) -> None:
        if not self.lists_messages:
            return
        self.send(backend, ["a", "b"])
        seen = []
        for body in backend.bodies():
            seen.append(body)
            self.send(backend, [body + "-copy"])
        assert sorted(seen) == ["a", "b"]

    def test_rezero_keeps_messages(self, backend: Backend) -> None:
        if not self.lists_messages:
            with pytest.raises(ConfigurationError):
                backend.rezero()
            return
        self.send(backend, ["z1", "z2"])
        backend.delete([self.receive_one(backend).handle])
        backend.rezero()
        counts = self.assert_counts(backend, visible=1, leased=0, delayed=0)
        assert (counts.inserted, counts.completed) == (0, 0)
        backend.delete([self.receive_one(backend).handle])
        assert backend.counts().completed == 1

    # -- dead letters ---------------------------------------------------------

    def test_dead_letter_after_max_receives_and_redrive(self, backend: Backend) -> None:
        if not backend.capabilities.dead_letters:
            with pytest.raises(ConfigurationError):
                backend.dead_letters()
            return
        self.send(backend, ["poison", "healthy"])
        for attempt in range(1, self.max_receives + 1):
            got = {m.body: m for m in self.receive_n(backend, 2 if attempt == 1 else 1)}
            poison = got["poison"]
            assert poison.receive_count == attempt
            backend.record_error(poison.handle, f"boom {attempt}")
            backend.change_lease(poison.handle, 0)
            if "healthy" in got:
                assert backend.delete([got["healthy"].handle]) == 1
        self.assert_nothing_visible(backend)
        (letter,) = self.eventually(backend.dead_letters, "the dead letter")
        assert (letter.body, letter.receive_count) == ("poison", self.max_receives)
        assert letter.message_id == poison.message_id
        assert letter.error is not None and f"boom {self.max_receives}" in letter.error
        self.assert_counts(backend, visible=0, leased=0, delayed=0, dead=1)
        assert backend.redrive() == 1
        back = self.receive_one(backend)
        assert (back.body, back.receive_count) == ("poison", 1)
        assert backend.dead_letters() == []

    def test_dead_letters_are_listed_oldest_first(self, backend: Backend) -> None:
        if not backend.capabilities.dead_letters:
            return
        order = ["c-first", "b-second", "a-third"]  # listed by age, never by body
        for body in order:
            self.send(backend, [body])
            time.sleep(0.02)  # distinct send times, even at millisecond resolution
        held = {m.body: m for m in self.receive_n(backend, len(order))}
        for body in order:
            backend.dead_letter(held[body].handle, f"poison {body}")
            time.sleep(0.02)

        def all_three() -> list[DeadLetter] | None:
            letters = backend.dead_letters()
            return letters if len(letters) == len(order) else None

        letters = self.eventually(all_three, "three dead letters")
        assert [d.body for d in letters] == order

    def test_dead_letter_now_keeps_raw_body(self, backend: Backend) -> None:
        if not backend.capabilities.dead_letters:
            with pytest.raises(ConfigurationError):
                backend.dead_letter("no-such-handle", "corrupt")
            return
        raw = "{not json at all"
        self.send(backend, [raw])
        message = self.receive_one(backend)
        backend.dead_letter(message.handle, "corrupt payload")
        self.assert_nothing_visible(backend)
        (letter,) = backend.dead_letters()
        assert (letter.body, letter.error, letter.message_id) == (raw, "corrupt payload", message.message_id)
        self.assert_counts(backend, visible=0, leased=0, dead=1)
        with pytest.raises(LeaseLostError):
            backend.dead_letter(message.handle, "again")

    def test_totals_add_up(self, backend: Backend) -> None:
        """inserted == completed + pending + dead, through every kind of operation.

        Backends without exact counts and totals (SQS) set this test to None.
        """
        caps = backend.capabilities
        assert caps.counts_completions and caps.dead_letters and caps.exact_counts

        def check() -> None:
            c = backend.counts()
            assert c.inserted == (c.completed or 0) + c.pending + (c.dead or 0), c

        self.send(backend, [f"t{i}" for i in range(10)])
        self.send(backend, ["later"], delay_seconds=self.long_lease_seconds)
        check()
        got = self.receive_n(backend, 4)
        check()
        backend.delete([got[0].handle, got[1].handle])
        check()
        backend.dead_letter(got[2].handle, "bad")
        check()
        backend.redrive()
        check()
        assert backend.counts().inserted == 11
