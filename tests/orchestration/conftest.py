"""Shared fixtures of the Dagster tests: a block job over test tasks on an embedded queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tq_orchestrate import QueueEmptyError, TaskQueue
from tq_orchestrate.orchestration.jobs import RESOURCE_KEY, build_block_job
from tq_orchestrate.orchestration.resources import TaskQueueResource
from tq_orchestrate.orchestration.sensors import (
    build_block_chain_sensor,
    build_failure_sensor,
    build_series_schedule,
)

TASKS = "tests.orchestration.block_tasks"
BLOCKS = ["b0", "b1", "b2"]

OWNERS_BETA = "ignore:Parameter `owners` of initializer:dagster_shared.utils.warnings.BetaWarning"
"""Dagster 1.13 warns about its own use of a beta parameter when it resolves sensors."""


@dataclass
class Pipeline:
    """A test deployment: definitions, the pieces, the queue and the file tasks write to."""

    defs: Any
    job: Any
    sensor: Any
    schedule: Any
    failure_sensor: Any
    resource: TaskQueueResource
    url: str
    log: Path
    reports: list[str]

    def queue(self) -> TaskQueue:
        return TaskQueue(self.url, progress=False)

    def work(self, limit: int | None = None) -> int:
        """Execute and delete up to ``limit`` tasks in this process; return how many ran."""
        done = 0
        with self.queue() as q:
            while limit is None or done < limit:
                try:
                    task = q.lease(seconds=30)
                except QueueEmptyError:
                    break
                task.execute()
                q.delete(task)
                done += 1
        return done


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[..., Pipeline]:
    """Build a Pipeline; keyword arguments adjust the resource, job and sensor."""

    def make(
        *,
        tasks_per_block: int = 5,
        task_factory: str = f"{TASKS}:task_factory",
        blocks: list[str] | None = None,
        resource: dict[str, Any] | None = None,
        sensor: dict[str, Any] | None = None,
        shard_size: int = 2,
    ) -> Pipeline:
        url = f"sqlite://{tmp_path / 'queue.db'}"
        log = tmp_path / "executed.txt"
        job = build_block_job(
            "blocks",
            blocks=blocks or BLOCKS,
            task_factory=task_factory,
            task_count=f"{TASKS}:task_count",
            factory_params={"path": str(log), "n": str(tasks_per_block)},
            shard_size=shard_size,
        )
        sensor_options = {"tick_budget_seconds": 0.5, "poll_seconds": 0.02, **(sensor or {})}
        chain = build_block_chain_sensor(job, **sensor_options)
        reports: list[str] = []
        failures = build_failure_sensor([job], report=reports.append)
        schedule = build_series_schedule(job, cron_schedule="0 2 * * *")
        res = TaskQueueResource(queue_url=url, **{"drain_lag_seconds": 0.1, **(resource or {})})
        defs = dg.Definitions(
            jobs=[job], sensors=[chain, failures], schedules=[schedule], resources={RESOURCE_KEY: res}
        )
        resolved = defs.resolve_job_def(job.name)
        return Pipeline(defs, resolved, chain, schedule, failures, res, url, log, reports)

    return make


@pytest.fixture
def instance() -> Iterator[Any]:
    """A fresh in-memory Dagster instance."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst
