"""Dead letters of the file queue: task files moved whole to ``DIR/tqo/dead``.

A dead letter is the task file itself, renamed (so its bytes are never rewritten)
to ``<ns>--<id>.json``, next to ``<ns>--<id>.meta`` holding its receive count and
error. The nanosecond prefix keeps them oldest first. Redrive renames the file
back into ``queue/`` under its old id, visible now and never received.
"""

from __future__ import annotations

import json
import os
import time

from ..base import DeadLetter
from .files import read_bytes, unlink_quiet, write_new
from .layout import Layout
from .names import strip_id, task_name

__all__ = ["bury", "count_dead", "list_dead", "redrive_all"]


def _dead_names(layout: Layout) -> list[str]:
    try:
        names = os.listdir(layout.dead)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(".json") and "--" in n)


def bury(layout: Layout, name: str, ident: str, receive_count: int, error: str) -> None:
    """Move the leased task file ``queue/name`` to the dead letters (meta first, then the body)."""
    stem = f"{time.time_ns():020d}--{ident}"
    meta = json.dumps({"message_id": ident, "receive_count": receive_count, "error": error})
    meta_path = os.path.join(layout.dead, stem + ".meta")
    write_new(meta_path, meta.encode())
    try:
        os.rename(os.path.join(layout.queue, name), os.path.join(layout.dead, stem + ".json"))
    except BaseException:
        unlink_quiet(meta_path)
        raise
    forget(layout, ident)


def forget(layout: Layout, ident: str) -> None:
    """Remove a task's movement file and our side files (it left the queue)."""
    unlink_quiet(os.path.join(layout.movement, ident))
    unlink_quiet(os.path.join(layout.receives, ident))
    unlink_quiet(os.path.join(layout.errors, ident))


def count_dead(layout: Layout) -> int:
    """How many dead letters there are."""
    return len(_dead_names(layout))


def _meta(layout: Layout, stem: str) -> dict[str, object]:
    try:
        data = json.loads(read_bytes(os.path.join(layout.dead, stem + ".meta")))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_dead(layout: Layout, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, oldest first (bytes that are not UTF-8 as surrogate escapes)."""
    letters = []
    for name in _dead_names(layout)[:limit]:
        stem = name[: -len(".json")]
        ident = stem.partition("--")[2]
        try:
            raw = strip_id(read_bytes(os.path.join(layout.dead, name)), ident)
        except FileNotFoundError:
            continue  # redriven meanwhile
        meta = _meta(layout, stem)
        count = meta.get("receive_count")
        error = meta.get("error")
        letters.append(
            DeadLetter(
                ident,
                raw.decode("utf-8", "surrogateescape"),
                count if isinstance(count, int) else 0,
                error if isinstance(error, str) else None,
            )
        )
    return letters


def redrive_all(layout: Layout) -> int:
    """Put every dead letter back in ``queue/`` (same id, visible, receive count 1 next); return how many."""
    moved = 0
    for name in _dead_names(layout):
        stem = name[: -len(".json")]
        ident = stem.partition("--")[2]
        target = task_name(0, ident)
        movement = os.path.join(layout.movement, ident)
        unlink_quiet(movement)
        write_new(movement, (target + "\n").encode())
        unlink_quiet(os.path.join(layout.receives, ident))
        try:
            os.rename(os.path.join(layout.dead, name), os.path.join(layout.queue, target))
        except FileNotFoundError:
            unlink_quiet(movement)
            continue  # another process redrove it
        unlink_quiet(os.path.join(layout.dead, stem + ".meta"))
        moved += 1
    return moved
