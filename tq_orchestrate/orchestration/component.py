"""Block assets as a Dagster Component, configured in YAML (``dg`` projects).

In a ``dg`` project, ``defs/<folder>/defs.yaml``::

    type: tq_orchestrate.orchestration.component.TaskQueueBlocks
    attributes:
      name: cumsum
      queue_url: sqlite://.tqo/queue.db
      task_factory: my_pkg.tasks:task_factory
      task_count: my_pkg.tasks:task_count
      blocks: ["0000", "0001", "0002"]
      factory_params: {root: /data/volume}
      shard_size: 50000
      deps: [volume]

It builds what :func:`~.assets.build_block_assets` and
:func:`~.chain.build_asset_chain_sensor` build, plus the queue resource under
``task_queue`` (so one code location holds one queue).
"""

from dataclasses import dataclass, field

import dagster as dg

from .assets import BlockSpec, build_block_assets
from .chain import build_asset_chain_sensor
from .jobs import RESOURCE_KEY
from .resources import TaskQueueResource


@dataclass
class TaskQueueBlocks(dg.Component, dg.Resolvable):
    """A chain of blocks on a task queue: upload and blocks assets, checks, the chain sensor."""

    name: str
    queue_url: str
    task_factory: str
    task_count: str
    blocks: list[str]
    factory_params: dict[str, str] = field(default_factory=dict)
    shard_size: int = 50_000
    deps: list[str] = field(default_factory=list)
    group_name: str | None = None
    sensor_interval_seconds: int = 1

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The Definitions of the chain (``context`` is unused)."""
        spec = BlockSpec(
            name=self.name,
            blocks=self.blocks,
            task_factory=self.task_factory,
            task_count=self.task_count,
            factory_params=self.factory_params,
            shard_size=self.shard_size,
            deps=self.deps,
            group_name=self.group_name,
        )
        blocks = build_block_assets(spec)
        sensor = build_asset_chain_sensor(blocks, minimum_interval_seconds=self.sensor_interval_seconds)
        return dg.Definitions(
            assets=blocks.assets(),
            asset_checks=list(blocks.checks),
            jobs=[blocks.job],
            sensors=[sensor],
            resources={RESOURCE_KEY: TaskQueueResource(queue_url=self.queue_url)},
        )
