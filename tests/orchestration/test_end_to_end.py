"""The example pipeline end to end: real worker processes, the sensor driving block after block.

Once on the embedded queue and once on a moto server over HTTP. Each test checks
the order of the block runs against the moments the previous block's last task
finished, and the final volume against numpy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from tests.sqs_fixtures import (  # noqa: F401 - fixtures registered by import
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
    unique_queue_name,
)
from tq_orchestrate.orchestration.demo import ChainOutcome, drive_chain, worker_processes
from tq_orchestrate.orchestration.example import pipeline, volume
from tq_orchestrate.orchestration.resources import TaskQueueResource
from tq_orchestrate.orchestration.sensors import PARTITION_TAG, SERIES_TAG

from .conftest import OWNERS_BETA

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings(OWNERS_BETA)]

UPLOAD_JOB = f"{pipeline.NAME}_upload_job"
LAYOUT = volume.Layout(blocks=3, block_depth=4, height=64, width=48, tile=16)


def run_example(tmp_path: Path, resource: TaskQueueResource, instance: Any, workers: int = 2) -> ChainOutcome:
    root = tmp_path / "data"
    volume.make_volume(root, LAYOUT, seed=7)
    instance.report_runless_asset_event(dg.AssetMaterialization(pipeline.VOLUME))  # made outside Dagster
    defs = pipeline.build_definitions(
        root=str(root), blocks=LAYOUT.blocks, queue=resource, tick_budget_seconds=2.0, poll_seconds=0.05
    )
    with worker_processes(workers, resource.queue_url, pipeline.TASKS_MODULE, log_dir=tmp_path) as procs:
        outcome = drive_chain(
            defs,
            instance,
            job_name=UPLOAD_JOB,
            sensor_name=f"{pipeline.NAME}_chain",
            timeout_seconds=90,
            stop=lambda: "workers died" if all(p.poll() is not None for p in procs) else None,
        )
    return outcome


def check_order_and_numbers(tmp_path: Path, outcome: ChainOutcome, instance: Any) -> None:
    root = tmp_path / "data"
    assert outcome.complete, (outcome.reason, _logs(tmp_path))
    keys = LAYOUT.block_keys()
    assert [(key, ok) for key, _, ok in outcome.runs] == [(key, True) for key in keys]

    records = sorted(
        instance.get_run_records(dg.RunsFilter(job_name=UPLOAD_JOB)), key=lambda r: r.create_timestamp
    )
    assert [r.dagster_run.tags[PARTITION_TAG] for r in records] == keys
    assert len({r.dagster_run.tags[SERIES_TAG] for r in records}) == 1
    for previous, record in zip(keys, records[1:], strict=False):
        last_task_done = max(
            volume.tile_path(root, int(previous), y0, x0).stat().st_mtime for y0, _, x0, _ in LAYOUT.tiles()
        )
        assert record.create_timestamp.timestamp() >= last_task_done, f"block after {previous} started early"

    blocks_key = dg.AssetKey(f"{pipeline.NAME}_blocks")
    drained = instance.fetch_materializations(blocks_key, limit=10, ascending=True)
    assert [r.partition_key for r in drained.records] == keys
    for upload, block in zip(records, drained.records, strict=True):
        assert block.timestamp > upload.create_timestamp.timestamp()

    expected = np.cumsum(volume.load_volume(root), axis=0)
    np.testing.assert_array_equal(volume.assemble_output(root), expected)
    assert volume.verify(root)[0]


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(tmp_path.glob("worker-*.log")))


def test_three_blocks_on_the_embedded_queue(tmp_path: Path, instance: Any) -> None:
    resource = TaskQueueResource(queue_url=f"sqlite://{tmp_path / 'queue.db'}")
    outcome = run_example(tmp_path, resource, instance)
    check_order_and_numbers(tmp_path, outcome, instance)
    counts = resource.counts()
    tasks = LAYOUT.blocks * len(LAYOUT.tiles())
    assert (counts.pending, counts.inserted, counts.completed, counts.dead) == (0, tasks, tasks, 0)


def test_three_blocks_on_sqs_served_by_moto(tmp_path: Path, moto_server: str, instance: Any) -> None:
    from tq_orchestrate.backends.sqs import ensure_queue_pair

    url, _ = ensure_queue_pair(unique_queue_name("chain"), 3, endpoint_url=moto_server)
    assert url.startswith("http://127.0.0.1:") and "AWS_ACCESS_KEY_ID" in os.environ
    # SQS counts are approximate: several zero readings spanning a (shortened) lag
    resource = TaskQueueResource(queue_url=url, drain_lag_seconds=0.5, drain_zero_readings=3)
    assert not resource.get_queue().backend.capabilities.exact_counts
    outcome = run_example(tmp_path, resource, instance)
    check_order_and_numbers(tmp_path, outcome, instance)
    counts = resource.counts()
    assert (counts.pending, counts.dead) == (0, 0)
