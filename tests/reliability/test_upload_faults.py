"""Upload faults with both engines at once: every task stored, exactly once where that is possible.

``tests/backends/test_sqs_faults.py`` covers each fault alone and all of them
for one engine at a time. Here the boto3 engine and the fast engine upload into
the same stand-in queue at the same time, sharing its faults, at higher rates:
refused entries, throttling, 500s, connections reset before the request is
processed and slow responses (exactly once); then the same with replies lost
after the message was stored and wrong MD5s (at least once; the duplicates are
counted, bounded by the batches whose replies were lost, and printed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability._harness import upload_faults_scenario
from tests.sqs_fixtures import fixture_aws_env, fixture_clean_aws_env  # noqa: F401 - fixtures
from tq_orchestrate.testing import Faults, SqsStandIn

TASKS = 2000  # per engine

EXACTLY_ONCE = Faults(
    entry_failure_rate=0.1,
    throttle_rate=0.08,
    error_rate=0.08,
    drop_before_rate=0.08,
    slow_rate=0.05,
    slow_seconds=0.2,
    seed=21,
)
AT_LEAST_ONCE = Faults(
    entry_failure_rate=0.05,
    throttle_rate=0.05,
    error_rate=0.05,
    drop_before_rate=0.05,
    drop_after_rate=0.05,
    bad_md5_rate=0.01,
    slow_rate=0.02,
    slow_seconds=0.1,
    seed=22,
)


@pytest.fixture
def server(aws_env: Path) -> Iterator[SqsStandIn]:
    with SqsStandIn() as standin:
        yield standin


def test_both_engines_at_once_under_mixed_faults_store_each_task_exactly_once(
    server: SqsStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    figures, injected = upload_faults_scenario(
        server, TASKS, EXACTLY_ONCE, label="mixed faults, both engines"
    )
    with capsys.disabled():
        print(f"\n[{figures.scenario}] {figures.notes[0]}")
    for kind in ("entry_failures", "throttled", "errors", "dropped_before", "slowed"):
        assert injected[kind] > 0, f"no {kind} injected: the test proves nothing"
    assert (figures.inserted, figures.completed, figures.lost, figures.repeats) == (
        2 * TASKS,
        2 * TASKS,
        0,
        0,
    )


def test_both_engines_at_once_with_lost_replies_store_each_task_at_least_once(
    server: SqsStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    figures, injected = upload_faults_scenario(
        server, TASKS, AT_LEAST_ONCE, label="lost replies, both engines"
    )
    with capsys.disabled():
        print(f"\n[{figures.scenario}] {figures.repeats} duplicates; {figures.notes[0]}")
    assert injected["dropped_after"] > 0 and injected["bad_md5"] > 0
    assert (figures.completed, figures.lost) == (2 * TASKS, 0)
    # a lost reply duplicates at most its batch; a wrong MD5 exactly its entry
    assert 0 < figures.repeats <= 10 * injected["dropped_after"] + injected["bad_md5"]
