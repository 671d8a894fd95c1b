"""Exact block completion from the completion ledger, with the count-based drain as fallback.

Dagster-free. :func:`check_exact` takes the count-based verdict of the same
reading (:func:`~.drain.check_drain`) and the ledger's figures for the block:

* dead letters since the upload: FAILED, as without a ledger;
* every uploaded task recorded (completed or dead-lettered): DONE at once, no
  wait for SQS's count lag;
* the counts proved the queue empty (their lag is the grace period) yet the
  ledger is short: tasks were run by workers that write no ledger (upstream
  python-task-queue workers, or ours without ``ledger_url``). DONE by counts,
  with a warning naming how many are missing (``fallback`` in the figures);
* otherwise WAITING, with the missing count and a sample of their identities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..backends.base import DeadLetter
from ..ledger.base import DEAD, BlockFigures, LedgerStore
from ..ledger.identity import identity_of
from .drain import DrainState, DrainStatus

DeadLetterReader = Callable[[int], Sequence[DeadLetter]]
"""Reads up to N of the block's dead letters (see the chain sensors)."""

__all__ = ["DEAD_LETTERS_RECORDED", "check_exact", "ledger_metadata", "record_dead_letters"]

DEAD_LETTERS_RECORDED = 1000
"""Dead letters read (and recorded as ``dead`` in the ledger) per failed reading at most."""

MISSING_SAMPLE = 5
"""Identities of missing tasks quoted in a reason."""


def check_exact(
    counted: DrainStatus, figures: BlockFigures, *, sample_size: int = MISSING_SAMPLE
) -> DrainStatus:
    """The verdict on one reading given the ledger's ``figures`` for the block."""
    sample = figures.missing_sample(sample_size)
    data: dict[str, Any] = {**figures.summary(), "missing sample": sample, "mode": "exact"}
    if counted.state is DrainState.FAILED and counted.dead > 0:
        return replace(counted, ledger=data)
    if figures.complete:
        reason = f"done: all {figures.total} tasks recorded in the ledger ({len(figures.dead)} dead-lettered)"
        return replace(counted, state=DrainState.DONE, reason=reason, ledger=data)
    if figures.total is None:
        reason = "waiting: the ledger has no total for this block yet (its upload has not recorded it)"
        return replace(counted, state=DrainState.WAITING, reason=reason, ledger=data)
    if counted.state is DrainState.DONE:
        data["mode"] = "fallback"
        reason = (
            f"WARNING: drained by counts but the ledger has only {figures.recorded} of {figures.total} tasks "
            f"({figures.missing} missing, e.g. {', '.join(sample)}): workers without a ledger ran them "
            f"(upstream workers or no --ledger-url?); fell back to the count-based drain ({counted.reason})"
        )
        return replace(counted, reason=reason, ledger=data)
    reason = (
        f"ledger: {figures.recorded} of {figures.total} tasks recorded, {figures.missing} missing "
        f"(e.g. {', '.join(sample)}); {counted.reason}"
    )
    return replace(counted, reason=reason, ledger=data)  # WAITING, or FAILED (tasks lost)


def record_dead_letters(ledger: LedgerStore, block: str, letters: Iterable[DeadLetter]) -> int:
    """Record the identities of ``block``'s tasks among ``letters`` as dead-lettered; return how many.

    On SQS the redrive policy, not a worker, dead-letters a task: the chain
    sensor collects them from the dead-letter queue so the ledger holds a record
    for every task (and names which ones died).
    """
    found = (identity_of(letter.body) for letter in letters)
    entries = [(i, DEAD) for i in found if i is not None and i.block == block]
    ledger.record(entries)
    return len(entries)


def ledger_metadata(status: DrainStatus) -> dict[str, Any]:
    """Asset metadata of the ledger's figures (empty without a ledger)."""
    data = status.ledger
    if data is None:
        return {}
    return {
        "ledger": data["mode"],
        "inserted": data["total"],
        "completed (ledger)": data["completed"],
        "dead-lettered (ledger)": data["dead"],
        "missing": data["missing"],
        "missing sample": list(data["missing sample"]),
    }


@dataclass
class LedgerReading:
    """The ledger's side of a sensor's drain readings for one block, across one tick.

    Dead letters the counts report are recorded as ``dead``; the block's figures
    are read at most every ``ledger.read_interval_seconds`` (a paid store), but
    always before a verdict: stale figures are a subset of the fresh ones, so
    they can delay a block, never end it early.
    """

    ledger: LedgerStore
    block: str
    figures: BlockFigures | None = None
    read_at: float = float("-inf")

    def judge(self, status: DrainStatus, now: float, dead_letters: DeadLetterReader | None) -> DrainStatus:
        """``status`` (the count-based verdict) judged by the ledger as :func:`check_exact` does."""
        if status.dead and dead_letters is not None:
            record_dead_letters(
                self.ledger, self.block, dead_letters(min(status.dead, DEAD_LETTERS_RECORDED))
            )
        stale = now - self.read_at >= self.ledger.read_interval_seconds
        if self.figures is None or stale or status.state is not DrainState.WAITING:
            self.figures, self.read_at = self.ledger.figures(self.block), now
        return check_exact(status, self.figures)
