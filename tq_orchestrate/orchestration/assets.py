"""Blocks as Dagster assets: one partition per block, materialized only when its tasks ran.

:func:`build_block_assets` turns a :class:`BlockSpec` into

* ``<name>_upload``: a partitioned asset whose run uploads one block's tasks
  (metadata: tasks, shards, seconds, tasks/s, queue, baseline counts). It means
  "queued", not "done";
* ``<name>_blocks``: a partitioned asset with no run of its own. The chain
  sensor (:mod:`.chain`) reports its materialization once the block's queue
  drained (every task executed and deleted), with drain seconds, completions,
  dead letters and readings;
* two asset checks on ``<name>_blocks``, evaluated for every block: ``dead_letters``
  (blocking, severity ERROR, count and a sample) and ``drained`` (completed >=
  inserted where the backend counts completions). The sensor reports them once
  per block (metadata ``block`` names it); executing them from the UI re-reads
  the queue for the newest uploaded block. (The checks are not partitioned:
  partitioned checks are a preview feature in Dagster 1.13.);
* ``<name>_upload_job``: the asset job the sensor launches (in-process executor).

The callables are named ``"module:function"`` (see :mod:`.ops`)::

    def task_count(block: str, **params: str) -> int: ...
    def task_factory(block: str, start: int, stop: int, **params: str) -> Iterable[task]: ...
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from .._queue import TaskQueue
from ..backends.base import Counts, DeadLetter
from ..ledger import LedgerStore
from .drain import Baseline, DrainStatus, _describe
from .exact import ledger_metadata
from .jobs import RESOURCE_KEY, block_partitions
from .ops import BASELINE_KEY, ShardTasks, resolve_callable, shard_ranges
from .resources import TaskQueueResource
from .sensors import SERIES_TAG

DEAD_LETTERS_CHECK = "dead_letters"
DRAINED_CHECK = "drained"


@dataclass(frozen=True)
class BlockSpec:
    """What a chain of blocks is: its tasks, its block keys (in order) and its upstream assets."""

    name: str
    """Prefix of the asset and job names (``<name>_upload``, ``<name>_blocks``)."""
    blocks: Sequence[str]
    """Block keys in chain order (one partition each)."""
    task_factory: str
    task_count: str
    factory_params: Mapping[str, str] = field(default_factory=dict)
    shard_size: int = 50_000
    max_shards: int = 256
    deps: Sequence[str] = ()
    """Upstream assets of the upload asset (e.g. the input data)."""
    group_name: str | None = None


@dataclass(frozen=True)
class BlockAssets:
    """The definitions :func:`build_block_assets` made; pass :meth:`definitions` to ``dg.Definitions``."""

    spec: BlockSpec
    partitions: dg.PartitionsDefinition
    upload: dg.AssetsDefinition
    blocks: dg.AssetSpec
    checks: tuple[dg.AssetChecksDefinition, ...]
    job: Any
    """The upload job (an unresolved asset job: ``dg.define_asset_job``)."""

    @property
    def upload_key(self) -> dg.AssetKey:
        return self.upload.key

    @property
    def blocks_key(self) -> dg.AssetKey:
        return self.blocks.key

    def assets(self) -> list[Any]:
        """The two assets (for ``dg.Definitions(assets=...)``)."""
        return [self.upload, self.blocks]


@dataclass(frozen=True)
class UploadReport:
    """What one block's upload did."""

    block: str
    baseline: Baseline
    shards: int
    started_at: float
    seconds: float

    def metadata(self, queue_url: str, series: str | None) -> dict[str, Any]:
        inserted = self.baseline.expected
        return {
            "tasks": inserted,
            "shards": self.shards,
            "upload seconds": round(self.seconds, 3),
            "tasks/s": round(inserted / self.seconds, 1) if self.seconds > 0 else 0.0,
            "queue": queue_url,
            "series": series or "started by hand (the chain sensor names it)",
            "started at": dg.MetadataValue.timestamp(self.started_at),
            BASELINE_KEY: dg.MetadataValue.json(self.baseline.to_dict()),
        }


def upload_block(
    queue: TaskQueue, spec: BlockSpec, block: str, processes: int = 1, ledger: LedgerStore | None = None
) -> UploadReport:
    """Count, generate and upload ``block``'s tasks shard by shard; Failure if counts disagree.

    With a ``ledger`` each task carries its identity ``(block, index)`` and the
    block's total is recorded once every task is queued.
    """
    started_at = time.time()
    began = time.perf_counter()
    params = dict(spec.factory_params)
    total = int(resolve_callable(spec.task_count)(block, **params))
    counts = queue.counts()
    baseline = Baseline(
        expected=total, completed=counts.completed, dead=counts.dead, ledger=ledger is not None
    )
    ranges = shard_ranges(total, spec.shard_size, spec.max_shards)
    inserted = 0
    for start, stop in ranges:
        tasks = ShardTasks(
            spec.task_factory, block, start, stop, tuple(sorted(params.items())), ledger is not None
        )
        inserted += queue.insert_all(tasks, total=len(tasks), parallel=processes, progress=False)
    if inserted != total:
        raise dg.Failure(
            f"block {block}: task_count said {total} tasks but {inserted} were inserted; "
            "fix the task factory so both agree",
            metadata={"tasks inserted": inserted, "expected tasks": total},
        )
    if ledger is not None:
        ledger.set_total(block, inserted)
    return UploadReport(block, baseline, len(ranges), started_at, time.perf_counter() - began)


def build_block_assets(spec: BlockSpec) -> BlockAssets:
    """Partitioned upload and blocks assets, their checks and the upload job for ``spec``."""
    partitions = block_partitions(spec.blocks)
    upload_key = dg.AssetKey(f"{spec.name}_upload")
    blocks_key = dg.AssetKey(f"{spec.name}_blocks")

    @dg.asset(
        key=upload_key,
        partitions_def=partitions,
        deps=list(spec.deps),
        group_name=spec.group_name,
        kinds={"python"},
        description="Upload one block's tasks to the queue. Materialized = queued, not yet executed.",
    )
    def upload(
        context: dg.AssetExecutionContext, task_queue: TaskQueueResource
    ) -> dg.MaterializeResult[None]:
        queue = task_queue.run_queue()
        ledger = task_queue.open_ledger()
        try:
            report = upload_block(queue, spec, context.partition_key, task_queue.upload_processes, ledger)
        finally:
            if ledger is not None:
                ledger.close()
        tasks = report.baseline.expected
        context.log.info(f"block {report.block}: {tasks} tasks in {report.shards} shard(s)")
        series = context.run.tags.get(SERIES_TAG)
        return dg.MaterializeResult(metadata=report.metadata(task_queue.queue_url, series))

    blocks = dg.AssetSpec(
        key=blocks_key,
        deps=[upload_key],
        partitions_def=partitions,
        group_name=spec.group_name,
        description=(
            "A block whose tasks were all executed. Reported by the chain sensor once the queue drained; "
            "materialize the first block of the upload asset to start a new series."
        ),
    )
    checks = (_dead_letters_check(blocks_key, upload_key), _drained_check(blocks_key, upload_key))
    job = dg.define_asset_job(
        f"{spec.name}_upload_job",
        selection=[upload_key],
        executor_def=dg.in_process_executor,
        description="Upload one block's tasks (the chain sensor launches it block after block).",
    )
    return BlockAssets(spec, partitions, upload, blocks, checks, job)


# -- checks -----------------------------------------------------------------------------------------


def dead_letters_evaluation(
    key: dg.AssetKey, block: str, dead: int, sample: Sequence[DeadLetter]
) -> dg.AssetCheckEvaluation:
    """The ``dead_letters`` check of ``block``: passes when no task of the block was dead-lettered."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=DEAD_LETTERS_CHECK,
        passed=dead == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        blocking=True,
        description=_dead_text(block, dead, sample),
        metadata=_dead_metadata(block, dead, sample),
    )


def drained_evaluation(
    key: dg.AssetKey, block: str, baseline: Baseline, counts: Counts, reason: str, passed: bool
) -> dg.AssetCheckEvaluation:
    """The ``drained`` check of ``block``: completed >= inserted (where completions are counted)."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=DRAINED_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"block {block}: {reason}",
        metadata=_drained_metadata(block, baseline, counts),
    )


def status_evaluations(key: dg.AssetKey, block: str, baseline: Baseline, status: DrainStatus) -> list[Any]:
    """Both checks' evaluations for a finished (done or failed) drain ``status``.

    With a ledger, ``drained`` carries its figures (completed/inserted, missing and a
    sample); a count-based fallback passes with severity WARN.
    """
    lost = status.failed and status.dead == 0
    fallback = status.ledger is not None and status.ledger["mode"] == "fallback"
    drained = dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=DRAINED_CHECK,
        passed=not lost and not fallback,
        severity=dg.AssetCheckSeverity.WARN if fallback else dg.AssetCheckSeverity.ERROR,
        description=f"block {block}: {status.reason}",
        metadata={**_drained_metadata(block, baseline, status.counts), **ledger_asset_metadata(status)},
    )
    return [dead_letters_evaluation(key, block, status.dead, status.dead_sample), drained]


def stalled_evaluation(key: dg.AssetKey, block: str, baseline: Baseline, status: DrainStatus) -> Any:
    """A failing WARN ``drained`` evaluation for a block still waiting on tasks its ledger lacks."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=DRAINED_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"block {block} stalled: {status.reason}",
        metadata={
            **_drained_metadata(block, baseline, status.counts),
            **ledger_asset_metadata(status),
            "stalled": True,
        },
    )


def ledger_asset_metadata(status: DrainStatus) -> dict[str, Any]:
    """The ledger's figures of ``status`` as asset metadata (empty without a ledger)."""
    return {
        k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in ledger_metadata(status).items()
    }


def _dead_text(block: str, dead: int, sample: Sequence[DeadLetter]) -> str:
    if dead == 0:
        return f"block {block}: no task dead-lettered"
    shown = "; ".join(_describe(d) for d in sample)
    return f"block {block}: {dead} task(s) dead-lettered{', e.g. ' + shown if shown else ''}"


def _dead_metadata(block: str, dead: int, sample: Sequence[DeadLetter]) -> dict[str, Any]:
    return {
        "block": block,
        "dead letters": dead,
        "sample": dg.MetadataValue.json([_letter(d) for d in sample]),
    }


def _letter(letter: DeadLetter) -> dict[str, Any]:
    body = letter.body if len(letter.body) <= 300 else letter.body[:300] + "..."
    return {"id": letter.message_id, "receives": letter.receive_count, "error": letter.error, "body": body}


def _drained_metadata(block: str, baseline: Baseline, counts: Counts) -> dict[str, Any]:
    counted = counts.completed is not None and baseline.completed is not None
    completed = (counts.completed or 0) - (baseline.completed or 0) if counted else None
    return {
        "block": block,
        "inserted": baseline.expected,
        "completed": "not counted by this backend" if completed is None else completed,
        "pending": counts.pending,
    }


def _latest_upload(instance: dg.DagsterInstance, upload_key: dg.AssetKey) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(upload_key, limit=1).records
    return records[0] if records else None


def baseline_of(record: dg.EventLogRecord) -> Baseline | None:
    """The Baseline an upload materialization recorded (None if it has none)."""
    materialization = record.asset_materialization
    value = materialization.metadata.get(BASELINE_KEY) if materialization is not None else None
    if isinstance(value, dg.JsonMetadataValue) and isinstance(value.data, dict):
        return Baseline.from_dict(value.data)
    return None


def _check_inputs(
    context: dg.AssetCheckExecutionContext, upload_key: dg.AssetKey, queue: TaskQueueResource
) -> tuple[str, Baseline, Counts]:
    record = _latest_upload(context.instance, upload_key)
    baseline = baseline_of(record) if record is not None else None
    if record is None or baseline is None or record.partition_key is None:
        raise dg.Failure(f"no block was uploaded yet: materialize {upload_key.to_user_string()} first")
    return record.partition_key, baseline, queue.counts()


def _dead_letters_check(key: dg.AssetKey, upload_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name=DEAD_LETTERS_CHECK,
        blocking=True,
        description="No task of the block was dead-lettered since its upload (ERROR; blocks downstream).",
    )
    def dead_letters(
        context: dg.AssetCheckExecutionContext, task_queue: TaskQueueResource
    ) -> dg.AssetCheckResult:
        block, baseline, counts = _check_inputs(context, upload_key, task_queue)
        dead = max(0, (counts.dead or 0) - (baseline.dead or 0))
        sample = task_queue.dead_letters(task_queue.dead_letter_sample) if dead else []
        return dg.AssetCheckResult(
            passed=dead == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=_dead_text(block, dead, sample),
            metadata=_dead_metadata(block, dead, sample),
        )

    return dead_letters


def _drained_check(key: dg.AssetKey, upload_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name=DRAINED_CHECK,
        description="Every task inserted for the block completed (where the backend counts completions).",
    )
    def drained(context: dg.AssetCheckExecutionContext, task_queue: TaskQueueResource) -> dg.AssetCheckResult:
        block, baseline, counts = _check_inputs(context, upload_key, task_queue)
        completed = _drained_metadata(block, baseline, counts)["completed"]
        passed = completed >= baseline.expected if isinstance(completed, int) else counts.pending == 0
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"block {block}: {completed} of {baseline.expected} tasks completed",
            metadata=_drained_metadata(block, baseline, counts),
        )

    return drained


__all__ = [
    "DEAD_LETTERS_CHECK",
    "DRAINED_CHECK",
    "RESOURCE_KEY",
    "SERIES_TAG",
    "BlockAssets",
    "BlockSpec",
    "UploadReport",
    "baseline_of",
    "build_block_assets",
    "dead_letters_evaluation",
    "drained_evaluation",
    "stalled_evaluation",
    "status_evaluations",
    "upload_block",
]
