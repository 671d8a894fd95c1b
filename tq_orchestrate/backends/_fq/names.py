"""File names and task-file text of python-task-queue's FileQueue, as pure functions.

A task lives in ``queue/<timestamp>--<id>.json``. ``timestamp`` is whole Unix
seconds: 0 (or any past second) means visible; a future second means leased or
delayed until then. ``movement/<id>`` lists every name the task file has had,
one per line. The file holds the message body with ``"id"`` added as its last
key (upstream's ``json.dumps`` separators), e.g.
``{"payload": ..., "queueName": "q", "id": "<id>"}``.
"""

from __future__ import annotations

import math
import os

__all__ = [
    "add_id",
    "expiry_timestamp",
    "new_idents",
    "parse_name",
    "strip_id",
    "task_name",
]

_SUFFIX = ".json"


def task_name(timestamp: int, ident: str) -> str:
    """The task file name for ``ident`` visible again at ``timestamp``."""
    return f"{timestamp}--{ident}{_SUFFIX}"


def parse_name(name: str) -> tuple[int, str] | None:
    """``(timestamp, id)`` of a task file name, or None for a name upstream's format does not allow."""
    stamp, sep, rest = name.partition("--")
    if not sep or "--" in rest or not rest.endswith(_SUFFIX) or len(rest) <= len(_SUFFIX):
        return None
    if not stamp.isdigit() or not stamp.isascii():
        return None
    return int(stamp), rest[: -len(_SUFFIX)]


def expiry_timestamp(now: float, seconds: float) -> int:
    """The name timestamp for a lease or delay of ``seconds`` from ``now``.

    Rounded up, so a lease lasts at least ``seconds`` (upstream truncates, which can
    cut a lease short by up to a second); 0 seconds gives the current second.
    """
    return math.ceil(now + seconds) if seconds > 0 else math.floor(now)


def new_idents(n: int) -> list[str]:
    """``n`` random version-4 UUID strings (as ``str(uuid.uuid4())``) from one urandom call."""
    raw = bytearray(os.urandom(16 * n))
    idents = []
    for start in range(0, 16 * n, 16):
        raw[start + 6] = (raw[start + 6] & 0x0F) | 0x40
        raw[start + 8] = (raw[start + 8] & 0x3F) | 0x80
        x = raw[start : start + 16].hex()
        idents.append(f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}")
    return idents


def _id_suffix(ident: str) -> bytes:
    return f', "id": "{ident}"}}'.encode()


def add_id(body: bytes, ident: str) -> bytes:
    """The file content for ``body``: a non-empty JSON object gets ``"id"`` as its last key.

    Other bodies are stored verbatim (upstream's workers cannot run them, ours dead-letter them).
    """
    if len(body) > 2 and body[:1] == b"{" and body[-1:] == b"}" and body[1:-1].strip():
        return body[:-1] + _id_suffix(ident)
    return body


def strip_id(data: bytes, ident: str) -> bytes:
    """The message body of a task file: :func:`add_id` undone (also for upstream's own files)."""
    suffix = _id_suffix(ident)
    if data.endswith(suffix):
        return data[: -len(suffix)] + b"}"
    return data
