"""The example deployment: workspace.yaml loads as `dagster dev` loads it; its assets work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import definitions
from tq_orchestrate import QueueEmptyError, TaskQueue
from tq_orchestrate.orchestration.example import pipeline, volume

from .conftest import OWNERS_BETA

pytestmark = pytest.mark.filterwarnings(OWNERS_BETA)

REPO = Path(definitions.__file__).resolve().parent.parent


def dagster_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(home), "TQO_EXAMPLE_DIR": str(tmp_path / "example")}
    env.pop("TQO_QUEUE_URL", None)
    command = [sys.executable, "-m", "dagster", *args, "-w", "workspace.yaml"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_workspace_validates(tmp_path: Path) -> None:
    result = dagster_cli("definitions", "validate", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation successful for code location definitions:defs" in result.stdout + result.stderr


@pytest.mark.slow
def test_workspace_serves_the_sensors_through_a_code_server(tmp_path: Path) -> None:
    # like `dagster dev`, `sensor list` starts a code server process for the workspace
    result = dagster_cli("sensor", "list", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sensor: cumsum_chain" in result.stdout
    assert "Sensor: cumsum_automation" in result.stdout
    assert "Warning" not in result.stderr, result.stderr[-3000:]


def test_defs_hold_the_asset_graph_checks_sensors_and_resource() -> None:
    defs = definitions.defs
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"volume", "cumsum_upload", "cumsum_blocks", "verified"}
    parents = {k: {p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys} for k in keys}
    assert parents == {
        "volume": set(),
        "cumsum_upload": {"volume"},
        "cumsum_blocks": {"cumsum_upload"},
        "verified": {"cumsum_blocks"},
    }
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert checks == {("cumsum_blocks", "dead_letters"), ("cumsum_blocks", "drained")}
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {"cumsum_chain", "cumsum_automation"}
    job = defs.resolve_job_def("cumsum_upload_job")
    assert job.partitions_def.get_partition_keys() == ["0000", "0001", "0002", "0003"]
    assert job.executor_def.name == "in_process"
    assert graph.get(dg.AssetKey("verified")).automation_condition is not None


def test_queue_url_comes_from_an_env_var_when_set(tmp_path: Path) -> None:
    env = {"TQO_QUEUE_URL": "sqs://jobs", "TQO_EXAMPLE_DIR": str(tmp_path), "TQO_EXAMPLE_BLOCKS": "2"}
    defs = pipeline.definitions_from_env(env)
    resource = defs.resources["task_queue"]
    assert isinstance(resource.queue_url, dg.EnvVar) and resource.queue_url.env_var_name == "TQO_QUEUE_URL"
    assert defs.resolve_job_def("cumsum_upload_job").partitions_def.get_partition_keys() == ["0000", "0001"]
    default = pipeline.definitions_from_env({"TQO_EXAMPLE_DIR": str(tmp_path)}).resources["task_queue"]
    assert default.queue_url == f"sqlite://{tmp_path / 'queue.db'}"


def test_example_assets_make_upload_and_verify(tmp_path: Path) -> None:
    defs = pipeline.definitions_from_env({"TQO_EXAMPLE_DIR": str(tmp_path), "TQO_EXAMPLE_BLOCKS": "2"})
    config = {"ops": {"volume": {"config": {"block_depth": 3, "height": 20, "width": 10, "tile": 8}}}}
    volume_def, verified = defs.resolve_assets_def("volume"), defs.resolve_assets_def("verified")
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([volume_def], run_config=config, instance=instance).success
        assert volume.load_layout(tmp_path) == volume.Layout(2, 3, 20, 10, 8)
        upload = defs.resolve_job_def("cumsum_upload_job")
        for key in ("0000", "0001"):
            assert not dg.materialize([verified], instance=instance, raise_on_error=False).success
            result = upload.execute_in_process(partition_key=key, instance=instance)
            metadata = result.get_asset_materialization_events()[0].materialization.metadata
            assert metadata["tasks"].value == 6 and metadata["shards"].value == 1
            assert work_all(f"sqlite://{tmp_path / 'queue.db'}") == 6  # 3 x 2 tiles of 8x8 cover 20x10
        result = dg.materialize([verified], instance=instance)
    assert result.success
    assert volume.verify(tmp_path) == (True, "output equals np.cumsum(volume, axis=0) for shape (6, 20, 10)")


def test_tasks_of_a_block_fail_while_the_previous_block_is_missing(tmp_path: Path) -> None:
    from tq_orchestrate.orchestration.example.tasks import task_factory

    volume.make_volume(tmp_path, volume.Layout(2, 2, 4, 4, 4))
    [task] = task_factory("0001", 0, 1, root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not written yet"):
        task.execute()
    [first] = task_factory("0000", 0, 1, root=str(tmp_path))
    first.execute()
    task.execute()
    assert volume.verify(tmp_path)[0]


def work_all(url: str) -> int:
    done = 0
    with TaskQueue(url, progress=False) as q:
        while True:
            try:
                task = q.lease(seconds=30)
            except QueueEmptyError:
                return done
            task.execute()
            q.delete(task)
            done += 1
