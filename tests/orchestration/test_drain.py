"""The Dagster-free drain check, fed with fake readings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tq_orchestrate.backends.base import Counts, DeadLetter
from tq_orchestrate.errors import ConfigurationError
from tq_orchestrate.orchestration.drain import (
    Baseline,
    DrainCursor,
    DrainPolicy,
    DrainState,
    DrainStatus,
    check_drain,
)

SQS = DrainPolicy(lag_seconds=60.0, min_zero_readings=3)
EMPTY_APPROX = Counts(0, 0, 0, exact=False)


def run(
    readings: list[tuple[float, Counts]],
    baseline: Baseline,
    policy: DrainPolicy,
    dead_letters: list[DeadLetter] | None = None,
) -> list[DrainStatus]:
    """Feed readings one by one, carrying the cursor through JSON as a sensor would."""
    cursor_json = json.dumps(DrainCursor().to_dict())
    out = []
    for now, counts in readings:
        status = check_drain(
            counts,
            DrainCursor.from_dict(json.loads(cursor_json)),
            now=now,
            baseline=baseline,
            policy=policy,
            dead_letters=None if dead_letters is None else (lambda n: dead_letters[:n]),
        )
        cursor_json = json.dumps(status.cursor.to_dict())
        out.append(status)
    return out


def test_pending_work_waits_and_names_the_counts() -> None:
    [status] = run([(0.0, Counts(5, 2, 1, exact=False))], Baseline(expected=8), SQS)
    assert status.state is DrainState.WAITING
    assert "5 visible, 2 leased, 1 delayed" in status.reason
    assert status.cursor == DrainCursor()


def test_lagging_zero_counts_right_after_upload_are_not_trusted() -> None:
    # SQS may read 0/0/0 for a while after a send; then the messages show up.
    readings = [
        (0.0, EMPTY_APPROX),
        (10.0, EMPTY_APPROX),
        (20.0, EMPTY_APPROX),  # three zeros, but only 20 s: not enough
        (30.0, Counts(900, 0, 0, exact=False)),
        (40.0, Counts(0, 100, 0, exact=False)),
    ]
    states = [s.state for s in run(readings, Baseline(expected=1000), SQS)]
    assert states == [DrainState.WAITING] * 5


def test_done_after_enough_zero_readings_spanning_more_than_the_lag() -> None:
    readings = [(0.0, Counts(3, 0, 0, exact=False))] + [(t, EMPTY_APPROX) for t in (5.0, 35.0, 65.0, 66.0)]
    statuses = run(readings, Baseline(expected=3), SQS)
    assert [s.state for s in statuses] == [DrainState.WAITING] * 4 + [DrainState.DONE]
    # at t=65 the run of zeros spans exactly 60 s: "more than the lag" is strict
    assert "60.0s" in statuses[3].reason
    assert statuses[4].done and "completions not counted" in statuses[4].reason


def test_enough_time_but_too_few_readings_waits() -> None:
    readings = [(0.0, EMPTY_APPROX), (120.0, EMPTY_APPROX)]
    statuses = run(readings, Baseline(expected=1), SQS)
    assert [s.state for s in statuses] == [DrainState.WAITING, DrainState.WAITING]
    assert statuses[1].cursor.zero_readings == 2


def test_a_late_message_reappearing_restarts_the_count() -> None:
    readings = [
        (0.0, EMPTY_APPROX),
        (30.0, EMPTY_APPROX),
        (50.0, Counts(1, 0, 0, exact=False)),  # a lease expired; the task is back
        (61.0, EMPTY_APPROX),  # 61 s after the first zero, but the run restarted at 61
        (90.0, EMPTY_APPROX),
        (121.0, EMPTY_APPROX),
        (122.0, EMPTY_APPROX),
    ]
    statuses = run(readings, Baseline(expected=10), SQS)
    assert statuses[2].cursor == DrainCursor()
    assert statuses[3].cursor == DrainCursor(1, 61.0)
    assert [s.state for s in statuses] == [DrainState.WAITING] * 6 + [DrainState.DONE]


def test_exact_counts_with_completions_finish_fast() -> None:
    policy = DrainPolicy.for_counts(exact=True)
    base = Baseline(expected=10, completed=100, dead=0)
    readings = [
        (0.0, Counts(0, 2, 0, inserted=110, completed=108, dead=0)),
        (0.1, Counts(0, 0, 0, inserted=110, completed=110, dead=0)),
        (0.25, Counts(0, 0, 0, inserted=110, completed=110, dead=0)),
        (0.35, Counts(0, 0, 0, inserted=110, completed=110, dead=0)),
    ]
    states = [s.state for s in run(readings, base, policy)]
    assert states == [DrainState.WAITING, DrainState.WAITING, DrainState.WAITING, DrainState.DONE]


def test_empty_queue_but_too_few_completions_is_a_failure_not_a_hang() -> None:
    policy = DrainPolicy(lag_seconds=0, min_zero_readings=2)
    base = Baseline(expected=10, completed=0, dead=0)
    empty = Counts(0, 0, 0, inserted=10, completed=7, dead=0)
    statuses = run([(0.0, empty), (1.0, empty)], base, policy)
    assert statuses[0].state is DrainState.WAITING
    assert statuses[1].failed
    assert "only 7 of 10 tasks completed" in statuses[1].reason


def test_every_completion_counted_is_done_under_a_zero_lag_policy() -> None:
    policy = DrainPolicy(lag_seconds=0, min_zero_readings=1)
    base = Baseline(expected=4, completed=0, dead=0)
    [done] = run([(0.0, Counts(0, 0, 0, inserted=4, completed=4, dead=0))], base, policy)
    assert done.done and "4 tasks completed" in done.reason


def test_a_completion_counted_after_its_delete_is_waited_for_within_the_streak() -> None:
    # A store that records the completion just after removing the task (fq://'s
    # completions file) can read "nothing pending, 3 of 4 completed" for a moment.
    # The streak of zero readings is what absorbs that: no verdict until it is full.
    policy = DrainPolicy(lag_seconds=0, min_zero_readings=2)
    base = Baseline(expected=4, completed=0, dead=0)
    readings = [
        (0.0, Counts(0, 0, 0, inserted=4, completed=3, dead=0)),
        (0.1, Counts(0, 0, 0, inserted=4, completed=4, dead=0)),
    ]
    states = [s.state for s in run(readings, base, policy)]
    assert states == [DrainState.WAITING, DrainState.DONE]


def test_three_of_four_completed_once_the_streak_is_full_is_a_loss_not_a_wait() -> None:
    # Decided: with exact counts a task that is neither pending, completed nor dead
    # was removed outside the workers (purge, a hand delete). Waiting longer cannot
    # bring it back, so the block fails and says so instead of hanging.
    policy = DrainPolicy(lag_seconds=0, min_zero_readings=1)
    base = Baseline(expected=4, completed=0, dead=0)
    [status] = run([(0.0, Counts(0, 0, 0, inserted=4, completed=3, dead=0))], base, policy)
    assert status.failed
    assert "only 3 of 4 tasks completed" in status.reason and "lost" in status.reason


def test_dead_letters_fail_the_block_with_count_and_sample() -> None:
    letters = [
        DeadLetter("m1", '{"payload": {"class": "Boom"}}', 5, "ZeroDivisionError: division by zero"),
        DeadLetter("m2", "x" * 500, 5, None),
        DeadLetter("m3", "{}", 6, "KeyError"),
        DeadLetter("m4", "{}", 6, "KeyError"),
    ]
    base = Baseline(expected=50, completed=0, dead=1)  # one dead letter was there before the block
    reading = Counts(3, 1, 0, inserted=50, completed=40, dead=5)
    [status] = run([(0.0, reading)], base, SQS, dead_letters=letters)
    assert status.failed
    assert status.dead == 4
    assert [d.message_id for d in status.dead_sample] == ["m1", "m2", "m3"]
    assert status.reason.startswith("4 task(s) dead-lettered")
    assert "ZeroDivisionError" in status.reason and "m1" in status.reason
    assert "x" * 121 not in status.reason  # long bodies are clipped


def test_dead_letters_from_before_the_block_do_not_fail_it() -> None:
    policy = DrainPolicy(lag_seconds=0, min_zero_readings=1)
    base = Baseline(expected=2, completed=5, dead=3)
    [status] = run([(0.0, Counts(0, 0, 0, inserted=7, completed=7, dead=3))], base, policy)
    assert status.done


def test_dead_letters_without_a_reader_still_fail() -> None:
    [status] = run([(0.0, Counts(0, 0, 0, dead=2, exact=False))], Baseline(expected=2, dead=0), SQS)
    assert status.failed and status.dead == 2 and status.dead_sample == ()


def test_cursor_and_baseline_round_trip_through_json() -> None:
    cursor = DrainCursor(2, 1234.5)
    assert DrainCursor.from_dict(json.loads(json.dumps(cursor.to_dict()))) == cursor
    assert DrainCursor.from_dict(None) == DrainCursor()
    base = Baseline(expected=9, completed=None, dead=4)
    assert Baseline.from_dict(json.loads(json.dumps(base.to_dict()))) == base


@pytest.mark.parametrize(("lag", "readings"), [(-1.0, 1), (1.0, 0)])
def test_bad_policy_is_a_configuration_error(lag: float, readings: int) -> None:
    with pytest.raises(ConfigurationError):
        DrainPolicy(lag_seconds=lag, min_zero_readings=readings)


def test_drain_module_does_not_import_dagster() -> None:
    # checked in a fresh interpreter: this test session may have imported Dagster already
    code = (
        "import sys, tq_orchestrate, tq_orchestrate.orchestration.drain;"
        "assert 'dagster' not in sys.modules, 'dagster imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
