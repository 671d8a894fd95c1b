"""The ledger as two tables in the embedded queue's own SQLite database.

``tqo_ledger(block, idx, dead)`` is keyed by identity (INSERT OR IGNORE: a
duplicate is harmless); ``tqo_ledger_totals(block, total)`` holds block totals.
:meth:`figures` reads only rows added since its last call (by rowid).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable

from ..errors import LedgerError
from .base import BlockFigures, LedgerStore, group
from .identity import Identity
from .indexset import IndexSet

__all__ = ["SqliteLedger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tqo_ledger (
    block TEXT NOT NULL, idx INTEGER NOT NULL, dead INTEGER NOT NULL, UNIQUE (block, dead, idx));
CREATE TABLE IF NOT EXISTS tqo_ledger_totals (block TEXT PRIMARY KEY, total INTEGER NOT NULL);
"""


class SqliteLedger(LedgerStore):
    """Ledger tables in the SQLite file ``path`` (the queue's database)."""

    def __init__(self, url: str, path: str, *, timeout_seconds: float = 30.0) -> None:
        self.url = url
        self.path = path
        self._timeout_seconds = timeout_seconds
        self._local = threading.local()
        self._merged: dict[str, tuple[int, IndexSet, IndexSet]] = {}

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=self._timeout_seconds, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            except sqlite3.Error as e:
                raise LedgerError(f"cannot open ledger tables: {e}", queue=self.url, retryable=True) from e
            self._local.db = db
        return db

    def record(self, entries: Iterable[tuple[Identity, str]]) -> None:
        rows = [
            (block, i, dead)
            for block, (done, died) in group(entries).items()
            for dead, indices in ((0, done), (1, died))
            for i in indices
        ]
        if not rows:
            return
        try:
            with self._db() as db:
                db.executemany("INSERT OR IGNORE INTO tqo_ledger (block, idx, dead) VALUES (?, ?, ?)", rows)
        except sqlite3.Error as e:
            raise LedgerError(f"ledger write failed: {e}", queue=self.url, retryable=True) from e

    def set_total(self, block: str, total: int) -> None:
        try:
            with self._db() as db:
                db.execute(
                    "INSERT OR REPLACE INTO tqo_ledger_totals (block, total) VALUES (?, ?)", (block, total)
                )
        except sqlite3.Error as e:
            raise LedgerError(f"ledger write failed: {e}", queue=self.url, retryable=True) from e

    def figures(self, block: str, *, compact: bool = True) -> BlockFigures:
        del compact  # rows are read incrementally by rowid; nothing to rewrite
        after, done, dead = self._merged.get(block, (0, IndexSet(), IndexSet()))
        try:
            db = self._db()
            rows = db.execute(
                "SELECT rowid, idx, dead FROM tqo_ledger WHERE block = ? AND rowid > ?", (block, after)
            ).fetchall()
            total = db.execute("SELECT total FROM tqo_ledger_totals WHERE block = ?", (block,)).fetchone()
        except sqlite3.Error as e:
            raise LedgerError(f"ledger read failed: {e}", queue=self.url, retryable=True) from e
        done.add_many(r[1] for r in rows if not r[2])
        dead.add_many(r[1] for r in rows if r[2])
        self._merged[block] = (max((r[0] for r in rows), default=after), done, dead)
        return BlockFigures(block, None if total is None else int(total[0]), done, dead)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
