"""A ledger over an object store: one object per worker flush, merged by the reader.

Layout under the store's prefix, per block (``<b>`` is the block, %-quoted)::

    <b>/parts/<time>-<uuid>.bin   one worker flush: two compressed index sets
    <b>/merged.bin                the union of every merged part (written by the reader)
    <b>/total.json                the uploader's block total

:meth:`PartsLedger.figures` reads ``merged.bin`` and the parts listed after it,
writes the new union, then deletes the parts it merged: each tick reads only
what arrived since the last. Only ONE process may compact (the chain sensor):
others (``tqo status``) read with ``compact=False``, which writes and deletes
nothing.
"""

from __future__ import annotations

import abc
import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from .base import BlockFigures, LedgerStore, group
from .identity import Identity
from .indexset import IndexSet

__all__ = ["PartsLedger", "decode_part", "encode_part"]


def encode_part(done: IndexSet, dead: IndexSet) -> bytes:
    """One part: the done set's length, the done set, the dead set."""
    first = done.to_bytes()
    return len(first).to_bytes(4, "little") + first + dead.to_bytes()


def decode_part(data: bytes) -> tuple[IndexSet, IndexSet]:
    """Inverse of :func:`encode_part`."""
    n = int.from_bytes(data[:4], "little")
    return IndexSet.from_bytes(data[4 : 4 + n]), IndexSet.from_bytes(data[4 + n :])


class PartsLedger(LedgerStore):
    """The merge algorithm; subclasses move bytes (put, get, list, delete)."""

    @abc.abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def _get(self, key: str) -> bytes | None:
        """The object's bytes; None if it does not exist."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""

    @abc.abstractmethod
    def _delete(self, keys: Sequence[str]) -> None: ...

    def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(k) for k in keys]

    def record(self, entries: Iterable[tuple[Identity, str]]) -> None:
        for block, (done, dead) in group(entries).items():
            name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}.bin"
            self._put(f"{_dir(block)}/parts/{name}", encode_part(IndexSet(done), IndexSet(dead)))

    def set_total(self, block: str, total: int) -> None:
        self._put(f"{_dir(block)}/total.json", json.dumps({"block": block, "total": total}).encode())

    def figures(self, block: str, *, compact: bool = True) -> BlockFigures:
        base = _dir(block)
        raw_total = self._get(f"{base}/total.json")
        total = None if raw_total is None else int(json.loads(raw_total)["total"])
        merged = self._get(f"{base}/merged.bin")
        done, dead = decode_part(merged) if merged is not None else (IndexSet(), IndexSet())
        keys = self._list(f"{base}/parts/")
        if keys:
            for data in self._get_many(keys):
                if data is not None:  # merged and deleted by another reader meanwhile
                    more_done, more_dead = decode_part(data)
                    done.update(more_done)
                    dead.update(more_dead)
            if compact:
                self._put(f"{base}/merged.bin", encode_part(done, dead))
                self._delete(keys)
        return BlockFigures(block, total, done, dead)


def _dir(block: str) -> str:
    return quote(block, safe="") or "%00"
