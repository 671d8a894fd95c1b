"""The block-chain sensor, the series schedule and the failure sensor, with Dagster's test APIs."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import pytest

from tq_orchestrate.orchestration.resources import TaskQueueResource
from tq_orchestrate.orchestration.sensors import SERIES_TAG, ChainCursor, build_block_chain_sensor

from .block_tasks import executed
from .conftest import OWNERS_BETA, TASKS, Pipeline

pytestmark = pytest.mark.filterwarnings(OWNERS_BETA)


@pytest.fixture
def persistent_instance() -> Iterator[Any]:
    """Schedules need a persistent instance (build_schedule_context asks for its ref)."""
    with dg.instance_for_test() as inst:
        yield inst


def tick(pipe: Pipeline, instance: Any, cursor: str | None, sensor: Any = None, resource: Any = None) -> Any:
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"task_queue": resource or pipe.resource},
        definitions=pipe.defs,
    ) as context:
        return (sensor or pipe.sensor).evaluate_tick(context)


def launch(pipe: Pipeline, instance: Any, request: Any, **kwargs: Any) -> Any:
    return pipe.job.execute_in_process(
        partition_key=request.partition_key, tags=request.tags, instance=instance, **kwargs
    )


def only_request(data: Any) -> Any:
    assert data.skip_message is None, data.skip_message
    [request] = data.run_requests
    return request


def skip_of(data: Any) -> str:
    assert data.run_requests == [], data.run_requests
    assert data.skip_message
    return str(data.skip_message)


def broken_config(pipe: Pipeline, key: str) -> dict[str, Any]:
    """The partition's run config with a task factory that yields too few tasks."""
    config = pipe.job.partitioned_config.get_run_config_for_partition_key(key)
    op = dict(config["ops"]["generate_shards"]["config"], task_factory=f"{TASKS}:short_factory")
    return {"ops": {"generate_shards": {"config": op}}}


def test_blocks_run_in_order_each_after_the_previous_drained(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=5)
    first = tick(pipe, instance, None)
    request = only_request(first)
    cursor = first.cursor
    series = ChainCursor.from_json(cursor).series
    assert request.partition_key == "b0" and request.tags[SERIES_TAG] == series
    assert request.run_key == f"{series}:b0"

    waiting = tick(pipe, instance, cursor)
    assert "b0: waiting for its run to start" in skip_of(waiting)

    for key, nxt in (("b0", "b1"), ("b1", "b2")):
        assert launch(pipe, instance, request).success
        data = tick(pipe, instance, cursor)
        assert skip_of(data) == f"block {key}: draining: 5 visible, 0 leased, 0 delayed"
        pipe.work(limit=3)
        assert "draining: 2 visible" in skip_of(tick(pipe, instance, data.cursor))
        pipe.work()
        data = tick(pipe, instance, data.cursor)
        request = only_request(data)
        assert request.partition_key == nxt and request.tags[SERIES_TAG] == series
        cursor = data.cursor

    assert launch(pipe, instance, request).success
    pipe.work()
    done = tick(pipe, instance, cursor)
    assert f"series {series} complete: block b2 was the last" in skip_of(done)
    assert "5 tasks completed" in skip_of(done)
    assert ChainCursor.from_json(done.cursor).complete
    assert "complete (3 blocks); waiting for a new one" in skip_of(tick(pipe, instance, done.cursor))

    blocks_in_order = [block for block, _ in executed(pipe.log)]
    assert blocks_in_order == ["b0"] * 5 + ["b1"] * 5 + ["b2"] * 5


def test_a_failed_run_halts_the_chain_until_a_rerun_succeeds(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=5)
    first = tick(pipe, instance, None)
    request = only_request(first)
    failed = launch(pipe, instance, request, run_config=broken_config(pipe, "b0"), raise_on_error=False)
    assert not failed.success

    halted = tick(pipe, instance, first.cursor)
    reason = skip_of(halted)
    assert reason.startswith(f"halted: block b0 run {failed.run_id} FAILURE")
    assert "re-run the block to resume" in reason
    assert skip_of(tick(pipe, instance, halted.cursor)) == reason

    pipe.work()  # the partial upload's tasks are still valid work
    assert launch(pipe, instance, request).success  # a person re-runs the block
    pipe.work()
    resumed = tick(pipe, instance, halted.cursor)
    assert only_request(resumed).partition_key == "b1"


def test_failure_sensor_reports_the_block_and_run(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=5)
    request = only_request(tick(pipe, instance, None))
    failed = launch(pipe, instance, request, run_config=broken_config(pipe, "b0"), raise_on_error=False)
    [failure_event] = [e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    context = dg.build_run_status_sensor_context(
        sensor_name=pipe.failure_sensor.name,
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=failed.dagster_run,
    ).for_run_failure()
    pipe.failure_sensor(context)
    [report] = pipe.reports
    assert report.startswith(f"block b0 of blocks failed (run {failed.run_id}, series ")
    assert request.tags[SERIES_TAG] in report


def test_dead_letters_halt_with_count_and_sample_and_a_rerun_resumes(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=5)
    first = tick(pipe, instance, None)
    request = only_request(first)
    assert launch(pipe, instance, request).success
    with pipe.queue() as q:
        poisoned = q.lease(seconds=30)
        q.backend.dead_letter(poisoned.id, "ValueError: tile is corrupt")
    pipe.work()

    halted = tick(pipe, instance, first.cursor)
    reason = skip_of(halted)
    assert reason.startswith("halted: block b0 failed: 1 task(s) dead-lettered, e.g. [")
    assert "ValueError: tile is corrupt" in reason and "BlockMarkTask" in reason
    assert skip_of(tick(pipe, instance, halted.cursor)) == reason

    assert launch(pipe, instance, request).success  # re-run: its baseline counts the old dead letter
    pipe.work()
    assert only_request(tick(pipe, instance, halted.cursor)).partition_key == "b1"


def test_redriving_dead_letters_also_resumes(make_pipeline: Callable[..., Pipeline], instance: Any) -> None:
    pipe = make_pipeline(tasks_per_block=3)
    first = tick(pipe, instance, None)
    assert launch(pipe, instance, only_request(first)).success
    with pipe.queue() as q:
        q.backend.dead_letter(q.lease(seconds=30).id, "transient")
    pipe.work()
    halted = tick(pipe, instance, first.cursor)
    assert "1 task(s) dead-lettered" in skip_of(halted)
    with pipe.queue() as q:
        assert q.redrive() == 1
    pipe.work()
    assert only_request(tick(pipe, instance, halted.cursor)).partition_key == "b1"


def test_sqs_like_lag_spans_ticks_and_each_tick_keeps_to_its_budget(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    clock = {"now": time.time()}
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock["now"] += seconds

    pipe = make_pipeline(tasks_per_block=2, resource={"drain_lag_seconds": 60, "drain_zero_readings": 3})
    sensor = build_block_chain_sensor(
        pipe.job,
        name="lagged",
        tick_budget_seconds=5,
        poll_seconds=0.5,
        clock=lambda: clock["now"],
        sleep=fake_sleep,
    )
    first = tick(pipe, instance, None, sensor=sensor)
    assert launch(pipe, instance, only_request(first)).success
    pipe.work()

    began = clock["now"]
    data = tick(pipe, instance, first.cursor, sensor=sensor)
    assert clock["now"] - began <= 5
    assert len(sleeps) == 10 and set(sleeps) == {0.5}
    assert "queue reads empty (11/3 readings over 5.0s; need more than 60s)" in skip_of(data)

    clock["now"] += 30  # the next ticks, as the daemon would run them
    assert "over 40.0s" in skip_of(data := tick(pipe, instance, data.cursor, sensor=sensor))
    clock["now"] += 30
    assert only_request(tick(pipe, instance, data.cursor, sensor=sensor)).partition_key == "b1"


def test_an_unreadable_queue_skips_with_the_error(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=1)
    first = tick(pipe, instance, None)
    assert launch(pipe, instance, only_request(first)).success
    broken = TaskQueueResource(queue_url="nosuch://queue")
    reason = skip_of(tick(pipe, instance, first.cursor, resource=broken))
    assert reason.startswith("block b0: cannot read the queue: unknown queue URL scheme 'nosuch'")


def test_schedule_starts_a_new_series_that_the_sensor_adopts(
    make_pipeline: Callable[..., Pipeline], persistent_instance: Any
) -> None:
    instance = persistent_instance
    pipe = make_pipeline(tasks_per_block=2, blocks=["b0", "b1"])
    first = tick(pipe, instance, None)
    old_series = ChainCursor.from_json(first.cursor).series
    assert launch(pipe, instance, only_request(first)).success
    pipe.work()
    middle = tick(pipe, instance, first.cursor)  # requests b1 of the old series
    assert only_request(middle).partition_key == "b1"

    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    scheduled = pipe.schedule.evaluate_tick(
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=pipe.defs.get_repository_def()
        )
    )
    [request] = scheduled.run_requests
    new_series = request.tags[SERIES_TAG]
    assert request.partition_key == "b0" and new_series != old_series
    assert new_series.startswith(when.strftime("%Y%m%dT%H%M%S"))
    assert launch(pipe, instance, request).success
    pipe.work()

    adopted = tick(pipe, instance, middle.cursor)
    nxt = only_request(adopted)
    assert (nxt.partition_key, nxt.tags[SERIES_TAG]) == ("b1", new_series)
    assert ChainCursor.from_json(adopted.cursor).series == new_series


def test_schedule_skips_while_a_block_run_is_in_progress(
    make_pipeline: Callable[..., Pipeline], persistent_instance: Any
) -> None:
    pipe = make_pipeline()
    run = persistent_instance.create_run_for_job(
        pipe.job,
        run_config=pipe.job.partitioned_config.get_run_config_for_partition_key("b1"),
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": "b1"},
    )
    data = pipe.schedule.evaluate_tick(dg.build_schedule_context(instance=persistent_instance))
    assert data.run_requests in (None, [])
    assert data.skip_message == f"run {run.run_id} of blocks is in progress"


def test_without_first_tick_start_the_sensor_waits_for_the_schedule(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline()
    sensor = build_block_chain_sensor(pipe.job, name="patient", start_on_first_tick=False)
    data = tick(pipe, instance, None, sensor=sensor)
    assert skip_of(data).startswith("no series yet")
    assert ChainCursor.from_json(data.cursor).series is None
    request = dg.RunRequest(partition_key="b0", tags={SERIES_TAG: "nightly-1"})  # as the schedule sends it
    assert launch(pipe, instance, request).success
    pipe.work()
    adopted = tick(pipe, instance, data.cursor, sensor=sensor)
    assert only_request(adopted).tags[SERIES_TAG] == "nightly-1"


def test_a_fresh_sensor_ignores_series_from_before_it_started(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=1)
    old = tick(pipe, instance, None)
    assert launch(pipe, instance, only_request(old)).success
    pipe.work()

    patient = build_block_chain_sensor(pipe.job, name="patient", start_on_first_tick=False)
    waiting = tick(pipe, instance, None, sensor=patient)
    assert skip_of(waiting).startswith("no series yet")
    eager = tick(pipe, instance, None)  # a reset cursor starts its own series, not the old one
    request = only_request(eager)
    assert request.partition_key == "b0"
    assert request.tags[SERIES_TAG] != ChainCursor.from_json(old.cursor).series


def test_chain_cursor_round_trips_and_tolerates_empty() -> None:
    cursor = ChainCursor(
        series="s", series_started_at=1.5, index=2, requested_at=3.5, run_id="r", complete=True
    )
    assert ChainCursor.from_json(cursor.to_json()) == cursor
    assert ChainCursor.from_json(None) == ChainCursor() == ChainCursor.from_json("")


def test_sensor_needs_a_partitioned_job_and_a_sane_budget(make_pipeline: Callable[..., Pipeline]) -> None:
    pipe = make_pipeline()

    @dg.job
    def plain() -> None:
        pass

    with pytest.raises(ValueError, match="not partitioned"):
        build_block_chain_sensor(plain)
    with pytest.raises(ValueError, match="tick_budget_seconds"):
        build_block_chain_sensor(pipe.job, tick_budget_seconds=59)


def test_with_a_ledger_the_op_chain_finishes_a_block_exactly_without_the_count_lag(
    make_pipeline: Callable[..., Pipeline], instance: Any, tmp_path: Any
) -> None:
    from tq_orchestrate.ledger import open_ledger
    from tq_orchestrate.worker import poll

    url = f"sqlite://{tmp_path / 'queue.db'}"
    pipe = make_pipeline(tasks_per_block=3, resource={"drain_lag_seconds": 60, "ledger_url": url})
    first = tick(pipe, instance, None)
    assert launch(pipe, instance, only_request(first)).success
    assert open_ledger(url).figures("b0").total == 3
    with pipe.queue() as q:
        poll(q, burst_seconds=0, ledger_url=url, max_tasks=2, handle_sigterm=False)
        waiting = tick(pipe, instance, first.cursor)
        assert "ledger: 2 of 3 tasks recorded, 1 missing (e.g. b0#2)" in skip_of(waiting)
        poll(q, burst_seconds=0, ledger_url=url, handle_sigterm=False)
    data = tick(pipe, instance, waiting.cursor)  # no 60 s lag: the ledger is exact
    assert only_request(data).partition_key == "b1"
