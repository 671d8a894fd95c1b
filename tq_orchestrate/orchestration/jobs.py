"""The block pipeline: one run uploads one block, partitioned by block id.

Deprecated: prefer the block assets (:func:`.assets.build_block_assets` and
:func:`.chain.build_asset_chain_sensor`), which show each block's drain state in
the asset catalog. This op job keeps working.

Runs use the in-process executor by default: shards then upload one after
another, each concurrently inside its ``upload_shard`` op (threads or the fast
engine, plus ``upload_processes`` processes), and a multiprocess step would cost
seconds of start-up. For long shards on a big machine, pass
``executor_def=dg.multiprocess_executor`` to upload the shards in parallel
processes.
The job needs a :class:`~.resources.TaskQueueResource` under the key
``task_queue``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from .ops import generate_shards, record_block, upload_shard

RESOURCE_KEY = "task_queue"
"""The resource key the ops and sensors use for the queue."""


def block_partitions(blocks: Sequence[str] | dg.PartitionsDefinition) -> dg.PartitionsDefinition:
    """Static partitions over ``blocks`` (in chain order); a PartitionsDefinition passes through."""
    if isinstance(blocks, dg.PartitionsDefinition):
        return blocks
    keys = list(blocks)
    if not keys or len(set(keys)) != len(keys):
        raise ValueError(f"blocks must be a non-empty sequence of distinct ids, got {keys!r}")
    return dg.StaticPartitionsDefinition(keys)


def build_block_job(
    name: str,
    *,
    blocks: Sequence[str] | dg.PartitionsDefinition,
    task_factory: str,
    task_count: str,
    factory_params: Mapping[str, str] | None = None,
    shard_size: int = 50_000,
    max_shards: int = 256,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    executor_def: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.JobDefinition:
    """A job whose partition ``k`` shards block ``k``'s tasks and uploads them.

    ``task_factory`` and ``task_count`` name callables as ``"module:function"``
    (see :mod:`.ops`); they, ``factory_params`` and the shard sizes become the default op config,
    which a person can still edit in the launchpad.
    """
    op_config = {
        "task_factory": task_factory,
        "task_count": task_count,
        "factory_params": dict(factory_params or {}),
        "shard_size": shard_size,
        "max_shards": max_shards,
    }

    @dg.job(
        name=name,
        description=description or "Upload one block's tasks to the queue (partition = block id).",
        partitions_def=block_partitions(blocks),
        config={"ops": {"generate_shards": {"config": op_config}}},
        executor_def=executor_def,
        tags=dict(tags or {}),
    )
    def block_job() -> None:
        block, shards = generate_shards()
        record_block(block, shards.map(upload_shard).collect())

    return block_job
