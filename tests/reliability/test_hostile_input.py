"""Hostile and bad messages: each meets a clear error, nothing runs, nothing else is lost.

The table lives in :func:`tests.reliability._harness.hostile_cases` (the soak
counts it too). Payloads that would run something point at a canary file, and
at :mod:`tests.reliability.canary`, a module that leaves a trace when imported;
neither may ever appear.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

import tests.tasks_fixture  # noqa: F401 - registers the task classes the table names
from tests.reliability._harness import (
    CANARY_MODULE,
    Hostile,
    hostile_cases,
    hostile_worker_scenario,
    wait_for,
)
from tests.sample_tasks import KwTask
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures
from tests.tasks_fixture import WorkerAppendTask
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


@pytest.mark.slow
def test_hostile_messages_go_to_the_dead_letters_and_the_others_run(tmp_path: Path, canary: Path) -> None:
    figures, outcomes = hostile_worker_scenario(tmp_path, canary)
    cases = hostile_cases(str(canary))
    assert (figures.completed, figures.lost, figures.repeats) == (len(cases) + 1, 0, 0), "good ones ran once"
    assert figures.hostile_refused == figures.hostile_tried == len(cases), "each bad one, with its raw bytes"
    assert figures.counted == (0, len(cases)), "queue empty, every bad one dead-lettered"
    check_untouched(canary)
    corrupt = sum(1 for c in cases if _corrupt(c))
    # corrupt bodies are dead-lettered at once; the others fail on each of their 2 receives
    assert outcomes == Counter(ok=len(cases) + 1, dead_lettered=corrupt, error=2 * (len(cases) - corrupt))


@pytest.mark.slow
def test_hostile_messages_on_sqs_go_to_the_dead_letter_queue_and_the_others_run(
    aws_env: Path, tmp_path: Path, canary: Path
) -> None:
    from tq_orchestrate.backends.sqs import ensure_queue_pair
    from tq_orchestrate.testing import SqsStandIn

    cases = [c for c in hostile_cases(str(canary)) if isinstance(c.body, str) and c.body]  # what SQS holds
    with SqsStandIn() as server:
        url, _ = ensure_queue_pair("hostile", 2, endpoint_url=server.endpoint_url)
        figures, outcomes = hostile_worker_scenario(tmp_path, canary, url=url)
    assert (figures.completed, figures.lost, figures.repeats) == (len(cases) + 1, 0, 0), "good ones ran once"
    assert figures.hostile_refused == figures.hostile_tried == len(cases), "each bad one, with its raw text"
    check_untouched(canary)
    corrupt = sum(1 for c in cases if _corrupt(c))
    assert outcomes == Counter(ok=len(cases) + 1, dead_lettered=corrupt, error=2 * (len(cases) - corrupt))


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
