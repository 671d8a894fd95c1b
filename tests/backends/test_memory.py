"""The in-memory queue: the backend contract plus sharing by name and reset."""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterator
from typing import ClassVar

import pytest

from tests.backends.contract import BackendContract
from tq_orchestrate.backends import open_backend
from tq_orchestrate.backends.base import Capabilities
from tq_orchestrate.backends.memory import MemoryBackend
from tq_orchestrate.errors import BackendError, ConfigurationError, LeaseLostError


class SmallMemoryBackend(MemoryBackend):
    capabilities: ClassVar[Capabilities] = dataclasses.replace(
        MemoryBackend.capabilities, max_batch_count=20, max_batch_bytes=4000, max_message_bytes=1000
    )


@pytest.fixture(autouse=True)
def _fresh_queues() -> Iterator[None]:
    MemoryBackend.reset_all()
    yield
    MemoryBackend.reset_all()


class TestMemoryContract(BackendContract):
    lists_messages = True

    @pytest.fixture
    def backend(self) -> Iterator[MemoryBackend]:
        backend = MemoryBackend.from_url("mem://contract", max_receives=self.max_receives)
        yield backend
        backend.close()

    @pytest.fixture
    def limits_backend(self) -> MemoryBackend:
        return SmallMemoryBackend.from_url("mem://small")


def test_open_backend_builds_memory_backends() -> None:
    backend = open_backend("mem://jobs?max_receives=2")
    assert isinstance(backend, MemoryBackend)
    assert (backend.name, backend.max_receives) == ("jobs", 2)


def test_same_name_shares_messages_other_names_do_not() -> None:
    a = MemoryBackend.from_url("mem://shared")
    b = MemoryBackend.from_url("mem://shared")
    other = MemoryBackend.from_url("mem://other")
    a.send_batch(["hello"])
    assert other.receive(10, 60) == []
    (m,) = b.receive(10, 60)
    assert m.body == "hello"
    assert a.delete([m.handle]) == 1
    assert b.counts().completed == 1


def test_reset_all_forgets_every_queue() -> None:
    backend = MemoryBackend.from_url("mem://forgotten")
    backend.send_batch(["x"])
    MemoryBackend.reset_all()
    assert backend.counts().pending == 0
    assert backend.counts().inserted == 0


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="max_receives"):
        MemoryBackend.from_url("mem://q", durability="full")
    with pytest.raises(ConfigurationError, match="max_receives"):
        MemoryBackend.from_url("mem://q?max_receives=0")
    with pytest.raises(ConfigurationError):
        MemoryBackend.from_url("mem://")


def test_messages_come_out_in_insertion_order() -> None:
    backend = MemoryBackend.from_url("mem://fifo")
    backend.send_batch([f"m{i}" for i in range(30)])
    assert [m.body for _ in range(3) for m in backend.receive(10, 60)] == [f"m{i}" for i in range(30)]


def test_malformed_handles() -> None:
    backend = MemoryBackend.from_url("mem://handles")
    backend.send_batch(["x"])
    (m,) = backend.receive(1, 60)
    assert backend.delete(["nonsense", "1:zz", m.handle.split(":")[0] + ":1"]) == 0
    with pytest.raises(LeaseLostError):
        backend.change_lease("nonsense", 10)
    assert backend.delete([m.handle, m.handle]) == 1


def test_release_with_delay_counts_as_leased_until_due() -> None:
    backend = MemoryBackend.from_url("mem://delay")
    backend.send_batch(["x"])
    (m,) = backend.receive(1, 60)
    backend.change_lease(m.handle, 30)
    counts = backend.counts()
    assert (counts.visible, counts.leased) == (0, 1)
    backend.change_lease(m.handle, 0)
    assert backend.counts().visible == 1


def test_closed_backend_refuses_calls() -> None:
    backend = MemoryBackend.from_url("mem://closed")
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.counts()


def _child_counts(queue: multiprocessing.Queue[int]) -> None:
    queue.put(MemoryBackend.from_url("mem://parent").counts().pending)


def test_a_forked_child_starts_without_the_parents_queues() -> None:
    MemoryBackend.from_url("mem://parent").send_batch(["parent only"])
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[int] = ctx.Queue()
    child = ctx.Process(target=_child_counts, args=(results,))
    child.start()
    assert results.get(timeout=30) == 0
    child.join(30)
    assert MemoryBackend.from_url("mem://parent").counts().pending == 1
