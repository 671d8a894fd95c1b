"""The example deployment: jobs, sensors and schedule for the z-cumsum volume.

``build_definitions`` is what ``defs`` (in ``__init__``) and ``tqo demo`` use, so
the demo runs exactly the definitions ``dagster dev`` shows.
"""

import os
from typing import Any

import dagster as dg
from pydantic import Field

from tq_orchestrate.orchestration.jobs import RESOURCE_KEY, build_block_job
from tq_orchestrate.orchestration.resources import TaskQueueResource
from tq_orchestrate.orchestration.sensors import (
    build_block_chain_sensor,
    build_failure_sensor,
    build_series_schedule,
)

from .volume import Layout, block_key, make_volume, verify

BLOCK_JOB = "cumsum_blocks"
TASKS_MODULE = f"{__package__}.tasks"

ROOT_ENV = "TQO_EXAMPLE_DIR"
BLOCKS_ENV = "TQO_EXAMPLE_BLOCKS"
QUEUE_ENV = "TQO_QUEUE_URL"


class VolumeConfig(dg.Config):
    """Size of the example volume (the block count is fixed by the job's partitions)."""

    block_depth: int = Field(default=8, ge=1, description="z-slices per block.")
    height: int = Field(default=256, ge=1, description="y size of the volume.")
    width: int = Field(default=256, ge=1, description="x size of the volume.")
    tile: int = Field(default=32, ge=1, description="Tile edge: one task per (y, x) tile per block.")
    seed: int = Field(default=0, description="Random seed of the volume's values.")


def _make_volume_job(root: str, blocks: int) -> dg.JobDefinition:
    @dg.op(name="write_volume", description="Write a random volume as z-slab blocks (and clear old output).")
    def make_volume_op(context: dg.OpExecutionContext, config: VolumeConfig) -> dg.Output[None]:
        layout = Layout(blocks, config.block_depth, config.height, config.width, config.tile)
        volume = make_volume(root, layout, config.seed)
        tasks = blocks * len(layout.tiles())
        context.log.info(f"volume {volume.shape} written under {root}: {tasks} tasks in {blocks} blocks")
        return dg.Output(None, metadata={"shape": str(volume.shape), "root": root, "tasks": tasks})

    @dg.job(name="make_volume", description="Create the example's input volume.")
    def make_volume_job() -> None:
        make_volume_op()

    return make_volume_job


def _verify_job(root: str) -> dg.JobDefinition:
    @dg.op(name="check_output", description="Check the output against np.cumsum(volume, axis=0).")
    def verify_op() -> dg.Output[bool]:
        ok, message = verify(root)
        if not ok:
            raise dg.Failure(message)
        return dg.Output(True, metadata={"result": message})

    @dg.job(name="verify_output", description="Compare the output with numpy's answer.")
    def verify_job() -> None:
        verify_op()

    return verify_job


def build_definitions(
    *,
    root: str,
    blocks: int = 4,
    queue: TaskQueueResource | None = None,
    shard_size: int = 50_000,
    sensor_interval_seconds: int = 15,
    tick_budget_seconds: float = 5.0,
    poll_seconds: float = 0.25,
) -> dg.Definitions:
    """The example's Definitions for a volume under ``root`` with ``blocks`` blocks."""
    root = os.path.abspath(root)
    block_job = build_block_job(
        BLOCK_JOB,
        blocks=[block_key(i) for i in range(blocks)],
        task_factory=f"{TASKS_MODULE}:task_factory",
        task_count=f"{TASKS_MODULE}:task_count",
        factory_params={"root": root},
        shard_size=shard_size,
        description="Upload one block's tile tasks (block k needs block k-1's output).",
    )
    resource = queue or TaskQueueResource(queue_url=f"sqlite://{os.path.join(root, 'queue.db')}")
    return dg.Definitions(
        jobs=[block_job, _make_volume_job(root, blocks), _verify_job(root)],
        sensors=[
            build_block_chain_sensor(
                block_job,
                minimum_interval_seconds=sensor_interval_seconds,
                tick_budget_seconds=tick_budget_seconds,
                poll_seconds=poll_seconds,
            ),
            build_failure_sensor([block_job]),
        ],
        schedules=[build_series_schedule(block_job, cron_schedule="0 2 * * *")],
        resources={RESOURCE_KEY: resource},
    )


def definitions_from_env(environ: dict[str, str] | None = None) -> dg.Definitions:
    """Definitions configured by environment variables, with embedded-queue defaults.

    ``TQO_EXAMPLE_DIR`` (default ``.tqo/example``), ``TQO_EXAMPLE_BLOCKS``
    (default 4) and ``TQO_QUEUE_URL`` (read by Dagster at run time through
    ``dg.EnvVar``; default an embedded queue in the example directory).
    """
    env: dict[str, Any] = dict(os.environ if environ is None else environ)
    root = os.path.abspath(env.get(ROOT_ENV, os.path.join(".tqo", "example")))
    queue = TaskQueueResource(queue_url=dg.EnvVar(QUEUE_ENV)) if QUEUE_ENV in env else None
    return build_definitions(root=root, blocks=int(env.get(BLOCKS_ENV, "4")), queue=queue)
