"""The block assets as a Dagster Component configured in YAML."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from tq_orchestrate.orchestration.component import TaskQueueBlocks

from .conftest import OWNERS_BETA, TASKS

pytestmark = [
    pytest.mark.filterwarnings(OWNERS_BETA),
    # dagster's YAML resolution still calls pydantic's parse_obj_as
    pytest.mark.filterwarnings("ignore:`parse_obj_as` is deprecated:DeprecationWarning"),
]


def test_component_from_yaml_builds_the_block_assets(tmp_path: Path) -> None:
    log = tmp_path / "executed.txt"
    component = TaskQueueBlocks.resolve_from_yaml(
        f"""
name: marks
queue_url: sqlite://{tmp_path / "queue.db"}
task_factory: {TASKS}:task_factory
task_count: {TASKS}:task_count
blocks: [b0, b1]
factory_params: {{path: {log}, n: "4"}}
shard_size: 3
"""
    )
    defs = component.build_defs(dg.ComponentTree.for_test().load_context)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"marks_upload", "marks_blocks"}
    assert {s.name for s in defs.get_repository_def().sensor_defs} == {"marks_chain"}
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("marks_upload_job").execute_in_process(
            partition_key="b1", instance=instance
        )
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["tasks"].value, metadata["shards"].value) == (4, 2)
