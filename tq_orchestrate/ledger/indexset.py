"""A compact set of task indices: a bitmap, written zlib-compressed.

One million indices take 125 kB as a bitmap and a few hundred bytes once
compressed when they are mostly contiguous, so a block's whole ledger fits one
object and merging is a bitwise OR.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

__all__ = ["IndexSet"]


class IndexSet:
    """A growable set of non-negative integers."""

    __slots__ = ("_bits",)

    def __init__(self, indices: Iterable[int] = ()) -> None:
        self._bits = np.zeros(0, dtype=bool)
        self.add_many(indices)

    def add_many(self, indices: Iterable[int]) -> None:
        """Add ``indices`` (any iterable of ints, or an integer numpy array)."""
        array = np.fromiter(indices, dtype=np.int64) if not isinstance(indices, np.ndarray) else indices
        if array.size == 0:
            return
        if int(array.min()) < 0:
            raise ValueError("task indices are >= 0")
        self._grow(int(array.max()) + 1)
        self._bits[array] = True

    def update(self, other: IndexSet) -> None:
        """Union ``other`` into this set."""
        self._grow(other._bits.size)
        self._bits[: other._bits.size] |= other._bits

    def _grow(self, size: int) -> None:
        if size > self._bits.size:
            grown = np.zeros(max(size, self._bits.size * 2), dtype=bool)
            grown[: self._bits.size] = self._bits
            self._bits = grown

    def __len__(self) -> int:
        return int(np.count_nonzero(self._bits))

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self._bits.size and bool(self._bits[index])

    def missing(self, total: int, *others: IndexSet, limit: int | None = None) -> list[int]:
        """Indices in ``[0, total)`` in neither this set nor ``others`` (the first ``limit``)."""
        covered = np.zeros(total, dtype=bool)
        for s in (self, *others):
            n = min(total, s._bits.size)
            covered[:n] |= s._bits[:n]
        gaps = np.flatnonzero(~covered)
        return [int(i) for i in (gaps if limit is None else gaps[:limit])]

    def covered(self, total: int, *others: IndexSet) -> int:
        """How many of ``[0, total)`` this set and ``others`` hold together."""
        return total - len(self.missing(total, *others))

    def to_bytes(self) -> bytes:
        """The compressed bitmap."""
        size = int(np.flatnonzero(self._bits)[-1]) + 1 if self._bits.any() else 0
        packed = np.packbits(self._bits[:size]).tobytes()
        return size.to_bytes(8, "little") + zlib.compress(packed, 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> IndexSet:
        """Inverse of :meth:`to_bytes`."""
        size = int.from_bytes(data[:8], "little")
        packed = np.frombuffer(zlib.decompress(data[8:]), dtype=np.uint8)
        out = cls()
        out._bits = np.unpackbits(packed, count=size).astype(bool)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IndexSet) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IndexSet({len(self)} indices)"
