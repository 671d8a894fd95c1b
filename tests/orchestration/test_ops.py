"""The block job's ops, run with execute_in_process against an embedded queue."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tq_orchestrate import TaskQueue
from tq_orchestrate.errors import ConfigurationError
from tq_orchestrate.orchestration.drain import Baseline
from tq_orchestrate.orchestration.ops import BASELINE_KEY, ShardTasks, resolve_callable, shard_ranges

from .block_tasks import BlockMarkTask, executed
from .conftest import OWNERS_BETA, TASKS, Pipeline

pytestmark = pytest.mark.filterwarnings(OWNERS_BETA)


def step_metadata(result: Any, step: str) -> dict[str, Any]:
    """Output metadata of ``step`` as plain values."""
    [event] = [e for e in result.all_events if e.step_key == step and e.is_successful_output]
    return {k: getattr(v, "value", v) for k, v in event.step_output_data.metadata.items()}


@pytest.mark.parametrize(
    ("total", "size", "cap"), [(0, 5, 3), (1, 5, 3), (10, 5, 3), (11, 5, 3), (100, 7, 4), (9, 1, 100)]
)
def test_shard_ranges_cover_everything_once(total: int, size: int, cap: int) -> None:
    ranges = shard_ranges(total, size, cap)
    covered = [i for start, stop in ranges for i in range(start, stop)]
    assert covered == list(range(total))
    assert len(ranges) <= cap
    if ranges:
        sizes = [stop - start for start, stop in ranges]
        assert max(sizes) - min(sizes) <= 1
        assert len(ranges) == min(cap, -(-total // size))


def test_resolve_callable_names_the_problem() -> None:
    assert resolve_callable(f"{TASKS}:task_count")("b", path="x", n="3") == 3
    with pytest.raises(ConfigurationError, match="expected 'module:function'"):
        resolve_callable("no_colon_here")
    with pytest.raises(ConfigurationError, match="cannot load"):
        resolve_callable("tests.orchestration.no_such_module:f")
    with pytest.raises(ConfigurationError, match="cannot load"):
        resolve_callable(f"{TASKS}:missing")
    with pytest.raises(ConfigurationError, match="not callable"):
        resolve_callable(f"{TASKS}:NOT_CALLABLE")


def test_shard_tasks_slice_pickle_and_generate_lazily() -> None:
    shard = ShardTasks(f"{TASKS}:task_factory", "b1", 10, 20, (("path", "p"), ("n", "99")))
    assert len(shard) == 10
    part = pickle.loads(pickle.dumps(shard[2:5]))
    assert (part.start, part.stop, len(part)) == (12, 15, 3)
    assert [t.index for t in part] == [12, 13, 14]
    assert all(isinstance(t, BlockMarkTask) and t.block == "b1" for t in part)
    assert len(shard[8:100]) == 2 and len(shard[5:3]) == 0
    with pytest.raises(TypeError):
        shard[::2]


def test_block_run_uploads_every_task_and_records_metadata(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=7, shard_size=3)
    result = pipe.job.execute_in_process(partition_key="b1", instance=instance)
    assert result.success
    shard_steps = sorted(e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS")
    assert shard_steps == [
        "generate_shards",
        "record_block",
        "upload_shard[shard_0]",
        "upload_shard[shard_1]",
        "upload_shard[shard_2]",
    ]
    meta = step_metadata(result, "record_block")
    assert meta["tasks inserted"] == 7
    assert meta["shards"] == 3
    assert meta["block"] == "b1"
    assert meta["queue"] == pipe.url
    assert meta["seconds"] > 0 and meta["tasks/s"] > 0
    assert Baseline.from_dict(meta[BASELINE_KEY]) == Baseline(expected=7, completed=0, dead=0)
    counts = pipe.resource.counts()
    assert (counts.visible, counts.inserted) == (7, 7)
    assert pipe.work() == 7
    assert sorted(executed(pipe.log)) == [("b1", i) for i in range(7)]


def test_baseline_is_read_before_the_upload(make_pipeline: Callable[..., Pipeline], instance: Any) -> None:
    pipe = make_pipeline(tasks_per_block=4)
    assert pipe.job.execute_in_process(partition_key="b0", instance=instance).success
    assert pipe.work() == 4
    result = pipe.job.execute_in_process(partition_key="b1", instance=instance)
    meta = step_metadata(result, "record_block")
    assert Baseline.from_dict(meta[BASELINE_KEY]) == Baseline(expected=4, completed=4, dead=0)


def test_a_factory_that_disagrees_with_its_count_fails_the_run(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=6, shard_size=3, task_factory=f"{TASKS}:short_factory")
    result = pipe.job.execute_in_process(partition_key="b0", instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "record_block"
    assert "task_count said 6 tasks but 4 were inserted" in failure.event_specific_data.error.message


def test_an_empty_block_succeeds_with_nothing_inserted(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=0)
    result = pipe.job.execute_in_process(partition_key="b2", instance=instance)
    assert result.success
    assert step_metadata(result, "record_block")["tasks inserted"] == 0
    assert pipe.resource.counts().inserted == 0


def test_unpartitioned_launch_needs_a_block(make_pipeline: Callable[..., Pipeline]) -> None:
    pipe = make_pipeline()
    config = pipe.job.partitioned_config.get_run_config_for_partition_key("b0")
    op_config = config["ops"]["generate_shards"]["config"]
    result = pipe.job.execute_in_process(
        run_config={"ops": {"generate_shards": {"config": {**op_config, "block": "b2"}}}}
    )
    assert result.success
    assert step_metadata(result, "record_block")["block"] == "b2"


@pytest.mark.slow
def test_upload_processes_generate_their_own_share(
    make_pipeline: Callable[..., Pipeline], instance: Any
) -> None:
    pipe = make_pipeline(tasks_per_block=40, shard_size=40, resource={"upload_processes": 2})
    result = pipe.job.execute_in_process(partition_key="b0", instance=instance)
    assert result.success
    assert step_metadata(result, "record_block")["tasks inserted"] == 40
    assert pipe.work() == 40
    assert sorted(i for _, i in executed(pipe.log)) == list(range(40))


@pytest.mark.slow
def test_shards_can_run_in_parallel_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from . import parallel_job

    url = f"sqlite://{tmp_path / 'queue.db'}"
    log = tmp_path / "executed.txt"
    monkeypatch.setenv(parallel_job.QUEUE_ENV, url)
    job = dg.reconstructable(parallel_job.parallel_blocks)
    config = job.get_definition().partitioned_config.get_run_config_for_partition_key("b0")
    config["ops"]["generate_shards"]["config"]["factory_params"] = {"path": str(log), "n": "6"}
    with dg.instance_for_test() as instance:
        result = dg.execute_job(job, instance=instance, run_config=config, tags={"dagster/partition": "b0"})
        assert result.success
        starts = [e for e in result.all_events if e.event_type_value == "STEP_START"]
        pids = {e.pid for e in starts if e.step_key.startswith("upload_shard")}
    assert len(pids) == 2 and os.getpid() not in pids  # one process per shard
    with TaskQueue(url, progress=False) as queue:
        assert queue.counts().visible == 6
