"""Test-only fault hooks around the ledger record; inert unless their environment variable is set.

The reliability tests (``tests/reliability/test_ledger.py``) pin worker crashes
to the windows of execute -> record -> delete, and lose ledger writes, inside
real worker subprocesses. Nothing here runs in production unless one of these
variables is set; never set them outside tests:

* ``TQO_FAULT_BEFORE_RECORD=N``: SIGKILL this worker just before a ledger record
  once it has recorded at least ``N`` tasks (the batch ran, was not recorded,
  was not deleted);
* ``TQO_FAULT_AFTER_RECORD=N``: SIGKILL it just after the record that brings it
  to at least ``N`` tasks, before the delete (recorded, not deleted);
* ``TQO_FAULT_ONCE=PATH``: with either, only the first worker to create ``PATH``
  is killed (a pool of workers with the same environment is killed once);
* ``TQO_FAULT_LEDGER_FAIL_WRITES=K``: the first ``K`` ledger writes of this
  worker raise a retryable :class:`~tq_orchestrate.errors.LedgerError` without
  writing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

from ..errors import LedgerError
from ..ledger.base import BlockFigures, LedgerStore
from ..ledger.identity import Identity

__all__ = ["after_record", "before_record", "wrap_ledger"]

_recorded = 0


def _limit(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _kill_once() -> None:
    marker = os.environ.get("TQO_FAULT_ONCE")
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def before_record(count: int) -> None:
    """Called with a batch's size just before its record (inert unless ``TQO_FAULT_BEFORE_RECORD``)."""
    limit = _limit("TQO_FAULT_BEFORE_RECORD")
    if limit is not None and _recorded >= limit:
        _kill_once()


def after_record(count: int) -> None:
    """Called with a batch's size just after its record, before its delete."""
    global _recorded
    _recorded += count
    limit = _limit("TQO_FAULT_AFTER_RECORD")
    if limit is not None and _recorded >= limit:
        _kill_once()


def wrap_ledger(ledger: LedgerStore) -> LedgerStore:
    """``ledger``, or (``TQO_FAULT_LEDGER_FAIL_WRITES=K``) a wrapper failing its first K writes."""
    failures = _limit("TQO_FAULT_LEDGER_FAIL_WRITES")
    return ledger if not failures else _FailingWrites(ledger, failures)


class _FailingWrites(LedgerStore):
    """Refuses the first ``failures`` writes (retryable, nothing written); then passes through."""

    def __init__(self, inner: LedgerStore, failures: int) -> None:
        self.url, self.inner, self.failures = inner.url, inner, failures
        self.read_interval_seconds = inner.read_interval_seconds

    def record(self, entries: Iterable[tuple[Identity, str]]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise LedgerError("injected (TQO_FAULT_LEDGER_FAIL_WRITES): write refused", retryable=True)
        self.inner.record(entries)

    def set_total(self, block: str, total: int) -> None:
        self.inner.set_total(block, total)

    def figures(self, block: str, *, compact: bool = True) -> BlockFigures:
        return self.inner.figures(block, compact=compact)

    def close(self) -> None:
        self.inner.close()
