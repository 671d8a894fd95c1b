"""The example deployment as assets: volume -> cumsum_upload -> cumsum_blocks -> verified.

``build_definitions`` is what ``defs`` (in ``definitions/``) and ``tqo demo``
use, so the demo runs exactly the definitions ``dagster dev`` shows.
"""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from ..assets import BlockAssets, BlockSpec, build_block_assets
from ..chain import build_asset_chain_sensor
from ..jobs import RESOURCE_KEY
from ..resources import TaskQueueResource
from .volume import Layout, block_key, make_volume, verify

NAME = "cumsum"
"""Prefix of the block assets: ``cumsum_upload``, ``cumsum_blocks``; the sensor ``cumsum_chain``."""
TASKS_MODULE = f"{__package__}.tasks"
VOLUME = "volume"
VERIFIED = "verified"
GROUP = "cumsum_example"

ROOT_ENV = "TQO_EXAMPLE_DIR"
BLOCKS_ENV = "TQO_EXAMPLE_BLOCKS"
QUEUE_ENV = "TQO_QUEUE_URL"


class VolumeConfig(dg.Config):
    """Size of the example volume (the block count is fixed by the partitions)."""

    block_depth: int = Field(default=8, ge=1, description="z-slices per block.")
    height: int = Field(default=256, ge=1, description="y size of the volume.")
    width: int = Field(default=256, ge=1, description="x size of the volume.")
    tile: int = Field(default=32, ge=1, description="Tile edge: one task per (y, x) tile per block.")
    seed: int = Field(default=0, description="Random seed of the volume's values.")


def _volume_asset(root: str, blocks: int) -> dg.AssetsDefinition:
    @dg.asset(name=VOLUME, group_name=GROUP, kinds={"numpy"}, description="A random volume in z-slab blocks.")
    def volume(context: dg.AssetExecutionContext, config: VolumeConfig) -> dg.MaterializeResult[None]:
        layout = Layout(blocks, config.block_depth, config.height, config.width, config.tile)
        make_volume(root, layout, config.seed)
        tasks = len(layout.tiles())
        context.log.info(f"volume {layout.shape} under {root}: {blocks} blocks x {tasks} tasks")
        metadata: dict[str, Any] = {"shape": str(layout.shape), "root": root, "tasks per block": tasks}
        return dg.MaterializeResult(metadata=metadata)

    return volume


def _verified_asset(root: str, blocks: BlockAssets) -> dg.AssetsDefinition:
    @dg.asset(
        name=VERIFIED,
        deps=[blocks.blocks_key],
        group_name=GROUP,
        kinds={"numpy"},
        automation_condition=dg.AutomationCondition.eager(),
        description="Output == np.cumsum(volume, axis=0); materializes by itself once every block ran.",
    )
    def verified() -> dg.MaterializeResult[None]:
        ok, message = verify(root)
        if not ok:
            raise dg.Failure(message)
        return dg.MaterializeResult(metadata={"result": message})

    return verified


def build_definitions(
    *,
    root: str,
    blocks: int = 4,
    queue: TaskQueueResource | None = None,
    shard_size: int = 50_000,
    sensor_interval_seconds: int = 1,
    tick_budget_seconds: float = 4.5,
    poll_seconds: float = 0.1,
    automation_interval_seconds: int = 5,
) -> dg.Definitions:
    """The example's Definitions for a volume under ``root`` with ``blocks`` blocks."""
    root = os.path.abspath(root)
    spec = BlockSpec(
        name=NAME,
        blocks=[block_key(i) for i in range(blocks)],
        task_factory=f"{TASKS_MODULE}:task_factory",
        task_count=f"{TASKS_MODULE}:task_count",
        factory_params={"root": root},
        shard_size=shard_size,
        deps=[VOLUME],
        group_name=GROUP,
    )
    block_assets = build_block_assets(spec)
    verified = _verified_asset(root, block_assets)
    resource = queue or TaskQueueResource(queue_url=f"sqlite://{os.path.join(root, 'queue.db')}")
    chain = build_asset_chain_sensor(
        block_assets,
        minimum_interval_seconds=sensor_interval_seconds,
        tick_budget_seconds=tick_budget_seconds,
        poll_seconds=poll_seconds,
    )
    automation = dg.AutomationConditionSensorDefinition(
        f"{NAME}_automation",
        target=dg.AssetSelection.assets(verified),
        minimum_interval_seconds=automation_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Materializes `verified` once every block ran (Dagster's default sensor waits 30 s).",
    )
    return dg.Definitions(
        assets=[_volume_asset(root, blocks), *block_assets.assets(), verified],
        asset_checks=list(block_assets.checks),
        jobs=[block_assets.job],
        sensors=[chain, automation],
        resources={RESOURCE_KEY: resource},
    )


def definitions_from_env(environ: Mapping[str, str] | None = None) -> dg.Definitions:
    """Definitions configured by environment variables, with embedded-queue defaults.

    ``TQO_EXAMPLE_DIR`` (default ``.tqo/example``), ``TQO_EXAMPLE_BLOCKS``
    (default 4) and ``TQO_QUEUE_URL`` (read by Dagster at run time through
    ``dg.EnvVar``; default an embedded queue in the example directory).
    """
    env = dict(os.environ if environ is None else environ)
    root = os.path.abspath(env.get(ROOT_ENV, os.path.join(".tqo", "example")))
    queue = TaskQueueResource(queue_url=dg.EnvVar(QUEUE_ENV)) if QUEUE_ENV in env else None
    return build_definitions(root=root, blocks=int(env.get(BLOCKS_ENV, "4")), queue=queue)
