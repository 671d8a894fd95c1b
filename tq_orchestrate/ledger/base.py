"""The completion ledger's interface: a SET of task identities per block, plus the block's total.

Workers :meth:`~LedgerStore.record` what they executed (``"done"``) or
dead-lettered (``"dead"``) *before* they delete the messages; the uploader
:meth:`~LedgerStore.set_total` once its block is queued. A block is complete
exactly when every index of ``[0, total)`` is recorded. Records are keyed by
identity, so a task recorded twice (an at-least-once duplicate) counts once.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field

from .identity import Identity
from .indexset import IndexSet

__all__ = ["DEAD", "DONE", "BlockFigures", "LedgerStore", "group"]

DONE = "done"
DEAD = "dead"


@dataclass
class BlockFigures:
    """What the ledger knows of one block."""

    block: str
    total: int | None
    """Tasks the uploader queued (None: its upload has not finished)."""
    done: IndexSet = field(default_factory=IndexSet)
    dead: IndexSet = field(default_factory=IndexSet)

    @property
    def recorded(self) -> int:
        """Distinct tasks of ``[0, total)`` with a completion or dead-letter record."""
        return 0 if self.total is None else self.done.covered(self.total, self.dead)

    @property
    def missing(self) -> int:
        """Tasks of the block with no record yet (0 while the total is unknown)."""
        return 0 if self.total is None else self.total - self.recorded

    @property
    def complete(self) -> bool:
        """Every uploaded task has a record."""
        return self.total is not None and self.missing == 0

    def missing_sample(self, limit: int = 5) -> list[str]:
        """Up to ``limit`` identities (``block#index``) with no record."""
        if self.total is None:
            return []
        return [str(Identity(self.block, i)) for i in self.done.missing(self.total, self.dead, limit=limit)]

    def summary(self) -> dict[str, int | None]:
        """JSON-ready figures."""
        return {
            "total": self.total,
            "completed": len(self.done),
            "dead": len(self.dead),
            "recorded": self.recorded,
            "missing": self.missing if self.total is not None else None,
        }


def group(entries: Iterable[tuple[Identity, str]]) -> dict[str, tuple[list[int], list[int]]]:
    """Entries by block: ``{block: (done indices, dead indices)}``."""
    out: dict[str, tuple[list[int], list[int]]] = {}
    for identity, outcome in entries:
        done, dead = out.setdefault(identity.block, ([], []))
        (dead if outcome == DEAD else done).append(identity.index)
    return out


class LedgerStore(abc.ABC):
    """Where records live. One instance per process; thread-safe for one writer thread."""

    url: str
    read_interval_seconds: float = 0.0
    """The chain sensor reads a block's figures at most this often (a store billed per request: > 0)."""

    @abc.abstractmethod
    def record(self, entries: Iterable[tuple[Identity, str]]) -> None:
        """Store ``(identity, "done" | "dead")`` entries durably, in as few requests as the store allows.

        Raise :class:`~tq_orchestrate.errors.LedgerError` if they may not be stored.
        """

    @abc.abstractmethod
    def set_total(self, block: str, total: int) -> None:
        """Record how many tasks the uploader queued for ``block``."""

    @abc.abstractmethod
    def figures(self, block: str, *, compact: bool = True) -> BlockFigures:
        """Everything recorded for ``block``, merged incrementally where the store allows.

        ``compact=False`` only reads (for onlookers such as ``tqo status``); one
        process at a time may compact.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections (the store reopens them if used again)."""

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
