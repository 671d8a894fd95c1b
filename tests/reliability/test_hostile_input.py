"""Hostile and bad messages: each meets a clear error, nothing runs, nothing else is lost.

The table lives in :func:`tests.reliability._harness.hostile_cases` (the soak
counts it too). Payloads that would run something point at a canary file, and
at :mod:`tests.reliability.canary`, a module that leaves a trace when imported;
neither may ever appear.
"""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

import tests.tasks_fixture  # noqa: F401 - registers the task classes the table names
from tests.reliability._harness import CANARY_MODULE, Hostile, Workers, hostile_cases, wait_for
from tests.sample_tasks import KwTask
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures
from tests.tasks_fixture import WorkerAppendTask, read_lines
from tq_orchestrate import TaskQueue, totask
from tq_orchestrate.backends.base import Message
from tq_orchestrate.errors import DeserializationError, PayloadTooLargeError

CASES = hostile_cases("/canary/never-written")


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "canary"
    monkeypatch.setenv("TQO_CANARY", str(path))
    return path


def check_untouched(canary: Path) -> None:
    assert not canary.exists(), f"a hostile payload ran something: {canary.read_text()!r}"
    assert CANARY_MODULE not in sys.modules, "a hostile payload imported a forbidden module"


@pytest.mark.parametrize("case_name", [c.name for c in CASES])
def test_each_hostile_payload_meets_a_clear_error(case_name: str, canary: Path) -> None:
    case = next(c for c in hostile_cases(str(canary)) if c.name == case_name)
    with pytest.raises(case.errors) as info:
        totask(case.body)
    assert case.phrase in str(info.value)
    if isinstance(info.value, DeserializationError):
        assert info.value.raw == case.body, "the error carries the raw text"
    # the same through the queue front, as a worker decodes a leased message
    tq = TaskQueue("mem://hostile", progress=False)
    with pytest.raises(case.errors):
        tq.decode(Message("h", case.body, "m1", 1))  # type: ignore[arg-type]
    check_untouched(canary)


def _insert_raw(path: Path, body: str | bytes, as_text: bool) -> None:
    conn = sqlite3.connect(path)
    try:
        value = "CAST(? AS TEXT)" if as_text else "?"
        conn.execute(
            f"INSERT INTO messages (body, visible_at, receive_count, inserted_at) VALUES ({value}, 0, 0, 0)",
            (body,),
        )
        conn.commit()
    finally:
        conn.close()


@pytest.mark.slow
def test_hostile_messages_go_to_the_dead_letters_and_the_others_run(tmp_path: Path, canary: Path) -> None:
    db = tmp_path / "q.db"
    url = f"sqlite://{db}?max_receives=2"
    out = tmp_path / "out.txt"
    cases = hostile_cases(str(canary))
    good = [f"g{i}" for i in range(len(cases) + 1)]
    with TaskQueue(url, progress=False) as tq:
        for i, case in enumerate(cases):
            tq.insert(WorkerAppendTask(str(out), good[i]))
            if isinstance(case.body, bytes):  # only another program can store these
                _insert_raw(db, case.body, as_text=i % 2 == 0)
            else:
                assert tq.backend.send_batch([case.body]) == []
        tq.insert(WorkerAppendTask(str(out), good[-1]))
        args = ["--retry-delay", "0", "--empty-for", "3", "--num-tasks", "10", "--min-backoff", "0.1"]
        with Workers(url, tmp_path, [*args, "--log-json"]) as pool:
            worker = pool.start()
            assert worker.wait() == 0, worker.text()[-2000:]
        assert sorted(read_lines(out)) == sorted(good), "every good task ran exactly once"
        check_untouched(canary)
        dead = tq.dead_letters(limit=1000)
        counts = tq.counts()
    raw = Counter(d.body.encode("utf-8", "surrogateescape") for d in dead)  # bytes that were not UTF-8 too
    assert raw == Counter(_raw(c.body) for c in cases), "each bad one, with its raw text"
    assert (counts.pending, counts.dead, counts.completed) == (0, len(cases), len(good))
    outcomes = Counter(e["outcome"] for e in worker.events())
    corrupt = sum(1 for c in cases if _corrupt(c))
    # corrupt bodies are dead-lettered at once; the others fail on each of their 2 receives
    assert outcomes == Counter(ok=len(good), dead_lettered=corrupt, error=2 * (len(cases) - corrupt))


def _raw(body: str | bytes) -> bytes:
    return body if isinstance(body, bytes) else body.encode()


def _corrupt(case: Hostile) -> bool:
    """Dead-lettered at once (corrupt); the rest (unknown names, refused arguments) are retried."""
    from tq_orchestrate.errors import UnsafeTaskError

    return issubclass(case.errors[0], DeserializationError) and not issubclass(
        case.errors[0], UnsafeTaskError
    )


def test_a_task_too_large_for_sqs_is_refused_before_anything_is_sent(aws_env: Path, tmp_path: Path) -> None:
    from tq_orchestrate.testing import SqsStandIn

    out = str(tmp_path / "out")
    with SqsStandIn() as server:
        url = server.create_queue("too-large")
        tq = TaskQueue(url, progress=False)
        batch = [
            WorkerAppendTask(out, "a"),
            WorkerAppendTask(out, "x" * 1_100_000),
            WorkerAppendTask(out, "b"),
        ]
        with pytest.raises(PayloadTooLargeError) as info:
            tq.insert_all(batch)
        assert "#1 WorkerAppendTask" in str(info.value) and info.value.size > info.value.limit == 1024 * 1024
        assert server.bodies("too-large") == []
        assert tq.insert_all([batch[0], batch[2]]) == 2
        wait_for(lambda: len(server.bodies("too-large")) == 2, "the two small tasks")
        tq.close()


@pytest.mark.parametrize("field", ["execute", "_payload_with", "_args", "_id", "array_format", "__class__"])
def test_a_payload_field_cannot_replace_a_method_or_internal(field: str) -> None:
    with pytest.raises(DeserializationError, match=f"field '{field}' would replace KwTask"):
        totask({"class": "KwTask", "fine": 1, field: 1})
    task = totask({"class": "KwTask", "fine": 1, "also": [1, 2]})
    assert isinstance(task, KwTask) and task.payload() == {"fine": 1, "also": [1, 2], "class": "KwTask"}
