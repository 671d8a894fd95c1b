"""Fault injection through the whole upload path: TaskQueue.insert_all -> engine -> SQS stand-in.

Every fault that cannot store a message twice (refused entries, throttling,
500s, connections dropped before the request is processed) must leave every
task in the queue exactly once. Faults after which SQS may already hold the
batch (connection dropped after processing, a wrong MD5 in the reply) must
leave every task at least once; the duplicates are counted and reported.
Tasks that can never be sent end in an UploadError naming exactly those tasks.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sample_tasks import PrintTask
from tests.sqs_fixtures import set_loopback_aws_env
from tq_orchestrate import RetryPolicy, TaskQueue, UploadError
from tq_orchestrate.testing import Faults, SqsStandIn

ENGINES = ["boto3", "fast"]
TASKS = 2000
FAST_RETRY = RetryPolicy(attempts=12, initial_seconds=0.005, max_seconds=0.1)
_names = itertools.count()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_loopback_aws_env(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def server() -> Iterator[SqsStandIn]:
    with SqsStandIn() as standin:
        yield standin


def queue_on(server: SqsStandIn, engine: str, faults: Faults, **options: object) -> tuple[TaskQueue, str]:
    name = f"faults-{engine}-{next(_names)}"
    url = server.create_queue(name)
    server.faults = faults
    options.setdefault("retry", FAST_RETRY)
    return TaskQueue(url, engine=engine, progress=False, **options), name  # type: ignore[arg-type]


def tasks(n: int = TASKS) -> Iterator[PrintTask]:
    return (PrintTask(f"task-{i}") for i in range(n))


def expected_bodies(tq: TaskQueue, n: int = TASKS) -> Counter[str]:
    return Counter(tq.encode(t) for t in tasks(n))


def duplicates(stored: Counter[str], expected: Counter[str]) -> int:
    assert set(stored) == set(expected), "every task is stored, and nothing else"
    return sum(stored.values()) - sum(expected.values())


EXACTLY_ONCE = {
    "entry failures": (Faults(entry_failure_rate=0.1, seed=1), "entry_failures"),
    "throttling": (Faults(throttle_rate=0.2, seed=2), "throttled"),
    "HTTP 500": (Faults(error_rate=0.2, seed=3), "errors"),
    "dropped before processing": (Faults(drop_before_rate=0.15, seed=4), "dropped_before"),
    "everything at once": (
        Faults(
            entry_failure_rate=0.05,
            throttle_rate=0.05,
            error_rate=0.05,
            drop_before_rate=0.05,
            slow_rate=0.02,
            slow_seconds=0.05,
            seed=5,
        ),
        "entry_failures",
    ),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", list(EXACTLY_ONCE))
def test_every_task_exactly_once(server: SqsStandIn, engine: str, kind: str) -> None:
    faults, counter = EXACTLY_ONCE[kind]
    tq, name = queue_on(server, engine, faults)
    before = getattr(server.stats, counter)
    assert tq.insert_all(tasks()) == TASKS
    assert getattr(server.stats, counter) > before, f"no {counter} were injected: the test proves nothing"
    assert Counter(server.bodies(name)) == expected_bodies(tq)
    tq.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_connection_closed_by_server_between_requests(server: SqsStandIn, engine: str) -> None:
    # fewer connections than batches, so connections are reused and the server's closes are met
    tq, name = queue_on(server, engine, Faults(close_after_requests=2), concurrency=16)
    closed = server.stats.closed
    assert tq.insert_all(tasks()) == TASKS
    assert server.stats.closed > closed
    assert Counter(server.bodies(name)) == expected_bodies(tq)
    tq.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_transient_failure_of_every_entry(server: SqsStandIn, engine: str) -> None:
    seen: set[str] = set()
    lock = threading.Lock()

    def first_time(body: str) -> bool:
        with lock:
            new = body not in seen
            seen.add(body)
            return new

    tq, name = queue_on(server, engine, Faults(fail_entry=first_time))
    before = server.stats.entry_failures
    assert tq.insert_all(tasks(500)) == 500
    assert server.stats.entry_failures - before == 500
    assert Counter(server.bodies(name)) == expected_bodies(tq, 500)
    tq.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_dropped_responses_give_at_least_once(
    server: SqsStandIn,
    engine: str,
    record_property: pytest.RecordProperty,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tq, name = queue_on(server, engine, Faults(drop_after_rate=0.05, seed=6))
    before = server.stats.dropped_after
    assert tq.insert_all(tasks()) == TASKS
    dropped = server.stats.dropped_after - before
    assert dropped > 0
    extra = duplicates(Counter(server.bodies(name)), expected_bodies(tq))
    assert 0 < extra <= dropped * 10  # each lost reply can duplicate at most its own batch
    record_property("duplicates", extra)
    with capsys.disabled():
        print(f"\n[{engine}] {dropped} responses dropped after processing -> {extra} duplicate messages")
    tq.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_md5_mismatch_is_resent(server: SqsStandIn, engine: str) -> None:
    tq, name = queue_on(server, engine, Faults(bad_md5_rate=0.02, seed=7))
    before = server.stats.bad_md5
    assert tq.insert_all(tasks()) == TASKS
    corrupted = server.stats.bad_md5 - before
    assert corrupted > 0
    # the message was stored but the reply looked wrong: resent once per bad reply
    assert duplicates(Counter(server.bodies(name)), expected_bodies(tq)) == corrupted
    tq.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_permanent_failures_are_named_never_dropped(server: SqsStandIn, engine: str) -> None:
    doomed = {17, 18, 999, 1500}
    poison = {f"task-{i}" for i in doomed}
    retry = RetryPolicy(attempts=3, initial_seconds=0.001, max_seconds=0.01)
    tq, name = queue_on(
        server, engine, Faults(fail_entry=lambda body: any(f'"{p}"' in body for p in poison)), retry=retry
    )
    with pytest.raises(UploadError) as info:
        tq.insert_all(tasks())
    error = info.value
    assert error.inserted == TASKS - len(doomed)
    assert sorted(index for index, _ in error.failed) == sorted(doomed)
    assert all("InternalError" in why for _, why in error.failed)
    stored = Counter(server.bodies(name))
    wanted = Counter(tq.encode(PrintTask(f"task-{i}")) for i in range(TASKS) if i not in doomed)
    assert stored == wanted
    tq.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_sender_fault_is_not_retried(server: SqsStandIn, engine: str) -> None:
    tq, name = queue_on(server, engine, Faults())
    bad = PrintTask("not a character in SQS: \ufffe")  # JSON keeps U+FFFE raw
    before = server.stats.requests["SendMessageBatch"]  # the server is shared by the module
    with pytest.raises(UploadError) as info:
        tq.insert_all([PrintTask("a"), bad, PrintTask("b")])
    assert info.value.inserted == 2
    assert [index for index, _ in info.value.failed] == [1]
    assert "InvalidMessageContents" in info.value.failed[0][1]
    # One batch of three, and the refused entry is never sent again.
    assert server.stats.requests["SendMessageBatch"] - before == 1
    assert sorted(server.bodies(name)) == sorted([tq.encode(PrintTask("a")), tq.encode(PrintTask("b"))])
    tq.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_parallel_processes_with_faults(server: SqsStandIn, engine: str) -> None:
    tq, name = queue_on(
        server, engine, Faults(entry_failure_rate=0.05, throttle_rate=0.05, drop_before_rate=0.05)
    )
    work = [PrintTask(f"task-{i}") for i in range(TASKS)]
    assert tq.insert_all(work, parallel=2) == TASKS
    assert Counter(server.bodies(name)) == expected_bodies(tq)
    tq.close()
