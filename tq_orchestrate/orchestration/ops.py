"""The ops of a block's upload run: shard the block, upload each shard, record the block.

Used by the deprecated op job (:mod:`.jobs`); the block assets (:mod:`.assets`)
reuse :class:`ShardTasks`, :func:`resolve_callable` and :func:`shard_ranges`.

``generate_shards`` asks the user's ``task_count`` callable how many tasks the
block has and cuts ``[0, count)`` into shard specs (small plain dicts). Each
``upload_shard`` calls the user's ``task_factory`` for its range and uploads
the tasks with :meth:`TaskQueue.insert_all` inside the op (threads, or
``upload_processes`` processes that each generate their own share). The
callables are named ``"module:function"`` so that specs stay plain data::

    def task_count(block: str, **params: str) -> int: ...
    def task_factory(block: str, start: int, stop: int, **params: str) -> Iterable[task]: ...

where ``params`` is the op config's ``factory_params`` (e.g. a data directory).

``record_block`` checks that every task went in and records the figures the
drain check needs (:class:`~.drain.Baseline`) as output metadata.

With ``TaskQueueResource(ledger_url=...)`` the ops stamp each task's identity
``(block, index)`` and ``record_block`` records the block total in the
completion ledger, as the block upload asset does; the op chain sensor
(:mod:`.sensors`) then finishes the block exactly (``docs/ledger.md``).
"""

import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg
from pydantic import Field

from .._upload import split_ranges
from ..errors import ConfigurationError
from ..ledger.identity import Identified
from .drain import Baseline
from .resources import TaskQueueResource

BASELINE_KEY = "tqo/baseline"
"""Output metadata key of ``record_block`` holding the block's Baseline as JSON."""


class BlockConfig(dg.Config):
    """Where a block's tasks come from and how the block is cut into shards."""

    task_factory: str = Field(
        description="'module:function' called as f(block, start, stop), yielding tasks start..stop-1."
    )
    task_count: str = Field(description="'module:function' called as f(block), returning its task count.")
    factory_params: dict[str, str] = Field(
        default_factory=dict,
        description="Keyword arguments (strings) passed to task_factory and task_count, e.g. a data path.",
    )
    shard_size: int = Field(
        default=50_000,
        ge=1,
        description="Tasks per shard: a few seconds of upload (embedded queue ~50k tasks/s).",
    )
    max_shards: int = Field(
        default=256, ge=1, description="Upper bound on shards per block; shards grow to stay under it."
    )
    block: str | None = Field(
        default=None, description="Block id for unpartitioned runs; partitioned runs use the partition key."
    )


def resolve_callable(spec: str) -> Callable[..., Any]:
    """Import ``"module:function"`` (dots allowed after the colon); ConfigurationError if it fails."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"expected 'module:function', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as e:
        raise ConfigurationError(f"cannot load {spec!r}: {e}") from e
    if not callable(target):
        raise ConfigurationError(f"{spec!r} is not callable")
    return target  # type: ignore[no-any-return]


def shard_ranges(total: int, shard_size: int, max_shards: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``range(total)``: at most ``max_shards``, near-equal."""
    if total <= 0:
        return []
    return split_ranges(total, min(max_shards, -(-total // shard_size)))


@dataclass(frozen=True)
class ShardTasks:
    """The tasks of ``[start, stop)`` of a block, generated on iteration.

    Sized and sliceable, and small when pickled, so ``insert_all(parallel=N)``
    hands each process a sub-range that it generates itself.
    """

    task_factory: str
    block: str
    start: int
    stop: int
    params: tuple[tuple[str, str], ...] = ()
    identify: bool = False
    """Wrap each task in :class:`~tq_orchestrate.ledger.Identified` (block, index) for the ledger."""

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key: slice) -> "ShardTasks":
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("ShardTasks supports contiguous slices only")
        lo, hi, _ = key.indices(len(self))
        return replace(self, start=self.start + lo, stop=self.start + max(lo, hi))

    def __iter__(self) -> Iterator[Any]:
        factory = resolve_callable(self.task_factory)
        tasks = factory(self.block, self.start, self.stop, **dict(self.params))
        if not self.identify:
            yield from tasks
            return
        for index, task in enumerate(tasks, self.start):
            yield Identified(task, self.block, index)


def _block_key(context: dg.OpExecutionContext, config: BlockConfig) -> str:
    if config.block is not None:
        return config.block
    if context.has_partition_key:
        return context.partition_key
    raise dg.Failure("no block: run a partition of the job or set the op config 'block'")


@dg.op(
    out={
        "block": dg.Out(dict, description="The block: key, expected task count, baseline queue counts."),
        "shards": dg.DynamicOut(dict, description="Shard specs: plain dicts naming a range of the block."),
    },
    description="Count the block's tasks, read the queue's baseline counts, emit one spec per shard.",
)
def generate_shards(
    context: dg.OpExecutionContext, config: BlockConfig, task_queue: TaskQueueResource
) -> Iterator[dg.Output[dict[str, Any]] | dg.DynamicOutput[dict[str, Any]]]:
    started_at = time.time()
    key = _block_key(context, config)
    total = int(resolve_callable(config.task_count)(key, **config.factory_params))
    counts = task_queue.run_queue().counts()
    ledger = task_queue.ledger_url is not None
    baseline = Baseline(expected=total, completed=counts.completed, dead=counts.dead, ledger=ledger)
    ranges = shard_ranges(total, config.shard_size, config.max_shards)
    context.log.info(f"block {key}: {total} tasks in {len(ranges)} shard(s)")
    yield dg.Output(
        {"block": key, "baseline": baseline.to_dict(), "started_at": started_at, "shards": len(ranges)},
        output_name="block",
    )
    for index, (start, stop) in enumerate(ranges):
        spec = {"block": key, "index": index, "start": start, "stop": stop, "identify": ledger}
        spec.update(task_factory=config.task_factory, params=sorted(config.factory_params.items()))
        yield dg.DynamicOutput(spec, output_name="shards", mapping_key=f"shard_{index}")


@dg.op(description="Generate one shard's tasks and upload them with the upload engine (threads/processes).")
def upload_shard(
    context: dg.OpExecutionContext, task_queue: TaskQueueResource, shard: dict[str, Any]
) -> dg.Output[dict[str, Any]]:
    params = tuple((str(k), str(v)) for k, v in shard.get("params", ()))
    identify = bool(shard.get("identify"))
    tasks = ShardTasks(shard["task_factory"], shard["block"], shard["start"], shard["stop"], params, identify)
    began = time.perf_counter()
    queue = task_queue.run_queue()
    inserted = queue.insert_all(tasks, total=len(tasks), parallel=task_queue.upload_processes, progress=False)
    seconds = time.perf_counter() - began
    result = {"index": shard["index"], "inserted": inserted, "seconds": seconds, "finished_at": time.time()}
    return dg.Output(
        result,
        metadata={
            "tasks inserted": inserted,
            "seconds": round(seconds, 3),
            "tasks/s": round(inserted / seconds, 1) if seconds > 0 else 0.0,
        },
    )


@dg.op(description="Check every task went in; record tasks inserted, seconds, tasks/s, queue and baseline.")
def record_block(
    context: dg.OpExecutionContext,
    task_queue: TaskQueueResource,
    block: dict[str, Any],
    uploads: list[dict[str, Any]],
) -> dg.Output[dict[str, Any]]:
    baseline = Baseline.from_dict(block["baseline"])
    inserted = sum(int(u["inserted"]) for u in uploads)
    if inserted != baseline.expected:
        raise dg.Failure(
            f"block {block['block']}: task_count said {baseline.expected} tasks but "
            f"{inserted} were inserted; fix the task factory so both agree",
            metadata={"tasks inserted": inserted, "expected tasks": baseline.expected},
        )
    if baseline.ledger:
        ledger = task_queue.open_ledger()
        assert ledger is not None, "the block was stamped for a ledger: keep ledger_url for its whole run"
        with ledger:
            ledger.set_total(block["block"], inserted)
    finished = max((float(u["finished_at"]) for u in uploads), default=time.time())
    seconds = max(finished - float(block["started_at"]), 1e-9)
    summary = {"block": block["block"], "inserted": inserted, "seconds": seconds, **baseline.to_dict()}
    return dg.Output(
        summary,
        metadata={
            "block": block["block"],
            "tasks inserted": inserted,
            "seconds": round(seconds, 3),
            "tasks/s": round(inserted / seconds, 1),
            "upload seconds": round(sum(float(u["seconds"]) for u in uploads), 3),
            "shards": len(uploads),
            "queue": task_queue.queue_url,
            BASELINE_KEY: dg.MetadataValue.json(baseline.to_dict()),
        },
    )
