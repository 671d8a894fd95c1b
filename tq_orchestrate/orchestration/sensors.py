"""Chain blocks: launch block k+1 only after block k's run succeeded and its tasks drained.

Deprecated for new code: :func:`.chain.build_asset_chain_sensor` chains block
*assets* and reports each drained block as a materialization with checks. This
sensor (for :func:`.jobs.build_block_job`) keeps working.

The block-chain sensor keeps its state in a JSON cursor (:class:`ChainCursor`).
Each tick it finds the latest run of the current block, and once that run has
succeeded it reads the queue (for at most ``tick_budget_seconds``) and judges it
with :func:`~.drain.check_drain` against the run's recorded baseline. It halts
with a :class:`~dagster.SkipReason` when the run failed or tasks dead-lettered;
a person re-running the block (a newer successful run) resumes the chain.
With ``TaskQueueResource(ledger_url=...)`` the run stamps task identities and
records the block total (:mod:`.ops`), and this sensor judges each reading with
:func:`~.exact.check_exact` like the asset chain: done once every task has a
completion or dead-letter record, the missing count and a sample in its skip
reason while waiting, a logged WARNING when it falls back to the counts. (No
asset page here: no materialization or check shows the ledger's figures.)

A *series* is one pass over every block. The sensor starts one on its first tick
(unless told not to); :func:`build_series_schedule` starts a new one on a cron
schedule by launching the first block with a series tag, which the sensor
adopts (abandoning an unfinished older series). :func:`build_failure_sensor`
reports failed block runs.
"""

import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg

from ..backends.base import DeadLetter
from ..errors import TaskQueueError
from .drain import Baseline, DrainCursor, DrainState, DrainStatus, check_drain
from .exact import LedgerReading
from .jobs import RESOURCE_KEY
from .ops import BASELINE_KEY
from .resources import TaskQueueResource

log = logging.getLogger(__name__)

SERIES_TAG = "tqo/series"
"""Run tag naming the series a block run belongs to."""
PARTITION_TAG = "dagster/partition"

_FAILED = frozenset({dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class ChainCursor:
    """Where a series stands; serialised as the sensor's cursor."""

    series: str | None = None
    series_started_at: float = 0.0
    index: int = 0
    """Position of the current block in the partition order."""
    requested_at: float = 0.0
    """When the current block's run was requested: older runs do not count."""
    run_id: str | None = None
    """The successful run whose tasks are being drained."""
    drain: DrainCursor = field(default_factory=DrainCursor)
    complete: bool = False

    def to_json(self) -> str:
        """The cursor string."""
        data: dict[str, Any] = {
            "series": self.series,
            "series_started_at": self.series_started_at,
            "index": self.index,
            "requested_at": self.requested_at,
            "run_id": self.run_id,
            "drain": self.drain.to_dict(),
            "complete": self.complete,
        }
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "ChainCursor":
        """Inverse of :meth:`to_json`; None or ``""`` is a fresh cursor."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            series=data.get("series"),
            series_started_at=float(data.get("series_started_at", 0.0)),
            index=int(data.get("index", 0)),
            requested_at=float(data.get("requested_at", 0.0)),
            run_id=data.get("run_id"),
            drain=DrainCursor.from_dict(data.get("drain")),
            complete=bool(data.get("complete", False)),
        )


def new_series_id(now: float) -> str:
    """A unique, sortable series id such as ``20250101T020000-1a2b``."""
    stamp = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def block_run_request(series: str, key: str) -> dg.RunRequest:
    """The run request for block ``key`` of ``series`` (for the sensor's or schedule's job)."""
    return dg.RunRequest(run_key=f"{series}:{key}", partition_key=key, tags={SERIES_TAG: series})


@dataclass
class _Tick:
    """One evaluation of the chain; every method returns the sensor's answer."""

    instance: dg.DagsterInstance
    job_name: str
    keys: Sequence[str]
    queue: TaskQueueResource
    tick_budget_seconds: float
    poll_seconds: float
    start_on_first_tick: bool
    clock: Callable[[], float]
    sleep: Callable[[float], object]

    def evaluate(self, cursor: ChainCursor) -> dg.SensorResult:
        if cursor.series is None and not cursor.series_started_at:
            # a fresh cursor watches from now: older tagged runs belong to finished history
            cursor = replace(cursor, series_started_at=self.clock())
        cursor = self._adopt_newer_series(cursor)
        if cursor.series is None:
            if not self.start_on_first_tick:
                return _skip(
                    "no series yet: waiting for the schedule (or a tagged run of the first block)", cursor
                )
            now = self.clock()
            return self._request(ChainCursor(new_series_id(now), now, 0, now))
        if cursor.complete:
            return _skip(
                f"series {cursor.series} complete ({len(self.keys)} blocks); waiting for a new one", cursor
            )
        if cursor.index >= len(self.keys):
            return _skip(f"series {cursor.series}: block index {cursor.index} is past the last block", cursor)
        return self._check_block(cursor)

    def _check_block(self, cursor: ChainCursor) -> dg.SensorResult:
        key = self.keys[cursor.index]
        record = self._block_run(key, cursor)
        if record is None:
            return _skip(f"block {key}: waiting for its run to start", cursor)
        run = record.dagster_run
        if run.status in _FAILED:
            reason = f"halted: block {key} run {run.run_id} {run.status.value}; re-run the block to resume"
            return _skip(reason, cursor)
        if run.status is not dg.DagsterRunStatus.SUCCESS:
            return _skip(f"block {key}: upload run {run.run_id} {run.status.value}", cursor)
        if run.run_id != cursor.run_id:
            cursor = replace(cursor, run_id=run.run_id, drain=DrainCursor())
        baseline = self._baseline(run.run_id)
        if baseline is None:
            return _skip(
                f"halted: block {key} run {run.run_id} recorded no baseline ({BASELINE_KEY})", cursor
            )
        try:
            status = self._drain(key, cursor.drain, baseline)
        except TaskQueueError as e:
            return _skip(f"block {key}: cannot read the queue: {e}", cursor)
        cursor = replace(cursor, drain=status.cursor)
        if status.state is DrainState.FAILED:
            return _skip(f"halted: block {key} failed: {status.reason}", cursor)
        if status.state is DrainState.WAITING:
            return _skip(f"block {key}: {status.reason}", cursor)
        return self._advance(cursor, key, status)

    def _advance(self, cursor: ChainCursor, key: str, status: DrainStatus) -> dg.SensorResult:
        log.info("series %s block %s %s", cursor.series, key, status.reason)
        nxt = cursor.index + 1
        if nxt == len(self.keys):
            done = replace(cursor, index=nxt, run_id=None, drain=DrainCursor(), complete=True)
            return _skip(f"series {cursor.series} complete: block {key} was the last ({status.reason})", done)
        now = self.clock()
        return self._request(replace(cursor, index=nxt, requested_at=now, run_id=None, drain=DrainCursor()))

    def _request(self, cursor: ChainCursor) -> dg.SensorResult:
        assert cursor.series is not None
        request = block_run_request(cursor.series, self.keys[cursor.index])
        return dg.SensorResult(run_requests=[request], cursor=cursor.to_json())

    def _drain(self, key: str, drain: DrainCursor, baseline: Baseline) -> DrainStatus:
        deadline = self.clock() + self.tick_budget_seconds
        status = read_block(
            self.queue,
            key,
            drain,
            baseline,
            deadline,
            clock=self.clock,
            sleep=self.sleep,
            poll_seconds=self.poll_seconds,
        )
        if status.ledger is not None and status.ledger["mode"] == "fallback":
            log.warning("block %s: %s", key, status.reason)  # no asset page here: the log says it
        return status

    def _block_run(self, key: str, cursor: ChainCursor) -> dg.RunRecord | None:
        """The newest run of block ``key`` in this series: tagged with it, or launched since requested."""
        assert cursor.series is not None
        tagged = self._latest_run({PARTITION_TAG: key, SERIES_TAG: cursor.series})
        since = self._latest_run({PARTITION_TAG: key}, after=cursor.requested_at)
        found = [r for r in (tagged, since) if r is not None]
        return max(found, key=lambda r: r.create_timestamp) if found else None

    def _latest_run(self, tags: dict[str, str], after: float = 0.0) -> dg.RunRecord | None:
        created_after = dt.datetime.fromtimestamp(after, tz=dt.timezone.utc) if after else None
        records = self.instance.get_run_records(
            dg.RunsFilter(job_name=self.job_name, tags=tags, created_after=created_after), limit=1
        )
        return records[0] if records else None

    def _baseline(self, run_id: str) -> Baseline | None:
        for entry in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
            event = entry.dagster_event
            data = event.step_output_data if event is not None and event.is_successful_output else None
            value = data.metadata.get(BASELINE_KEY) if data is not None else None
            if isinstance(value, dg.JsonMetadataValue) and isinstance(value.data, dict):
                return Baseline.from_dict(value.data)
        return None

    def _adopt_newer_series(self, cursor: ChainCursor) -> ChainCursor:
        record = self._latest_run({PARTITION_TAG: self.keys[0]}, after=cursor.series_started_at)
        series = record.dagster_run.tags.get(SERIES_TAG) if record is not None else None
        if record is None or series is None or series == cursor.series:
            return cursor
        started = record.create_timestamp.timestamp()
        if cursor.series is not None and not cursor.complete:
            log.warning("series %s adopted; unfinished series %s abandoned", series, cursor.series)
        return ChainCursor(series=series, series_started_at=started, index=0, requested_at=started - 1e-3)


def read_block(
    resource: TaskQueueResource,
    key: str,
    drain: DrainCursor,
    baseline: Baseline,
    deadline: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
    poll_seconds: float,
) -> DrainStatus:
    """Read block ``key``'s queue (and its ledger) every ``poll_seconds`` until a verdict or ``deadline``."""
    ledger = resource.open_ledger() if baseline.ledger else None
    reading = LedgerReading(ledger, key) if ledger is not None else None
    policy = resource.drain_policy()
    try:
        with resource.get_queue() as queue:
            reader = _dead_letter_reader(queue, baseline) if queue.backend.capabilities.dead_letters else None
            while True:
                now = clock()
                status = check_drain(
                    queue.counts(),
                    drain,
                    now=now,
                    baseline=baseline,
                    policy=policy,
                    dead_letters=reader,
                    sample_size=resource.dead_letter_sample,
                )
                if reading is not None:
                    status = reading.judge(status, now, reader)
                if status.state is not DrainState.WAITING or now + poll_seconds > deadline:
                    return status
                drain = status.cursor
                sleep(poll_seconds)
    finally:
        if ledger is not None:
            ledger.close()


def _dead_letter_reader(queue: Any, baseline: Baseline) -> Callable[[int], Sequence[DeadLetter]]:
    skip = baseline.dead or 0

    def read(limit: int) -> Sequence[DeadLetter]:
        return list(queue.dead_letters(skip + limit))[skip:]

    return read


def _skip(reason: str, cursor: ChainCursor) -> dg.SensorResult:
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor.to_json())


def build_block_chain_sensor(
    job: dg.JobDefinition,
    *,
    name: str | None = None,
    minimum_interval_seconds: int = 15,
    tick_budget_seconds: float = 5.0,
    poll_seconds: float = 0.25,
    start_on_first_tick: bool = True,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] = time.sleep,
) -> dg.SensorDefinition:
    """The sensor that runs ``job``'s partitions one after another, each after the last drained.

    ``tick_budget_seconds`` bounds the time a tick spends re-reading the queue
    (every ``poll_seconds``) so a short drain lag is confirmed within one tick;
    keep it far below Dagster's 60 s sensor timeout.
    """
    partitions = job.partitions_def
    if partitions is None:
        raise ValueError(f"job {job.name} is not partitioned: the chain follows its partition keys")
    if not 0 < tick_budget_seconds <= 30:
        raise ValueError(f"tick_budget_seconds must be in (0, 30], got {tick_budget_seconds}")

    @dg.sensor(
        name=name or f"{job.name}_chain",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Launch each block after the previous block's run succeeded and its tasks drained.",
    )
    def block_chain_sensor(
        context: dg.SensorEvaluationContext, task_queue: TaskQueueResource
    ) -> dg.SensorResult:
        tick = _Tick(
            instance=context.instance,
            job_name=job.name,
            keys=partitions.get_partition_keys(dynamic_partitions_store=context.instance),
            queue=task_queue,
            tick_budget_seconds=tick_budget_seconds,
            poll_seconds=poll_seconds,
            start_on_first_tick=start_on_first_tick,
            clock=clock,
            sleep=sleep,
        )
        return tick.evaluate(ChainCursor.from_json(context.cursor))

    return block_chain_sensor


def build_series_schedule(
    job: dg.JobDefinition,
    *,
    cron_schedule: str = "0 2 * * *",
    name: str | None = None,
    execution_timezone: str | None = None,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A schedule that starts a new series by launching the first block, tagged with a series id.

    It skips while any run of ``job`` is queued or in progress.
    """
    partitions = job.partitions_def
    if partitions is None:
        raise ValueError(f"job {job.name} is not partitioned")

    @dg.schedule(
        cron_schedule=cron_schedule,
        job=job,
        name=name or f"{job.name}_series",
        execution_timezone=execution_timezone,
        default_status=default_status,
        description="Start a new series of blocks (the chain sensor runs the rest).",
    )
    def series_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        busy = context.instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=_ACTIVE), limit=1)
        if busy:
            return dg.SkipReason(f"run {busy[0].dagster_run.run_id} of {job.name} is in progress")
        first = partitions.get_partition_keys(dynamic_partitions_store=context.instance)[0]
        when = context.scheduled_execution_time or dt.datetime.now(dt.timezone.utc)
        return block_run_request(new_series_id(when.timestamp()), first)

    return series_schedule


def build_failure_sensor(
    jobs: Iterable[dg.JobDefinition],
    *,
    name: str = "tqo_block_failures",
    report: Callable[[str], object] | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A run-failure sensor reporting each failed block run (to ``report``, default the log)."""

    @dg.run_failure_sensor(
        name=name,
        monitored_jobs=list(jobs),
        default_status=default_status,
        description="Report failed block runs: the chain halts until the block is re-run.",
    )
    def block_failure_sensor(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        message = (
            f"block {run.tags.get(PARTITION_TAG, '?')} of {run.job_name} failed "
            f"(run {run.run_id}, series {run.tags.get(SERIES_TAG, '-')}): {context.failure_event.message}"
        )
        (report or log.error)(message)

    return block_failure_sensor


__all__ = [
    "PARTITION_TAG",
    "RESOURCE_KEY",
    "SERIES_TAG",
    "ChainCursor",
    "block_run_request",
    "build_block_chain_sensor",
    "build_failure_sensor",
    "build_series_schedule",
    "new_series_id",
]
