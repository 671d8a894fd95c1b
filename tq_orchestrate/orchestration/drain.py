"""Is a block finished? A plain, Dagster-free drain check with a serialisable cursor.

A block is *done* when, after its upload run succeeded:

* the queue reads all-zero (visible, leased and delayed) on at least
  ``min_zero_readings`` consecutive readings whose span is longer than the
  queue's consistency lag (SQS's approximate counts lag up to a minute; the
  embedded queue's counts are exact, so its lag is short);
* where the backend counts completions, at least ``expected`` tasks completed
  since the upload began (``completed - baseline.completed >= expected``).

A block is *failed* when tasks were dead-lettered since the upload began
(reported with the count and a sample), or when the queue has read empty for
longer than the lag yet fewer tasks completed than were inserted (tasks were
lost, e.g. purged). Anything else is *waiting*. Nothing here sleeps or reads the
queue: the caller passes each reading in, with the time it was taken, and keeps
the returned cursor (JSON-ready via :meth:`DrainCursor.to_dict`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._payload import loads
from ..backends.base import Counts, DeadLetter
from ..errors import ConfigurationError, DeserializationError

SAMPLE_SIZE = 3
"""Dead letters quoted in a failure report."""


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    """How much evidence an empty queue needs before a block counts as drained."""

    lag_seconds: float = 60.0
    """The all-zero readings must span more than this (0: counts are exact, no wait)."""
    min_zero_readings: int = 3
    """Consecutive all-zero readings required."""

    def __post_init__(self) -> None:
        if self.lag_seconds < 0:
            raise ConfigurationError(f"lag_seconds must be >= 0, got {self.lag_seconds}")
        if self.min_zero_readings < 1:
            raise ConfigurationError(f"min_zero_readings must be >= 1, got {self.min_zero_readings}")

    def trusts(self, zero_readings: int, span: float) -> bool:
        """Whether ``zero_readings`` consecutive zeros over ``span`` seconds prove emptiness."""
        long_enough = self.lag_seconds == 0 or span > self.lag_seconds
        return zero_readings >= self.min_zero_readings and long_enough

    @classmethod
    def for_counts(cls, exact: bool) -> DrainPolicy:
        """A default for exact counts (embedded queue) or approximate ones (SQS)."""
        return cls(lag_seconds=0.2, min_zero_readings=2) if exact else cls(lag_seconds=60.0)


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the block's upload run recorded: the figures completion is checked against."""

    expected: int
    """Tasks inserted for the block."""
    completed: int | None = None
    """The queue's completed total read before the upload began (None if not counted)."""
    dead: int | None = None
    """The queue's dead-letter count read before the upload began (None if not counted)."""
    ledger: bool = False
    """The upload stamped task identities and recorded the block total in a completion ledger."""

    def to_dict(self) -> dict[str, int | None]:
        """JSON-ready form (``ledger`` only when set, so older readers see the same keys)."""
        data: dict[str, int | None] = {
            "expected": self.expected,
            "completed": self.completed,
            "dead": self.dead,
        }
        if self.ledger:
            data["ledger"] = 1
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        """Inverse of :meth:`to_dict`."""
        return cls(
            expected=int(data["expected"]),
            completed=_opt_int(data.get("completed")),
            dead=_opt_int(data.get("dead")),
            ledger=bool(data.get("ledger")),
        )


@dataclass(frozen=True, slots=True)
class DrainCursor:
    """The current run of consecutive all-zero readings."""

    zero_readings: int = 0
    first_zero_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"zero_readings": self.zero_readings, "first_zero_at": self.first_zero_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DrainCursor:
        """Inverse of :meth:`to_dict`; None or ``{}`` is a fresh cursor."""
        if not data:
            return cls()
        first = data.get("first_zero_at")
        return cls(int(data.get("zero_readings", 0)), None if first is None else float(first))

    def span(self, now: float) -> float:
        """Seconds since the first reading of the current all-zero run (0 if none)."""
        return 0.0 if self.first_zero_at is None else now - self.first_zero_at


class DrainState(enum.Enum):
    """Where a block stands."""

    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DrainStatus:
    """The outcome of one reading: state, a sentence for people, and the next cursor."""

    state: DrainState
    reason: str
    cursor: DrainCursor
    counts: Counts
    dead: int = 0
    """Tasks dead-lettered since the upload began (when the backend counts them)."""
    dead_sample: tuple[DeadLetter, ...] = ()
    ledger: Mapping[str, Any] | None = None
    """The completion ledger's figures for the block, when it has one (see :mod:`.exact`)."""

    @property
    def done(self) -> bool:
        """The block finished: every task ran and was deleted."""
        return self.state is DrainState.DONE

    @property
    def failed(self) -> bool:
        """The block cannot finish without a person (dead letters or lost tasks)."""
        return self.state is DrainState.FAILED


DeadLetterReader = Callable[[int], Sequence[DeadLetter]]
"""Returns up to N dead letters; called only when a block failed."""


def check_drain(
    counts: Counts,
    cursor: DrainCursor,
    *,
    now: float,
    baseline: Baseline,
    policy: DrainPolicy,
    dead_letters: DeadLetterReader | None = None,
    sample_size: int = SAMPLE_SIZE,
) -> DrainStatus:
    """Judge one queue reading taken at ``now`` (seconds, any monotonic-enough clock).

    ``dead_letters(n)`` lists up to ``n`` of the block's dead letters; it is
    called only when the block failed, to quote ``sample_size`` of them.
    """
    new_dead = _new_dead(counts, baseline)
    if new_dead > 0:
        sample = tuple(dead_letters(sample_size))[:sample_size] if dead_letters is not None else ()
        return DrainStatus(
            DrainState.FAILED,
            _dead_reason(new_dead, sample),
            DrainCursor(),
            counts,
            dead=new_dead,
            dead_sample=sample,
        )
    if counts.pending:
        return DrainStatus(DrainState.WAITING, _pending_reason(counts), DrainCursor(), counts)
    streak = DrainCursor(cursor.zero_readings + 1, cursor.first_zero_at if cursor.zero_readings else now)
    span = streak.span(now)
    if not policy.trusts(streak.zero_readings, span):
        reason = (
            f"queue reads empty ({streak.zero_readings}/{policy.min_zero_readings} readings over "
            f"{span:.1f}s; need more than {policy.lag_seconds:g}s)"
        )
        return DrainStatus(DrainState.WAITING, reason, streak, counts)
    done_tasks = _completed_since(counts, baseline)
    if done_tasks is not None and done_tasks < baseline.expected:
        reason = (
            f"queue has read empty for {span:.1f}s but only {done_tasks} of {baseline.expected} tasks "
            "completed: tasks were lost (purged or deleted outside the workers?)"
        )
        return DrainStatus(DrainState.FAILED, reason, streak, counts)
    proof = f"{baseline.expected} tasks completed" if done_tasks is not None else "completions not counted"
    reason = f"drained: {streak.zero_readings} empty readings over {span:.1f}s; {proof}"
    return DrainStatus(DrainState.DONE, reason, streak, counts)


def _new_dead(counts: Counts, baseline: Baseline) -> int:
    if counts.dead is None:
        return 0
    return max(0, counts.dead - (baseline.dead or 0))


def _completed_since(counts: Counts, baseline: Baseline) -> int | None:
    if counts.completed is None or baseline.completed is None:
        return None
    return counts.completed - baseline.completed


def _pending_reason(counts: Counts) -> str:
    return f"draining: {counts.visible} visible, {counts.leased} leased, {counts.delayed} delayed"


def _dead_reason(count: int, sample: Sequence[DeadLetter]) -> str:
    text = f"{count} task(s) dead-lettered"
    if sample:
        shown = "; ".join(_describe(d) for d in sample)
        text += f", e.g. {shown}"
    return text + " (fix the cause, then redrive them or re-run the block)"


def _describe(letter: DeadLetter) -> str:
    body = letter.body if len(letter.body) <= 120 else letter.body[:120] + "..."
    why = f" error={letter.error!r}" if letter.error else ""
    return (
        f"[{_task_name(letter.body)} {letter.message_id} received {letter.receive_count}x{why} body={body}]"
    )


def _task_name(body: str) -> str:
    """The task class or function a message body names, if it is a readable payload."""
    try:
        data = loads(body)
    except DeserializationError:  # bad JSON, non-UTF-8, nested too deeply, bad arrays
        return "unreadable"
    payload = data.get("payload", data) if isinstance(data, dict) else data
    if isinstance(payload, dict) and isinstance(payload.get("class"), str):
        return str(payload["class"])
    if isinstance(payload, list) and payload and isinstance(payload[0], list) and len(payload[0]) == 2:
        return f"{payload[0][0]}:{payload[0][1]}"
    return "task"


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
