"""Hostile and bad messages: each meets a clear error, nothing runs, nothing else is lost.

The table lives in :func:`tests.reliability._harness.hostile_cases` (the soak
counts it too). Payloads that would run something point at a canary file, and
at :mod:`tests.reliability.canary`, a module that leaves a trace when imported;
neither may ever appear.
"""

from __future__ import annotations

import json
import os
import subprocess
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
from tq_orchestrate.errors import DeserializationError, PayloadTooLargeError, UnsafeTaskError

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


# -- python-task-queue's registries: only what --import admitted -----------------------------

UPSTREAM_ADMITTED = "tests.upstream_pkg.tasks"


def _upstream_hostile() -> list[tuple[str, str]]:
    """Bodies naming upstream-registered tasks that ``--import tests.upstream_pkg.tasks``
    must not admit, each with what the refusal must suggest importing."""

    def body(payload: object) -> str:
        return json.dumps({"payload": payload, "queueName": "hostile"})

    return [
        ("tests.upstream_pkg.tasksx", body({"class": "LookalikeTask", "note": "x"})),
        ("tests.upstream_pkg.tasksx", body([["tests.upstream_pkg.tasksx", "lookalike_fn"], ["x"], {}, -1])),
        ("tests.upstream_pkg.other", body({"class": "OtherTask", "note": "x"})),
        ("tests.upstream_pkg.other", body([["tests.upstream_pkg.other", "other_fn"], ["x"], {}, -1])),
        ("taskqueue.MockTask", body({"class": "MockTask", "x": 1})),
    ]


def test_upstream_tasks_not_imported_as_task_modules_are_refused(
    canary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.upstream_pkg.other
    import tests.upstream_pkg.tasksx  # noqa: F401
    from tq_orchestrate import _upstream, import_task_modules

    monkeypatch.setattr(_upstream, "_ADMITTED", set())
    import_task_modules([UPSTREAM_ADMITTED])
    for module, body in _upstream_hostile():
        with pytest.raises(UnsafeTaskError) as info:
            totask(body)
        assert f"--import {module}" in str(info.value)
        assert info.value.raw == body
    check_untouched(canary)


@pytest.mark.slow
def test_upstream_hostile_messages_are_dead_lettered_by_a_worker(tmp_path: Path, canary: Path) -> None:
    import tests.upstream_pkg.tasks as admitted

    url = f"sqlite://{tmp_path / 'upstream.db'}?max_receives=2"
    bodies = [body for _, body in _upstream_hostile()]
    with TaskQueue(url, progress=False) as tq:
        assert tq.backend.send_batch(bodies) == []
        tq.insert([admitted.TopTask("good", [1, 2])])
        code = (  # the other modules are imported (so registered upstream), but not with --import
            "import sys, tests.upstream_pkg.other, tests.upstream_pkg.tasksx\n"
            "from tq_orchestrate.cli import main\n"
            f"sys.argv = ['tqo', 'work', {url!r}, '--import', {UPSTREAM_ADMITTED!r}, '--burst',"
            " '--empty-for', '1', '--retry-delay', '0', '--min-backoff', '0.1']\n"
            "main()\n"
        )
        env = {**os.environ, "TQO_CANARY": str(canary)}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90
        )
        # a burst that refused tasks exits 3 (documented) and says how many
        assert done.returncode == 3, done.stderr[-2000:]
        assert "1 task succeeded" in done.stderr, done.stderr[-2000:]
        dead = sorted(d.body for d in tq.dead_letters(limit=20))
        counts = tq.counts()
    assert dead == sorted(bodies), "each refused message is dead-lettered as it was"
    assert counts.pending == 0
    assert canary.read_text().splitlines() == ["('TopTask', 'good', 3)"], "only the admitted task ran"
    assert "tests.upstream_pkg.never" not in done.stderr
