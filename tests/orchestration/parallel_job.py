"""A block job with the multiprocess executor, loadable by Dagster's child processes."""

from __future__ import annotations

import dagster as dg

from tq_orchestrate.orchestration.jobs import RESOURCE_KEY, build_block_job
from tq_orchestrate.orchestration.resources import TaskQueueResource

QUEUE_ENV = "TQO_TEST_PARALLEL_QUEUE_URL"


def parallel_blocks() -> dg.JobDefinition:
    """Shards as parallel processes; the queue URL comes from the environment."""
    job = build_block_job(
        "parallel_blocks",
        blocks=["b0"],
        task_factory="tests.orchestration.block_tasks:task_factory",
        task_count="tests.orchestration.block_tasks:task_count",
        shard_size=3,
        executor_def=dg.multiprocess_executor.configured({"max_concurrent": 2}),
    )
    resource = TaskQueueResource(queue_url=dg.EnvVar(QUEUE_ENV))
    return dg.Definitions(jobs=[job], resources={RESOURCE_KEY: resource}).resolve_job_def(job.name)
