"""The worker loop in process: poll's parameters, failures, corrupt payloads, backoff, stopping.

These run against the in-memory backend (``mem://``, same semantics as the
embedded queue) with an injected sleep and clock, so no test waits for a
backoff. Real worker processes are in test_worker_processes.py.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sqs_fixtures import (  # noqa: F401 - fixtures registered by import
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_sqs,
    unique_queue_name,
)
from tests.tasks_fixture import (
    Throttled,
    WorkerAppendTask,
    WorkerEchoArgsTask,
    WorkerFailTask,
    WorkerPickyTask,
    WorkerSleepTask,
    WorkerThrottledTask,
    append_fn,
    read_lines,
)
from tests.worker_fakes import FakeTime
from tq_orchestrate import TaskQueue
from tq_orchestrate._backoff import Backoff, retry_delay
from tq_orchestrate.backends.memory import MemoryBackend
from tq_orchestrate.errors import BackendError, ConfigurationError, LeaseLostError, QueueNotFoundError
from tq_orchestrate.worker import (
    StopFlag,
    Worker,
    WorkerOptions,
    body_task_name,
    poll,
    run_worker,
)


@pytest.fixture(autouse=True)
def _fresh_memory_queues() -> Iterator[None]:
    yield
    MemoryBackend.reset_all()


def mem_queue(max_receives: int = 5) -> TaskQueue:
    return TaskQueue(f"mem://worker-{uuid.uuid4().hex}", progress=False, max_receives=max_receives)


class FaultyQueue:
    """Delegates to a TaskQueue; ``faults[name]`` raises on the calls it chooses."""

    def __init__(self, tq: TaskQueue, faults: dict[str, Callable[[int], BaseException | None]]) -> None:
        self.tq = tq
        self.faults = faults
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.tq, name)
        fault = self.faults.get(name)
        if fault is None:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            n = self.calls[name] = self.calls.get(name, 0) + 1
            error = fault(n)
            if error is not None:
                raise error
            return target(*args, **kwargs)

        return call


def lines(path: Path) -> list[str]:
    return read_lines(path)


# -- poll: upstream's parameters ------------------------------------------------------


def test_poll_executes_every_task_deletes_it_and_returns_the_count(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(7)])
    assert tq.poll(burst_seconds=0) == 7
    assert sorted(lines(out), key=int) == [str(i) for i in range(7)]
    counts = tq.counts()
    assert (counts.pending, counts.completed) == (0, 7)


def test_poll_runs_queueable_functions(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    tq = mem_queue()
    tq.insert([functools.partial(append_fn, str(out), "fn")])
    assert poll(tq, burst_seconds=0) == 1
    assert lines(out) == ["fn"]


def test_execute_args_and_kwargs_reach_the_task(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    tq = mem_queue()
    tq.insert(WorkerEchoArgsTask(str(out)))
    poll(tq, execute_args=[1, "a"], execute_kwargs={"k": 2}, burst_seconds=0)
    assert [json.loads(x) for x in lines(out)] == [{"args": [1, "a"], "kwargs": {"k": 2}}]


def test_stop_fn_gets_only_the_arguments_it_names(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), str(i)) for i in range(10)])
    seen: list[tuple[int, float]] = []

    def stop_fn(executed: int, previous_execution_time: float) -> bool:
        seen.append((executed, previous_execution_time))
        return executed >= 3

    assert poll(tq, stop_fn=stop_fn) == 3
    assert [e for e, _ in seen] == [1, 2, 3]
    assert all(t >= 0 for _, t in seen)
    assert tq.counts().visible == 7


def test_stop_fn_with_kwargs_gets_all_four_and_tries_count_empty_polls() -> None:
    tq = mem_queue()
    fake = FakeTime()
    calls: list[dict[str, Any]] = []

    def stop_fn(**kwargs: Any) -> bool:
        calls.append(kwargs)
        return bool(kwargs["tries"] >= 3)

    assert poll(tq, stop_fn=stop_fn, sleep=fake.sleep, clock=fake.clock) == 0
    assert set(calls[0]) == {"executed", "tries", "previous_execution_time", "elapsed_time"}
    assert [c["tries"] for c in calls] == [1, 2, 3]
    assert calls[-1]["elapsed_time"] == pytest.approx(sum(fake.sleeps))


def test_stop_fn_without_parameters_and_a_non_callable_is_refused() -> None:
    tq = mem_queue()
    assert poll(tq, stop_fn=lambda: True) == 0
    with pytest.raises(ConfigurationError, match="stop_fn"):
        poll(tq, stop_fn=5)  # type: ignore[arg-type]


def test_before_fn_runs_before_and_after_fn_after_the_delete(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "x")])
    events: list[tuple[str, str, int]] = []

    def before(task: Any) -> None:
        events.append(("before", task.text, tq.counts().leased))

    def after(task: Any) -> None:
        events.append(("after", task.text, tq.counts().leased))

    poll(tq, before_fn=before, after_fn=after, burst_seconds=0)
    assert events == [("before", "x", 1), ("after", "x", 0)]


def test_verbose_prints_each_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "v")])
    poll(tq, verbose=True, burst_seconds=0)
    out = capsys.readouterr().out
    assert "INFO Running WorkerAppendTask" in out
    assert "successfully executed" in out


def test_tally_is_accepted_and_completions_are_counted(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "t")])
    assert tq.poll(tally=True, burst_seconds=0) == 1
    assert tq.completed == 1


def test_options_are_validated() -> None:
    for bad in ({"num_tasks": 0}, {"num_tasks": 11}, {"lease_seconds": 0}, {"max_tasks": -1}):
        with pytest.raises(ConfigurationError):
            WorkerOptions(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max backoff"):
        WorkerOptions(min_backoff_seconds=5, max_backoff_seconds=1)


# -- limits -------------------------------------------------------------------------


def test_max_tasks_leases_no_more_than_it_will_run(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), str(i)) for i in range(10)])
    assert poll(tq, num_tasks=10, max_tasks=4) == 4
    counts = tq.counts()
    assert (counts.visible, counts.leased) == (6, 0)


def test_batches_of_ten_are_all_executed_and_deleted(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(25)])
    assert poll(tq, num_tasks=10, burst_seconds=0) == 25
    assert len(lines(out)) == 25
    assert tq.counts().pending == 0


def test_max_seconds_and_max_loops_stop_an_idle_worker() -> None:
    fake = FakeTime()
    tq = mem_queue()
    assert poll(tq, max_seconds=30, sleep=fake.sleep, clock=fake.clock) == 0
    assert sum(fake.sleeps) == pytest.approx(30)  # the last sleep is cut to the deadline
    fake2 = FakeTime()
    poll(tq, max_loops=4, sleep=fake2.sleep, clock=fake2.clock)
    assert len(fake2.sleeps) == 3  # no sleep after the last loop


# -- backoff --------------------------------------------------------------------------


def test_backoff_doubles_to_its_maximum_on_an_empty_queue_and_resets_after_work(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()

    def on_sleep(n: int) -> None:
        if n == 6:  # work arrives while the worker sleeps
            tq.insert([WorkerAppendTask(str(out), "late")])

    fake = FakeTime(on_sleep)
    options = WorkerOptions(min_backoff_seconds=1, max_backoff_seconds=8, backoff_jitter=False, max_loops=10)
    stats = Worker(tq, options, sleep=fake.sleep, clock=fake.clock).run()
    assert stats.executed == 1
    assert lines(out) == ["late"]
    # 6 empty polls, 1 poll with work (no sleep), then empty again from the start
    assert fake.sleeps == [1, 2, 4, 8, 8, 8, 1, 2]


def test_random_backoff_stays_inside_a_window_that_reaches_the_maximum() -> None:
    fake = FakeTime()
    tq = mem_queue()
    worker = Worker(tq, WorkerOptions(max_loops=12), sleep=fake.sleep, clock=fake.clock)
    worker.run()
    windows = [min(2.0**i, 60.0) for i in range(11)]
    assert len(fake.sleeps) == 11
    assert all(0 <= s <= w for s, w in zip(fake.sleeps, windows, strict=True))
    assert worker.backoff.window() == 60.0  # the default maximum, as upstream promises


def test_burst_exits_once_the_queue_stayed_empty_long_enough() -> None:
    fake = FakeTime()
    tq = mem_queue()
    options = WorkerOptions(burst_seconds=5, backoff_jitter=False)
    stats = Worker(tq, options, sleep=fake.sleep, clock=fake.clock).run()
    assert "burst" in stats.stop_reason
    assert fake.sleeps == [1, 2, 2]  # the last sleep is cut to the burst deadline


def test_backoff_exceptions_make_the_loop_back_off_without_stopping(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerThrottledTask(str(out), "t")])
    fake = FakeTime()
    options = WorkerOptions(
        backoff_exceptions=(Throttled,),
        stop_on_error=True,
        retry_delay_seconds=0,
        backoff_jitter=False,
        max_loops=2,
    )
    stats = Worker(tq, options, sleep=fake.sleep, clock=fake.clock).run()
    assert stats.error is None and stats.failed == 2
    assert lines(out) == ["throttled t", "throttled t"]
    assert fake.sleeps == [1]


def test_backoff_policy_and_retry_delay() -> None:
    b = Backoff(0.5, 4, jitter=False)
    assert [b.next() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    b.reset()
    assert b.window() == 0.5
    assert [retry_delay(n, 5, 300) for n in (1, 2, 3, 7, 8)] == [5, 10, 20, 300, 300]
    assert retry_delay(3, 0, 300) == 0
    with pytest.raises(ConfigurationError):
        Backoff(0, 1)


# -- failures -----------------------------------------------------------------------


def test_a_failing_task_is_logged_released_and_dead_lettered_after_n_receives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "o"
    tq = mem_queue(max_receives=3)
    tq.insert([WorkerFailTask(str(out), "bad")] + [WorkerAppendTask(str(out), str(i)) for i in range(4)])
    with caplog.at_level(logging.ERROR, logger="tq_orchestrate.worker"):
        executed = poll(tq, retry_delay_seconds=0, burst_seconds=0)
    assert executed == 4
    assert lines(out).count("fail bad") == 3
    dead = tq.dead_letters()
    assert len(dead) == 1
    assert "WorkerFailTask" in dead[0].body
    assert dead[0].error is not None and "RuntimeError: task bad always fails" in dead[0].error
    assert tq.counts().pending == 0
    failure = next(r for r in caplog.records if "failed" in r.getMessage())
    text = failure.getMessage()
    assert '"text":"bad"' in text  # the payload
    assert "Traceback" in text and "always fails" in text


def test_a_failed_task_is_released_with_a_delay_not_deleted(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerFailTask(str(tmp_path / "o"), "x")])
    assert poll(tq, max_loops=1, retry_delay_seconds=60) == 0
    counts = tq.counts()
    assert (counts.visible, counts.pending, counts.completed) == (0, 1, 0)
    assert tq.receive(1, 10) == []  # hidden for the retry delay, not handed out again


def test_stop_on_error_reraises_after_handing_back_unstarted_tasks(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerFailTask(str(out), "x")] + [WorkerAppendTask(str(out), str(i)) for i in range(5)])
    with pytest.raises(RuntimeError, match="always fails"):
        poll(tq, num_tasks=10, stop_on_error=True, retry_delay_seconds=0)
    counts = tq.counts()
    assert (counts.visible, counts.leased, counts.completed) == (6, 0, 0)


def test_a_corrupt_payload_is_dead_lettered_with_its_raw_text_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    corrupt = ['{"payload": {"class": "WorkerAppendTask", "path": ', "[1, 2"]
    tq.backend.send_batch(corrupt)
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(3)])
    with caplog.at_level(logging.ERROR, logger="tq_orchestrate.worker"):
        assert poll(tq, burst_seconds=0) == 3
    dead = tq.dead_letters()
    assert sorted(d.body for d in dead) == sorted(corrupt)
    assert all(d.error and "corrupt payload" in d.error for d in dead)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "raw text: '[1, 2'" in logged
    assert len(lines(out)) == 3


def test_a_huge_deeply_nested_body_is_dead_lettered_whole_and_logged_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tq = mem_queue()
    body = "[" * 200_000
    tq.backend.send_batch([body])
    with caplog.at_level(logging.ERROR, logger="tq_orchestrate.worker"):
        assert poll(tq, burst_seconds=0) == 0
    assert [d.body for d in tq.dead_letters()] == [body]
    logged = next(r.getMessage() for r in caplog.records if "not a valid task" in r.getMessage())
    assert "nested too deeply" in logged
    assert len(logged) < 6000 and "[200002 chars]" in logged
    assert body_task_name(body) == "?"


def test_an_unknown_task_class_is_retried_not_dead_lettered_at_once(tmp_path: Path) -> None:
    tq = mem_queue(max_receives=2)
    tq.backend.send_batch(['{"payload": {"class": "NoSuchTaskAnywhere"}, "queueName": "q"}'])
    assert poll(tq, retry_delay_seconds=0, max_loops=3) == 0
    dead = tq.dead_letters()
    assert len(dead) == 1 and dead[0].receive_count == 2
    assert dead[0].error is not None and "NoSuchTaskAnywhere" in dead[0].error


def test_a_task_whose_constructor_raises_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    tq = mem_queue(max_receives=2)
    tq.backend.send_batch(['{"payload": {"class": "WorkerPickyTask", "n": -1}, "queueName": "q"}'])
    tq.insert([WorkerPickyTask(1)])
    assert poll(tq, retry_delay_seconds=0, burst_seconds=0) == 1
    dead = tq.dead_letters()
    assert len(dead) == 1 and dead[0].error is not None and "ValueError: n must be >= 0" in dead[0].error


def test_task_events_carry_id_class_seconds_and_outcome(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tq = mem_queue(max_receives=1)
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "ok"), WorkerFailTask(str(tmp_path / "o"), "no")])
    with caplog.at_level(logging.INFO, logger="tq_orchestrate.worker.tasks"):
        poll(tq, retry_delay_seconds=0, burst_seconds=0)
    events = [r.task_event for r in caplog.records if hasattr(r, "task_event")]
    assert sorted(e["outcome"] for e in events) == ["error", "ok"]
    for e in events:
        assert set(e) >= {"id", "class", "seconds", "outcome", "receive_count"}
        assert e["class"] in ("WorkerAppendTask", "WorkerFailTask")
        assert e["seconds"] >= 0


# -- transient backend failures ------------------------------------------------------


def test_a_retryable_receive_error_backs_off_and_a_fatal_one_raises(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), "a")])
    flaky = FaultyQueue(tq, {"receive": lambda n: BackendError("busy", retryable=True) if n <= 2 else None})
    fake = FakeTime()
    stats = Worker(flaky, WorkerOptions(burst_seconds=0, backoff_jitter=False), sleep=fake.sleep).run()
    assert stats.executed == 1 and fake.sleeps == [1, 2]
    broken = FaultyQueue(tq, {"receive": lambda n: BackendError("gone", retryable=False)})
    with pytest.raises(BackendError, match="gone"):
        Worker(broken, WorkerOptions(burst_seconds=0), sleep=fake.sleep).run()


def test_a_retryable_delete_error_is_retried(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), "a")])
    flaky = FaultyQueue(tq, {"delete": lambda n: BackendError("busy", retryable=True) if n == 1 else None})
    fake = FakeTime()
    stats = Worker(flaky, WorkerOptions(burst_seconds=0), sleep=fake.sleep).run()
    assert stats.executed == 1 and flaky.calls["delete"] == 2
    assert tq.counts().completed == 1 and lines(out) == ["a"]


def retryable_outage(n: int) -> BaseException | None:
    return BackendError("DeleteMessageBatch failed: EndpointConnectionError", retryable=True)


def is_subsequence(small: list[float], big: list[float]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def test_a_delete_failing_through_an_outage_is_retried_after_backoffs_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(3)])
    # three rounds of 4 quick attempts fail, the fourth round gets through
    flaky = FaultyQueue(tq, {"delete": lambda n: retryable_outage(n) if n <= 12 else None})
    fake = FakeTime()
    options = WorkerOptions(num_tasks=10, burst_seconds=0, backoff_jitter=False, heartbeat=False)
    with caplog.at_level(logging.WARNING, logger="tq_orchestrate.worker"):
        stats = Worker(flaky, options, sleep=fake.sleep, clock=fake.clock).run()
    assert flaky.calls["delete"] == 13
    assert (stats.executed, stats.undeleted, stats.lease_lost) == (3, 0, 0)
    assert sorted(lines(out)) == ["0", "1", "2"]  # each ran once
    counts = tq.counts()
    assert (counts.pending, counts.completed) == (0, 3)
    assert is_subsequence([1, 2, 4], fake.sleeps)  # the worker's backoff between rounds
    warned = [r.getMessage() for r in caplog.records if "could not delete" in r.getMessage()]
    assert [w.split("(attempt ")[1][:6] for w in warned] == ["1 of 8", "2 of 8", "3 of 8"]
    assert "EndpointConnectionError" in warned[0]


def test_a_delete_that_keeps_failing_is_given_up_and_the_task_runs_again_after_its_lease(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(2)])
    flaky = FaultyQueue(tq, {"delete": retryable_outage})
    after: list[str] = []
    fake = FakeTime()
    options = WorkerOptions(
        num_tasks=10,
        burst_seconds=0,
        delete_attempts=3,
        heartbeat=False,
        after_fn=lambda t: after.append(t.text),
    )
    with caplog.at_level(logging.INFO, logger="tq_orchestrate.worker"):
        stats = Worker(flaky, options, sleep=fake.sleep, clock=fake.clock).run()
    assert flaky.calls["delete"] == 3 * 4
    assert (stats.executed, stats.undeleted, stats.stop_reason) == (2, 2, "queue empty (burst)")
    assert sorted(after) == ["0", "1"]
    events = [r.task_event for r in caplog.records if hasattr(r, "task_event")]
    assert [e["outcome"] for e in events] == ["delete_failed", "delete_failed"]
    assert any("gave up deleting 2 executed tasks after 3 attempts" in r.getMessage() for r in caplog.records)
    assert tq.counts().leased == 2  # not lost: still leased, and back once the lease ends
    assert tq.release_all() == 2  # as if their lease ran out
    assert poll(tq, burst_seconds=0) == 2
    assert sorted(lines(out)) == ["0", "0", "1", "1"]  # at least once
    assert tq.counts().pending == 0


def test_a_task_that_comes_back_while_its_delete_is_pending_is_deleted_not_run_again(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(3)])
    # two rounds fail; meanwhile the leases run out and the tasks come back to this worker
    flaky = FaultyQueue(tq, {"delete": lambda n: retryable_outage(n) if n <= 8 else None})
    fake = FakeTime(on_sleep=lambda n: None)
    released: list[int] = []

    def on_sleep(n: int) -> None:
        if not released and flaky.calls.get("delete", 0) == 4:  # first backoff after the first round
            released.append(tq.release_all())

    fake.on_sleep = on_sleep
    options = WorkerOptions(num_tasks=10, burst_seconds=0, backoff_jitter=False, heartbeat=False)
    stats = Worker(flaky, options, sleep=fake.sleep, clock=fake.clock).run()
    assert released == [3]
    assert sorted(lines(out)) == ["0", "1", "2"]  # never run twice by this worker
    assert (stats.executed, stats.undeleted, stats.lease_lost) == (3, 0, 0)
    counts = tq.counts()
    assert (counts.pending, counts.completed) == (0, 3)


def test_a_task_that_comes_back_after_a_stop_request_is_deleted_not_handed_back(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), "a")])
    flaky = FaultyQueue(tq, {"delete": lambda n: retryable_outage(n) if n <= 8 else None})
    stop = StopFlag()

    def on_sleep(n: int) -> None:
        if n == 1 + 3:  # the first backoff, after the 3 waits of the first round's quick retries
            tq.insert([WorkerAppendTask(str(out), "b")])  # visible before "a" comes back
            assert tq.release_all() == 1  # the lease of "a" runs out

    fake = FakeTime(on_sleep)
    before = lambda task: stop.set("test") if task.text == "b" else None  # noqa: E731
    options = WorkerOptions(num_tasks=10, backoff_jitter=False, heartbeat=False, before_fn=before)
    stats = Worker(flaky, options, stop=stop, sleep=fake.sleep, clock=fake.clock).run()
    assert lines(out) == ["a", "b"]
    assert (stats.executed, stats.released, stats.undeleted) == (2, 0, 0)
    counts = tq.counts()
    assert (counts.pending, counts.completed) == (0, 2)


def test_a_pending_delete_gets_a_last_round_when_the_worker_stops(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), "a")])
    flaky = FaultyQueue(tq, {"delete": lambda n: retryable_outage(n) if n <= 4 else None})
    fake = FakeTime()
    stats = Worker(flaky, WorkerOptions(max_loops=1, heartbeat=False), sleep=fake.sleep).run()
    assert flaky.calls["delete"] == 5 and stats.undeleted == 0
    assert tq.counts().completed == 1


def test_the_short_retries_of_a_call_still_wait_while_the_worker_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "a")])
    waited: list[float] = []
    monkeypatch.setattr("tq_orchestrate.worker._loop.time.sleep", waited.append)
    flaky = FaultyQueue(tq, {"delete": lambda n: retryable_outage(n) if n == 1 else None})
    stop = StopFlag()
    stats = Worker(flaky, WorkerOptions(before_fn=lambda t: stop.set("test")), stop=stop).run()
    assert stats.executed == 1 and tq.counts().completed == 1
    assert len(waited) == 1 and waited[0] >= 0  # the stop flag did not cut the retry's wait


def test_on_sqs_a_background_delete_failing_for_a_while_is_retried(moto_sqs: None, tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = TaskQueue(f"sqs://{unique_queue_name('worker')}", progress=False, create=True)
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(12)])
    flaky = FaultyQueue(tq, {"delete": lambda n: retryable_outage(n) if 2 <= n <= 9 else None})
    fake = FakeTime()
    options = WorkerOptions(num_tasks=10, burst_seconds=0, backoff_jitter=False, heartbeat=False)
    stats = Worker(flaky, options, sleep=fake.sleep, clock=fake.clock).run()
    assert (stats.executed, stats.undeleted) == (12, 0)
    assert sorted(lines(out), key=int) == [str(i) for i in range(12)]
    assert tq.counts().pending == 0


def test_a_connection_error_in_receive_backs_off(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), "a")])
    flaky = FaultyQueue(tq, {"receive": lambda n: ConnectionRefusedError(111, "refused") if n <= 2 else None})
    fake = FakeTime()
    stats = Worker(flaky, WorkerOptions(burst_seconds=0, backoff_jitter=False), sleep=fake.sleep).run()
    assert stats.executed == 1 and fake.sleeps == [1, 2]


@pytest.mark.parametrize(
    "error",
    [
        BackendError("DeleteMessageBatch failed: AccessDenied: not allowed (HTTP 403)", retryable=False),
        QueueNotFoundError("q", "DeleteMessageBatch: the queue was deleted"),
    ],
)
def test_a_delete_error_no_retry_cures_stops_the_worker_at_once(tmp_path: Path, error: BaseException) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), str(i)) for i in range(3)])
    broken = FaultyQueue(tq, {"delete": lambda n: error})
    with pytest.raises(type(error)):
        Worker(broken, WorkerOptions(num_tasks=10, burst_seconds=0), sleep=FakeTime().sleep).run()
    assert broken.calls["delete"] == 1  # not retried
    assert tq.counts().leased == 3  # executed, not deleted: they run again after their lease


def test_releasing_a_failed_task_retries_a_transient_error_and_stops_on_a_fatal_one(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerFailTask(str(tmp_path / "o"), "x")])
    flaky = FaultyQueue(tq, {"release": lambda n: ConnectionResetError("reset") if n == 1 else None})
    stats = Worker(flaky, WorkerOptions(max_loops=1, retry_delay_seconds=0), sleep=FakeTime().sleep).run()
    assert stats.failed == 1 and flaky.calls["release"] == 2
    counts = tq.counts()
    assert (counts.visible, counts.leased) == (1, 0)  # the second try released it
    tq2 = mem_queue()
    tq2.insert([WorkerFailTask(str(tmp_path / "o"), "y")])
    denied = BackendError("ChangeMessageVisibility failed: AccessDenied (HTTP 403)", retryable=False)
    broken = FaultyQueue(tq2, {"release": lambda n: denied})
    with pytest.raises(BackendError, match="AccessDenied"):
        Worker(broken, WorkerOptions(burst_seconds=0), sleep=FakeTime().sleep).run()
    lost = FaultyQueue(tq2, {"release": lambda n: LeaseLostError("lease expired")})
    tq2.release_all()
    stats = Worker(lost, WorkerOptions(max_loops=1), sleep=FakeTime().sleep).run()
    assert stats.failed == 1 and lost.calls["release"] == 1  # a lost lease is no reason to stop


def test_a_renewal_error_no_retry_cures_stops_the_worker_after_the_task_in_hand(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(3)])
    failed = threading.Event()

    def renew_fault(n: int) -> BaseException:
        failed.set()
        return QueueNotFoundError("q", "ChangeMessageVisibility: the queue was deleted")

    broken = FaultyQueue(tq, {"renew": renew_fault})
    # lease 0.3 s: the heartbeat renews within 0.1 s; the first task waits for it
    options = WorkerOptions(num_tasks=10, lease_seconds=0.3, before_fn=lambda t: failed.wait(30))
    with pytest.raises(QueueNotFoundError, match="deleted"):
        Worker(broken, options).run()
    assert failed.is_set()
    assert len(lines(out)) == 1  # only the task in hand ran; the others were handed back
    assert tq.counts().completed == 1


# -- stopping -------------------------------------------------------------------------


def test_a_stop_request_finishes_the_task_in_hand_and_releases_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(10)])
    stop = StopFlag()
    options = WorkerOptions(num_tasks=10, before_fn=lambda task: stop.set("test"))
    stats = Worker(tq, options, stop=stop).run()
    assert stats.executed == 1 and stats.released == 9
    assert "stop requested" in stats.stop_reason
    counts = tq.counts()
    assert (counts.visible, counts.leased, counts.completed) == (9, 0, 1)


def test_sigint_during_poll_stops_after_the_task_and_restores_the_handler(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(5)])
    before = signal.getsignal(signal.SIGINT)
    executed = poll(tq, num_tasks=5, before_fn=lambda task: os.kill(os.getpid(), signal.SIGINT))
    assert executed == 1
    assert signal.getsignal(signal.SIGINT) is before
    assert tq.counts().visible == 4


def test_a_second_sigint_raises_keyboardinterrupt_and_releases_the_task_in_hand(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "x")])

    def twice(task: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        poll(tq, before_fn=twice)
    counts = tq.counts()
    assert (counts.visible, counts.completed) == (1, 0)


def test_a_sigterm_while_task_modules_import_stops_the_worker_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"sigterm_on_import_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "x")])
    outside: list[int] = []  # what a SIGTERM meets when the worker's handler is not set

    def record(signum: int, frame: object) -> None:
        outside.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:
        stats = run_worker(tq.url, WorkerOptions(burst_seconds=0), imports=[name])
        assert signal.getsignal(signal.SIGTERM) is record  # run_worker put back what it found
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.modules.pop(name, None)
    assert outside == []
    assert (stats.stop_reason, stats.executed) == ("stop requested (SIGTERM)", 0)
    assert tq.counts().visible == 1  # nothing leased


def test_run_worker_passes_backend_options(tmp_path: Path) -> None:
    tq = mem_queue(max_receives=5)
    tq.insert([WorkerFailTask(str(tmp_path / "o"), "x")])
    options = WorkerOptions(burst_seconds=0, retry_delay_seconds=0)
    stats = run_worker(tq.url, options, backend_options={"max_receives": 2})
    assert stats.failed == 2 and len(tq.dead_letters()) == 1


# -- heartbeat ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_heartbeat_keeps_a_long_task_away_from_other_workers(tmp_path: Path) -> None:
    out = tmp_path / "o"
    tq = mem_queue()
    tq.insert([WorkerSleepTask(str(out), "long", 3.0)])
    stolen: list[object] = []
    done = threading.Event()

    def thief() -> None:
        other = TaskQueue(tq.url, progress=False)
        while not done.is_set():
            stolen.extend(other.receive(1, 1.0))
            done.wait(0.1)

    t = threading.Thread(target=thief)
    try:  # the thief starts polling once the task is leased and running
        assert poll(tq, lease_seconds=1.0, burst_seconds=0, before_fn=lambda task: t.start()) == 1
    finally:
        done.set()
        t.join()
    assert stolen == []
    assert [x.split()[0] for x in lines(out)] == ["start", "done"]
    assert tq.counts().completed == 1


@pytest.mark.slow
def test_a_lease_that_cannot_be_renewed_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tq = mem_queue()
    tq.insert([WorkerSleepTask(str(tmp_path / "o"), "long", 1.0)])
    broken = FaultyQueue(tq, {"renew": lambda n: LeaseLostError("lease taken by another worker")})
    with caplog.at_level(logging.WARNING, logger="tq_orchestrate.worker"):
        Worker(broken, WorkerOptions(lease_seconds=0.6, burst_seconds=0)).run()
    assert any(
        "could not be renewed (lease taken by another worker)" in r.getMessage() for r in caplog.records
    )


# -- a network backend: deletes overlap the next receive ---------------------------------


def test_on_sqs_deletes_run_in_the_background_and_after_fn_still_follows_them(
    moto_sqs: None, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    tq = TaskQueue(f"sqs://{unique_queue_name('worker')}", progress=False, create=True, max_receives=3)
    tq.insert([WorkerAppendTask(str(out), str(i)) for i in range(25)])
    after: list[tuple[str, int]] = []
    threads: set[str] = set()
    real_delete = tq.backend.delete

    def delete(handles: Any) -> int:
        threads.add(threading.current_thread().name)
        return real_delete(handles)

    tq.backend.delete = delete  # type: ignore[method-assign]

    def after_fn(task: Any) -> None:
        after.append((task.text, tq.counts().pending))

    assert poll(tq, num_tasks=10, burst_seconds=0, after_fn=after_fn) == 25
    assert sorted(lines(out), key=int) == [str(i) for i in range(25)]
    assert sorted((t for t, _ in after), key=int) == [str(i) for i in range(25)]
    assert after[-1][1] == 0  # the last after_fn ran once every task was deleted
    assert any(name.startswith("tqo-delete") for name in threads)
    assert tq.counts().pending == 0


def test_a_background_delete_that_fails_for_good_stops_the_loop(moto_sqs: None, tmp_path: Path) -> None:
    tq = TaskQueue(f"sqs://{unique_queue_name('worker')}", progress=False, create=True)
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), str(i)) for i in range(5)])
    broken = FaultyQueue(tq, {"delete": lambda n: BackendError("access denied", retryable=False)})
    with pytest.raises(BackendError, match="access denied"):
        Worker(broken, WorkerOptions(num_tasks=10, burst_seconds=0)).run()
    assert tq.counts().pending == 5  # executed but not deleted: they will run again


# -- issue 10: SIGTERM in poll, progress lines, hints ---------------------------------


def test_sigterm_during_poll_stops_after_the_task_and_restores_the_handler(tmp_path: Path) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), str(i)) for i in range(5)])
    before = signal.getsignal(signal.SIGTERM)
    executed = poll(tq, num_tasks=5, before_fn=lambda task: os.kill(os.getpid(), signal.SIGTERM))
    assert executed == 1 and tq.counts().visible == 4
    assert signal.getsignal(signal.SIGTERM) is before


def test_poll_with_handle_sigterm_false_does_not_touch_sigterm(tmp_path: Path) -> None:
    tq = mem_queue()
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []
    for handle_sigterm in (False, True):
        tq.insert([WorkerAppendTask(str(tmp_path / "o"), "x")])
        poll(
            tq,
            burst_seconds=0,
            handle_sigterm=handle_sigterm,
            before_fn=lambda t: seen.append(signal.getsignal(signal.SIGTERM)),
        )
    assert seen[0] is before and seen[1] is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_worker_logs_progress_with_counts_and_rate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tq = mem_queue()
    tq.insert([WorkerFailTask(str(tmp_path / "o"), "bad")])
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), str(i)) for i in range(4)])
    fake = FakeTime()

    def tick(task: Any) -> None:
        fake.now += 5.0

    caplog.set_level(logging.INFO, "tq_orchestrate.worker")
    options = WorkerOptions(progress_seconds=10.0, before_fn=tick, burst_seconds=0, retry_delay_seconds=60)
    Worker(tq, options, sleep=fake.sleep, clock=fake.clock).run()
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert progress == [  # every 10 s of the fake clock; a task takes 5 s
        "progress: 1 done, 1 failed, 0.10 tasks/s in the last 10 s, 0.10 tasks/s overall",
        "progress: 3 done, 1 failed, 0.20 tasks/s in the last 10 s, 0.15 tasks/s overall",
    ]


def test_progress_lines_can_be_turned_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tq = mem_queue()
    tq.insert([WorkerAppendTask(str(tmp_path / "o"), "x")])
    fake = FakeTime()
    caplog.set_level(logging.INFO, "tq_orchestrate.worker")
    options = WorkerOptions(
        progress_seconds=None, burst_seconds=0, before_fn=lambda t: setattr(fake, "now", 9e9)
    )
    Worker(tq, options, sleep=fake.sleep, clock=fake.clock).run()
    assert not any(r.getMessage().startswith("progress:") for r in caplog.records)
    with pytest.raises(ConfigurationError, match="progress_seconds"):
        WorkerOptions(progress_seconds=0)


def test_an_unknown_task_class_log_suggests_import(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tq = mem_queue()
    tq.backend.send_batch(['{"payload": {"class": "NoSuchTaskAnywhere"}, "queueName": "q"}'])
    poll(tq, retry_delay_seconds=0, max_loops=1)
    (record,) = [r for r in caplog.records if "NoSuchTaskAnywhere" in r.getMessage()]
    assert "--import MODULE" in record.getMessage()
