"""The drain check under lagging counts: never "done" while a task is leased, delayed or coming back.

A simulated queue (the in-memory backend on a fake clock) goes through random
leases, deletes, releases with delays, renewals and leases left to expire.
A lagging reader answers each reading with any true snapshot from the last
``lag`` seconds, as SQS's approximate counts may. The drain check, with a
policy that knows the lag, must never call the block done (or failed) while a
task of it is still in the queue, and must call it done once it is drained.
Run SQS-like (no completion totals) and embedded-like (with totals).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tq_orchestrate.backends import memory
from tq_orchestrate.backends.base import Counts
from tq_orchestrate.errors import LeaseLostError
from tq_orchestrate.orchestration.drain import Baseline, DrainCursor, DrainPolicy, DrainState, check_drain

LAG = 60.0


class FakeTime:
    """Stands in for the ``time`` module inside the memory backend."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    fake = FakeTime()
    monkeypatch.setattr(memory, "time", fake)
    memory.MemoryBackend.reset_all()
    yield fake
    memory.MemoryBackend.reset_all()


class LaggingReader:
    """Answers with a random true snapshot taken within the last ``lag`` seconds."""

    def __init__(self, backend: memory.MemoryBackend, clock: FakeTime, lag: float, totals: bool, seed: int):
        self.backend, self.clock, self.lag, self.totals = backend, clock, lag, totals
        self.rng = random.Random(seed)
        self.history: list[tuple[float, Counts]] = []

    def record(self) -> Counts:
        counts = self.backend.counts()
        if not self.totals:  # SQS: approximate, no totals
            counts = replace(counts, inserted=None, completed=None, exact=False)
        self.history.append((self.clock.now, counts))
        return counts

    def read(self) -> Counts:
        self.record()
        now = self.clock.now
        window = [c for t, c in self.history if t >= now - self.lag]
        return self.rng.choice(window)


class Sensor:
    """Carries the cursor through JSON between readings, as the Dagster sensor does."""

    def __init__(self, baseline: Baseline, policy: DrainPolicy) -> None:
        self.baseline, self.policy = baseline, policy
        self.cursor = json.dumps(DrainCursor().to_dict())

    def tick(self, counts: Counts, now: float) -> DrainState:
        status = check_drain(
            counts,
            DrainCursor.from_dict(json.loads(self.cursor)),
            now=now,
            baseline=self.baseline,
            policy=self.policy,
        )
        self.cursor = json.dumps(status.cursor.to_dict())
        return status.state


OPS = st.sampled_from(["advance", "receive", "delete", "release", "renew", "forget", "read", "read"])


def simulate(data: st.DataObject, totals: bool) -> None:
    """One example: a fresh fake clock and queue (hypothesis replays must not share state)."""
    clock = FakeTime()
    with mock.patch.object(memory, "time", clock):
        run_example(clock, data, totals)


def run_example(clock: FakeTime, data: st.DataObject, totals: bool) -> None:
    memory.MemoryBackend.reset_all()
    backend = memory.MemoryBackend.from_url("mem://drain", max_receives=1000)
    reader = LaggingReader(backend, clock, LAG, totals, data.draw(st.integers(0, 2**32)))
    before = reader.record()
    n = data.draw(st.integers(1, 12), label="tasks")
    for i in range(n):
        delay = data.draw(st.sampled_from([0, 0, 5, 30, 120]), label="delay")
        backend.send_batch([f"task {i}"], delay_seconds=delay)
    baseline = Baseline(n, before.completed, before.dead)
    sensor = Sensor(baseline, DrainPolicy(lag_seconds=LAG, min_zero_readings=3))
    held: list[str] = []

    def tick() -> None:
        state = sensor.tick(reader.read(), clock.now)
        truly_pending = backend.counts().pending
        assert state is not DrainState.FAILED, "nothing was lost or dead-lettered"
        assert not (state is DrainState.DONE and truly_pending), (
            f"done with {truly_pending} tasks in the queue"
        )

    for op in data.draw(st.lists(OPS, max_size=60), label="ops"):
        if op == "read":
            tick()
        else:
            apply(op, backend, clock, held, data)
        reader.record()
    # drain what is left, reading all along; the block must end done, and only once empty
    for _ in range(2000):
        for m in backend.receive(10, 30.0):
            backend.delete([m.handle])
        clock.now += 7.0
        state = sensor.tick(reader.read(), clock.now)
        truly_pending = backend.counts().pending
        assert not (state is DrainState.DONE and truly_pending), (
            f"done with {truly_pending} tasks in the queue"
        )
        assert state is not DrainState.FAILED
        if state is DrainState.DONE:
            return
    raise AssertionError("the drained block was never declared done")


def apply(
    op: str, backend: memory.MemoryBackend, clock: FakeTime, held: list[str], data: st.DataObject
) -> None:
    """One random event in the queue's life (leases, deletes, releases, renewals, time)."""
    if op == "advance":
        clock.now += data.draw(st.sampled_from([0.5, 5.0, 20.0, 61.0]))
    elif op == "receive":
        lease = data.draw(st.sampled_from([1.0, 10.0, 45.0]))
        held += [m.handle for m in backend.receive(data.draw(st.integers(1, 5)), lease)]
    elif held:  # "forget" just drops the handle: its lease runs out and the task comes back
        handle = held.pop(data.draw(st.integers(0, len(held) - 1)))
        try:
            if op == "delete":
                backend.delete([handle])
            elif op == "release":
                backend.change_lease(handle, data.draw(st.sampled_from([0.0, 10.0, 90.0])))
            elif op == "renew":
                backend.change_lease(handle, 30.0)
                held.append(handle)
        except LeaseLostError:
            pass  # the lease had expired: the task comes back by itself


SIM = settings(max_examples=150, deadline=None)


@SIM
@given(data=st.data())
def test_never_done_while_a_task_remains_sqs_like_counts(data: st.DataObject) -> None:
    simulate(data, totals=False)


@SIM
@given(data=st.data())
def test_never_done_while_a_task_remains_with_completion_totals(data: st.DataObject) -> None:
    simulate(data, totals=True)


def test_the_lagging_reader_does_fool_a_check_that_ignores_the_lag(clock: FakeTime) -> None:
    """The adversary is real: a policy that trusts one reading is fooled by a stale zero."""
    backend = memory.MemoryBackend.from_url("mem://fooled")
    reader = LaggingReader(backend, clock, LAG, totals=False, seed=0)
    reader.record()  # the empty queue before the upload
    backend.send_batch(["a", "b"], delay_seconds=30)
    naive = Sensor(Baseline(2), DrainPolicy(lag_seconds=0, min_zero_readings=1))
    careful = Sensor(Baseline(2), DrainPolicy(lag_seconds=LAG, min_zero_readings=3))
    states: list[Any] = []
    for _ in range(50):
        clock.now += 1.0
        counts = reader.read()
        states.append((naive.tick(counts, clock.now), careful.tick(counts, clock.now)))
    assert backend.counts().pending == 2
    assert any(n is DrainState.DONE for n, _ in states), "a stale zero fooled the naive policy"
    assert all(c is DrainState.WAITING for _, c in states)


def test_a_deeply_nested_dead_letter_is_reported_not_raised() -> None:
    from tq_orchestrate.backends.base import DeadLetter

    letter = DeadLetter("7", "[" * 100_000, 1, "corrupt payload: nested too deeply")
    status = check_drain(
        Counts(0, 0, 0, dead=1),
        DrainCursor(),
        now=0.0,
        baseline=Baseline(1, dead=0),
        policy=DrainPolicy(),
        dead_letters=lambda n: [letter],
    )
    assert status.state is DrainState.FAILED and "1 task(s) dead-lettered" in status.reason
