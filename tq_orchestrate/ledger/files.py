"""The ledger as files beside an fq:// queue, in ``DIR/tqo/ledger/`` (python-task-queue ignores ``tqo/``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import LedgerError
from .parts import PartsLedger

__all__ = ["FileLedger"]


class FileLedger(PartsLedger):
    """Parts, merged sets and totals as files under ``root``."""

    def __init__(self, url: str, root: str | os.PathLike[str]) -> None:
        self.url = url
        self.root = Path(root)

    def _put(self, key: str, data: bytes) -> None:
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # readers see the whole file or none
        except OSError as e:
            raise LedgerError(f"ledger write failed: {e}", queue=self.url, retryable=True) from e

    def _get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise LedgerError(f"ledger read failed: {e}", queue=self.url, retryable=True) from e

    def _list(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        try:
            names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        except FileNotFoundError:
            return []
        return [prefix + n for n in names]

    def close(self) -> None:
        """Nothing to release: every call opens and closes its file."""

    def _delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            (self.root / key).unlink(missing_ok=True)
