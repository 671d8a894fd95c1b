"""The block-chain sensor for block assets: upload block k+1 once block k's tasks all ran.

Each tick looks for the newest upload materialization of the current block;
once there is one it reads the queue (for at most ``tick_budget_seconds``) and
judges it with :func:`~.drain.check_drain` against the baseline the upload
recorded. When the block drained it reports the block's materialization and
both checks (runless events, visible on the asset's page) and requests the next
block's upload. While a block with a ledger waits on a short ledger (the queue
reads empty, or ``stall_report_seconds`` passed since its upload) a failing
WARN ``drained`` evaluation names the missing count and a sample, at most once
per ``stall_report_seconds`` or when the count changes; the block is not
materialized by it. When the block failed (dead letters, lost tasks, a failed
upload run) it reports the failing check and halts; materializing the block's
upload again resumes the chain.

A *series* is one pass over every block. Materializing the first block's
upload (from the UI, a schedule, anything) starts a new series; the sensor also
starts one on its first tick once the upload's upstream assets exist.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import dagster as dg

from ..errors import TaskQueueError
from .assets import BlockAssets, baseline_of, ledger_asset_metadata, stalled_evaluation, status_evaluations
from .drain import Baseline, DrainCursor, DrainState, DrainStatus
from .resources import TaskQueueResource
from .sensors import PARTITION_TAG, SERIES_TAG, new_series_id, read_block

log = logging.getLogger(__name__)

_FAILED = frozenset({dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})


@dataclass(frozen=True)
class AssetChainCursor:
    """Where a series stands; serialised as the sensor's cursor (JSON)."""

    started: bool = False
    """The sensor has ticked before (history older than its first tick is ignored)."""
    series: str | None = None
    series_started_at: float = 0.0
    index: int = 0
    first_upload: int = 0
    """Storage id of the first block's upload that began the series (newer ones start another)."""
    watermark: int = 0
    """Upload materializations of the current block count only if newer than this storage id."""
    upload: int | None = None
    """Storage id of the upload materialization being drained."""
    requested_at: float = 0.0
    drain: DrainCursor = field(default_factory=DrainCursor)
    halted: str | None = None
    """The reason last reported as a failing check (reported once)."""
    complete: bool = False
    stalled_missing: int | None = None
    """Missing tasks last reported by a stalled ``drained`` evaluation of the current block."""
    stalled_at: float = 0.0
    """When the current block's stall was last reported."""

    def to_json(self) -> str:
        data = asdict(self)
        data["drain"] = self.drain.to_dict()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> AssetChainCursor:
        """Inverse of :meth:`to_json`; None, ``""`` or an unreadable cursor is a fresh cursor."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            data["drain"] = DrainCursor.from_dict(data.get("drain"))
            return cls(**data)
        except (ValueError, TypeError, AttributeError):
            log.warning("block-chain cursor %r unreadable; starting afresh", text[:200])
            return cls()


@dataclass
class _AssetTick:
    """One evaluation of the chain; every public path returns the sensor's answer."""

    instance: dg.DagsterInstance
    blocks: BlockAssets
    keys: Sequence[str]
    queue: TaskQueueResource
    tick_budget_seconds: float
    poll_seconds: float
    start_on_first_tick: bool
    clock: Callable[[], float]
    sleep: Callable[[float], object]
    upload_poll_seconds: float = 0.25
    warn: Callable[[str], object] = log.warning
    """Where a count-based fallback of a ledger block is reported (the sensor's context.log)."""
    stall_report_seconds: float = 60.0

    def evaluate(self, cursor: AssetChainCursor) -> dg.SensorResult:
        if not cursor.started:
            cursor = AssetChainCursor(started=True, first_upload=self._newest_storage_id())
        cursor = self._adopt_new_series(cursor)
        if cursor.series is None:
            return self._first_series(cursor)
        if cursor.complete:
            again = f"materialize block {self.keys[0]} of {self._upload} for another"
            reason = f"series {cursor.series} complete; {again}"
            return _skip(reason, cursor)
        return self._check_block(cursor)

    @property
    def _upload(self) -> str:
        return self.blocks.upload_key.to_user_string()

    def _first_series(self, cursor: AssetChainCursor) -> dg.SensorResult:
        hint = f"materialize block {self.keys[0]} of {self._upload} to start a series"
        if not self.start_on_first_tick:
            return _skip(f"no series yet: {hint}", cursor)
        missing = [k.to_user_string() for k in self._upstream() if not self._materialized(k)]
        if missing:
            return _skip(f"waiting for {', '.join(missing)} to be materialized (or {hint})", cursor)
        now = self.clock()
        started = replace(
            cursor,
            series=new_series_id(now),
            series_started_at=now,
            index=0,
            watermark=cursor.first_upload,  # uploads older than the first tick are history
            requested_at=now,
        )
        return self._request(started)

    def _adopt_new_series(self, cursor: AssetChainCursor) -> AssetChainCursor:
        record = self._upload_after(self.keys[0], cursor.first_upload)
        if record is None:
            return cursor
        run = self.instance.get_run_by_id(record.run_id)
        tagged = run.tags.get(SERIES_TAG) if run is not None else None
        if tagged is not None and tagged == cursor.series and cursor.index == 0:
            return replace(cursor, first_upload=record.storage_id)  # the run the sensor requested
        if cursor.series is not None and not cursor.complete:
            log.warning("block %s uploaded again: series %s abandoned", self.keys[0], cursor.series)
        return AssetChainCursor(
            started=True,
            series=tagged or new_series_id(record.timestamp),
            series_started_at=record.timestamp,
            first_upload=record.storage_id,
            watermark=record.storage_id - 1,
            requested_at=record.timestamp,
        )

    def _check_block(self, cursor: AssetChainCursor) -> dg.SensorResult:
        key = self.keys[cursor.index]
        deadline = self.clock() + self.tick_budget_seconds
        newer = self._poll_upload(key, max(cursor.watermark, cursor.upload or 0), cursor, deadline)
        if newer is not None:
            cursor = replace(
                cursor, upload=newer.storage_id, drain=DrainCursor(), halted=None, stalled_missing=None
            )
        if cursor.upload is None:
            return self._await_upload(cursor, key)
        record = self._upload_after(key, cursor.upload - 1)
        baseline = baseline_of(record) if record is not None else None
        if baseline is None:
            return _skip(f"halted: block {key}'s upload recorded no baseline; materialize it again", cursor)
        try:
            status = self._drain(key, cursor.drain, baseline, deadline)
        except TaskQueueError as e:
            return _skip(f"block {key}: cannot read the queue: {e}", cursor)
        cursor = replace(cursor, drain=status.cursor)
        if status.state is DrainState.WAITING:
            assert record is not None
            cursor = self._report_stall(cursor, key, baseline, status, record.timestamp)
            return _skip(f"block {key}: {status.reason}", cursor)
        if status.state is DrainState.FAILED:
            return self._halt(cursor, key, baseline, status)
        assert record is not None
        return self._advance(cursor, key, baseline, status, record)

    def _await_upload(self, cursor: AssetChainCursor, key: str) -> dg.SensorResult:
        run = self._failed_upload_run(key, cursor.requested_at)
        if run is not None:
            reason = (
                f"halted: the upload of block {key} {run.status.value.lower()} (run {run.run_id}); "
                f"materialize block {key} of {self._upload} again to resume"
            )
            return _skip(reason, cursor)
        return _skip(f"block {key}: waiting for its upload run", cursor)

    def _report_stall(
        self, cursor: AssetChainCursor, key: str, baseline: Baseline, status: DrainStatus, uploaded_at: float
    ) -> AssetChainCursor:
        """Put a waiting block's short ledger on the asset's page (a WARN ``drained`` evaluation).

        Only once the queue reads empty or ``stall_report_seconds`` passed since the
        upload, and then at most once per ``stall_report_seconds`` unless the missing
        count changed. It reports no materialization, so the block's honest one follows.
        """
        data = status.ledger
        if data is None or data["total"] is None or not data["missing"]:
            return cursor
        now = self.clock()
        if status.counts.pending > 0 and now - uploaded_at < self.stall_report_seconds:
            return cursor
        fresh = now - cursor.stalled_at >= self.stall_report_seconds
        if cursor.stalled_missing == data["missing"] and not fresh:
            return cursor
        self.instance.report_runless_asset_event(
            stalled_evaluation(self.blocks.blocks_key, key, baseline, status)
        )
        return replace(cursor, stalled_missing=data["missing"], stalled_at=now)

    def _halt(
        self, cursor: AssetChainCursor, key: str, baseline: Baseline, status: DrainStatus
    ) -> dg.SensorResult:
        reason = f"halted: block {key} failed: {status.reason}"
        if cursor.halted != status.reason:
            for event in status_evaluations(self.blocks.blocks_key, key, baseline, status):
                self.instance.report_runless_asset_event(event)
            cursor = replace(cursor, halted=status.reason)
        return _skip(reason + f"; materialize block {key} of {self._upload} again to resume", cursor)

    def _advance(
        self,
        cursor: AssetChainCursor,
        key: str,
        baseline: Baseline,
        status: DrainStatus,
        upload: dg.EventLogRecord,
    ) -> dg.SensorResult:
        now = self.clock()
        uploaded = upload.asset_materialization.metadata if upload.asset_materialization else {}
        rate = uploaded.get("tasks/s")
        metadata = {
            "series": cursor.series,
            "series started at": dg.MetadataValue.timestamp(cursor.series_started_at),
            "drain seconds": round(max(0.0, now - upload.timestamp), 3),
            "upload tasks/s": rate.value if isinstance(rate, dg.FloatMetadataValue) else 0.0,
            "tasks": baseline.expected,
            "completed": _since(status.counts.completed, baseline.completed),
            "dead letters": status.dead,
            "readings": status.cursor.zero_readings,
            "verdict": status.reason,
            **ledger_asset_metadata(status),
        }
        if not self._reported(key, upload.storage_id):
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=self.blocks.blocks_key, partition=key, metadata=metadata)
            )
            for event in status_evaluations(self.blocks.blocks_key, key, baseline, status):
                self.instance.report_runless_asset_event(event)
            log.info("series %s block %s %s", cursor.series, key, status.reason)
            if status.ledger is not None and status.ledger["mode"] == "fallback":
                self.warn(f"block {key}: {status.reason}")
        nxt = cursor.index + 1
        done = replace(
            cursor,
            index=nxt,
            upload=None,
            drain=DrainCursor(),
            halted=None,
            stalled_missing=None,
            stalled_at=0.0,
        )
        if nxt == len(self.keys):
            reason = f"series {cursor.series} complete: block {key} was the last ({status.reason})"
            return _skip(reason, replace(done, complete=True))
        return self._request(replace(done, watermark=cursor.upload or 0, requested_at=now))

    def _request(self, cursor: AssetChainCursor) -> dg.SensorResult:
        assert cursor.series is not None
        key = self.keys[cursor.index]
        request = dg.RunRequest(
            run_key=f"{cursor.series}:{key}", partition_key=key, tags={SERIES_TAG: cursor.series}
        )
        return dg.SensorResult(run_requests=[request], cursor=cursor.to_json())

    def _poll_upload(
        self, key: str, after: int, cursor: AssetChainCursor, deadline: float
    ) -> dg.EventLogRecord | None:
        """A newer upload of ``key``; while none was found yet, wait for it until ``deadline``.

        (The daemon starts a sensor tick at most every 5 s, so a tick that waits for
        the upload and then for the drain starts the next block without that pause.)
        """
        while True:
            record = self._upload_after(key, after)
            if record is not None or cursor.upload is not None:
                return record
            if self.clock() + self.upload_poll_seconds > deadline:
                return None
            self.sleep(self.upload_poll_seconds)

    def _drain(self, key: str, drain: DrainCursor, baseline: Baseline, deadline: float) -> DrainStatus:
        return read_block(
            self.queue,
            key,
            drain,
            baseline,
            deadline,
            clock=self.clock,
            sleep=self.sleep,
            poll_seconds=self.poll_seconds,
        )

    # -- instance queries -----------------------------------------------------------------------

    def _upload_after(self, key: str, storage_id: int) -> dg.EventLogRecord | None:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=self.blocks.upload_key, asset_partitions=[key], after_storage_id=storage_id
            ),
            limit=1,
        ).records
        return records[0] if records else None

    def _reported(self, key: str, upload_id: int) -> bool:
        """Whether block ``key`` was already reported drained since upload ``upload_id``.

        The daemon may start a tick before the previous tick's cursor is saved; the
        block's materialization must still be reported once only.
        """
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=self.blocks.blocks_key, asset_partitions=[key], after_storage_id=upload_id
            ),
            limit=1,
        ).records
        return bool(records)

    def _newest_storage_id(self) -> int:
        records = self.instance.fetch_materializations(self.blocks.upload_key, limit=1).records
        return records[0].storage_id if records else 0

    def _upstream(self) -> list[dg.AssetKey]:
        return [dep.asset_key for dep in self.blocks.upload.specs_by_key[self.blocks.upload_key].deps]

    def _materialized(self, key: dg.AssetKey) -> bool:
        return bool(self.instance.fetch_materializations(key, limit=1).records)

    def _failed_upload_run(self, key: str, after: float) -> dg.DagsterRun | None:
        since = dt.datetime.fromtimestamp(after, tz=dt.timezone.utc) if after else None
        records = self.instance.get_run_records(
            dg.RunsFilter(tags={PARTITION_TAG: key}, created_after=since), limit=5
        )
        for record in records:
            run = record.dagster_run
            ours = run.job_name == self.blocks.job.name
            if ours or (run.asset_selection and self.blocks.upload_key in run.asset_selection):
                return run if run.status in _FAILED else None
        return None


def _since(total: int | None, base: int | None) -> int | str:
    return "not counted" if total is None or base is None else total - base


def _skip(reason: str, cursor: AssetChainCursor) -> dg.SensorResult:
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor.to_json())


def build_asset_chain_sensor(
    blocks: BlockAssets,
    *,
    name: str | None = None,
    minimum_interval_seconds: int = 1,
    tick_budget_seconds: float = 4.5,
    poll_seconds: float = 0.1,
    start_on_first_tick: bool = True,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] = time.sleep,
    stall_report_seconds: float = 60.0,
) -> dg.SensorDefinition:
    """The sensor that uploads ``blocks``' partitions one after another, each after the last drained.

    A tick waits for the current block's upload (an event-log query every 0.25 s)
    and then re-reads the queue every ``poll_seconds``, for up to
    ``tick_budget_seconds`` in all (far below Dagster's 60 s sensor timeout). The
    daemon starts a tick at most every 5 s whatever ``minimum_interval_seconds``
    says, so the default 4.5 s budget keeps a tick running most of the time and
    the next block starts within about ``poll_seconds`` plus the drain lag.

    With a ledger, a block that waits on missing tasks once the queue reads empty
    (or ``stall_report_seconds`` after its upload) gets a failing WARN ``drained``
    evaluation naming the missing count and a sample, repeated at most every
    ``stall_report_seconds`` unless that count changes.
    """
    if not 0 < tick_budget_seconds <= 30:
        raise ValueError(f"tick_budget_seconds must be in (0, 30], got {tick_budget_seconds}")

    @dg.sensor(
        name=name or f"{blocks.spec.name}_chain",
        job=blocks.job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Upload each block after the previous block's tasks all ran; reports the block's "
            "materialization and checks. Materialize the first block's upload to start a new series."
        ),
    )
    def chain_sensor(context: dg.SensorEvaluationContext, task_queue: TaskQueueResource) -> dg.SensorResult:
        tick = _AssetTick(
            instance=context.instance,
            blocks=blocks,
            keys=blocks.partitions.get_partition_keys(dynamic_partitions_store=context.instance),
            queue=task_queue,
            tick_budget_seconds=tick_budget_seconds,
            poll_seconds=poll_seconds,
            start_on_first_tick=start_on_first_tick,
            clock=clock,
            sleep=sleep,
            warn=context.log.warning,
            stall_report_seconds=stall_report_seconds,
        )
        return tick.evaluate(AssetChainCursor.from_json(context.cursor))

    return chain_sensor


__all__ = ["AssetChainCursor", "build_asset_chain_sensor"]
