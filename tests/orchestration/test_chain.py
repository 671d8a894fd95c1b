"""The asset chain sensor: evaluated tick by tick against an ephemeral instance, tasks run in process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tq_orchestrate import QueueEmptyError, TaskQueue
from tq_orchestrate.orchestration.assets import BlockAssets, BlockSpec, build_block_assets
from tq_orchestrate.orchestration.chain import AssetChainCursor, build_asset_chain_sensor
from tq_orchestrate.orchestration.jobs import RESOURCE_KEY
from tq_orchestrate.orchestration.resources import TaskQueueResource
from tq_orchestrate.orchestration.sensors import SERIES_TAG

from .block_tasks import executed
from .conftest import OWNERS_BETA, TASKS

pytestmark = pytest.mark.filterwarnings(OWNERS_BETA)

BLOCKS = ["b0", "b1", "b2"]


@dataclass
class Chain:
    defs: dg.Definitions
    blocks: BlockAssets
    sensor: dg.SensorDefinition
    url: str
    log: Path
    cursor: str | None = None

    def tick(self, instance: dg.DagsterInstance) -> Any:
        with dg.build_sensor_context(
            instance=instance, cursor=self.cursor, resources=self.defs.resources, definitions=self.defs
        ) as context:
            data = self.sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data

    def upload(self, instance: dg.DagsterInstance, key: str, tags: dict[str, str] | None = None) -> Any:
        job = self.defs.resolve_job_def(self.blocks.job.name)
        return job.execute_in_process(partition_key=key, instance=instance, tags=tags, raise_on_error=False)

    def work(self) -> int:
        done = 0
        with TaskQueue(self.url, progress=False) as q:
            while True:
                try:
                    task = q.lease(seconds=30)
                except QueueEmptyError:
                    return done
                task.execute()
                q.delete(task)
                done += 1


def make_chain(tmp_path: Path, factory: str = "task_factory", deps: tuple[str, ...] = ()) -> Chain:
    url = f"sqlite://{tmp_path / 'queue.db'}"
    log = tmp_path / "executed.txt"
    spec = BlockSpec(
        name="t",
        blocks=BLOCKS,
        task_factory=f"{TASKS}:{factory}",
        task_count=f"{TASKS}:task_count",
        factory_params={"path": str(log), "n": "3"},
        shard_size=2,
        deps=deps,
    )
    blocks = build_block_assets(spec)
    sensor = build_asset_chain_sensor(blocks, tick_budget_seconds=0.5, poll_seconds=0.02)
    extra = [dg.AssetSpec(d) for d in deps]
    defs = dg.Definitions(
        assets=[*extra, *blocks.assets()],
        asset_checks=list(blocks.checks),
        jobs=[blocks.job],
        sensors=[sensor],
        resources={RESOURCE_KEY: TaskQueueResource(queue_url=url, drain_lag_seconds=0.05)},
    )
    return Chain(defs, blocks, sensor, url, log)


@pytest.fixture
def instance() -> Any:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def drained(instance: dg.DagsterInstance, chain: Chain) -> list[Any]:
    return list(instance.fetch_materializations(chain.blocks.blocks_key, limit=50, ascending=True).records)


def check_history(instance: dg.DagsterInstance, chain: Chain, name: str) -> list[Any]:
    key = dg.AssetCheckKey(chain.blocks.blocks_key, name)
    return list(instance.event_log_storage.get_asset_check_execution_history(key, limit=50))


def run_series(chain: Chain, instance: dg.DagsterInstance, data: Any) -> Any:
    """Upload what the sensor requests and work it off until the sensor stops requesting."""
    while data.run_requests:
        [request] = data.run_requests
        assert chain.upload(instance, request.partition_key, request.tags).success
        chain.work()
        data = chain.tick(instance)
    return data


def test_a_series_materializes_every_block_in_order_with_checks(tmp_path: Path, instance: Any) -> None:
    chain = make_chain(tmp_path)
    first = chain.tick(instance)
    [request] = first.run_requests
    assert request.partition_key == "b0" and request.tags[SERIES_TAG]
    last = run_series(chain, instance, first)
    assert last.skip_message.startswith(f"series {request.tags[SERIES_TAG]} complete: block b2 was the last")
    assert [b for b, _ in executed(chain.log)] == ["b0"] * 3 + ["b1"] * 3 + ["b2"] * 3
    records = drained(instance, chain)
    assert [r.partition_key for r in records] == BLOCKS
    meta = records[0].asset_materialization.metadata
    assert meta["completed"].value == 3 and meta["dead letters"].value == 0
    assert meta["series"].value == request.tags[SERIES_TAG] and meta["drain seconds"].value >= 0
    for name in ("dead_letters", "drained"):
        history = check_history(instance, chain, name)
        assert len(history) == 3 and all(r.status.value == "SUCCEEDED" for r in history)
    again = chain.tick(instance)
    assert "complete; materialize block b0 of t_upload for another" in again.skip_message


def test_the_first_tick_waits_for_upstream_assets(tmp_path: Path, instance: Any) -> None:
    chain = make_chain(tmp_path, deps=("source",))
    data = chain.tick(instance)
    assert data.run_requests == [] and data.skip_message.startswith("waiting for source to be materialized")
    instance.report_runless_asset_event(dg.AssetMaterialization("source"))
    assert [r.partition_key for r in chain.tick(instance).run_requests] == ["b0"]


def test_materializing_the_first_block_starts_a_new_series(tmp_path: Path, instance: Any) -> None:
    chain = make_chain(tmp_path)
    run_series(chain, instance, chain.tick(instance))
    assert chain.upload(instance, "b0").success  # by hand, as from the UI: no series tag
    chain.work()
    data = chain.tick(instance)
    cursor = AssetChainCursor.from_json(chain.cursor)
    assert [r.partition_key for r in data.run_requests] == ["b1"]
    assert cursor.series == data.run_requests[0].tags[SERIES_TAG] and cursor.series_started_at > 0
    run_series(chain, instance, data)
    assert [r.partition_key for r in drained(instance, chain)] == BLOCKS * 2


def test_dead_letters_halt_on_the_assets_page_and_a_rematerialization_resumes(
    tmp_path: Path, instance: Any
) -> None:
    chain = make_chain(tmp_path)
    chain.tick(instance)
    assert chain.upload(instance, "b0").success
    with TaskQueue(chain.url, progress=False) as q:
        poisoned = q.lease(seconds=30)
        q.backend.dead_letter(poisoned.id, "ValueError: tile is corrupt")
    chain.work()
    halted = chain.tick(instance)
    assert halted.skip_message.startswith("halted: block b0 failed: 1 task(s) dead-lettered")
    assert halted.skip_message.endswith("materialize block b0 of t_upload again to resume")
    chain.tick(instance)  # reported once, not every tick
    [failed] = check_history(instance, chain, "dead_letters")
    evaluation = failed.event.dagster_event.event_specific_data
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["dead letters"].value == 1
    assert "tile is corrupt" in json.dumps(evaluation.metadata["sample"].value)
    assert drained(instance, chain) == []
    assert chain.upload(instance, "b0").success  # a person re-materializes the failed block
    chain.work()
    assert [r.partition_key for r in chain.tick(instance).run_requests] == ["b1"]


def test_a_failed_upload_run_halts_until_the_block_is_materialized_again(
    tmp_path: Path, instance: Any
) -> None:
    chain = make_chain(tmp_path, factory="short_factory")
    [request] = chain.tick(instance).run_requests
    result = chain.upload(instance, "b0", request.tags)
    assert not result.success
    halted = chain.tick(instance)
    assert halted.skip_message.startswith("halted: the upload of block b0 failure (run ")


def test_an_unreadable_cursor_starts_afresh(tmp_path: Path, instance: Any) -> None:
    chain = make_chain(tmp_path)
    chain.cursor = "{not json"
    assert [r.partition_key for r in chain.tick(instance).run_requests] == ["b0"]
    assert AssetChainCursor.from_json(chain.cursor).started


def test_a_fresh_cursor_ignores_uploads_made_before_it(tmp_path: Path, instance: Any) -> None:
    chain = make_chain(tmp_path)
    run_series(chain, instance, chain.tick(instance))  # history in the instance
    chain.cursor = None  # e.g. the sensor was reset
    [request] = chain.tick(instance).run_requests
    assert request.partition_key == "b0"
    waiting = chain.tick(instance)  # the old upload of b0 must not count as this series' upload
    assert waiting.run_requests == [] and waiting.skip_message == "block b0: waiting for its upload run"
    assert chain.upload(instance, "b0", request.tags).success
    chain.work()
    assert [r.partition_key for r in chain.tick(instance).run_requests] == ["b1"]


def test_a_tick_with_a_stale_cursor_reports_a_block_once(tmp_path: Path, instance: Any) -> None:
    chain = make_chain(tmp_path)
    [request] = chain.tick(instance).run_requests
    assert chain.upload(instance, "b0", request.tags).success
    chain.work()
    stale = chain.cursor
    first = chain.tick(instance)
    chain.cursor = stale  # the daemon evaluated again before saving the cursor
    again = chain.tick(instance)
    assert first.run_requests[0].run_key == again.run_requests[0].run_key  # deduplicated by Dagster
    assert [r.partition_key for r in drained(instance, chain)] == ["b0"]
    assert len(check_history(instance, chain, "dead_letters")) == 1
