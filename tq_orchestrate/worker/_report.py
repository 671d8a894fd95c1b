"""What a worker tells: its totals, one structured log record per task, readable task names."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..backends.base import Message
from ..errors import DeserializationError

__all__ = ["LOG_BODY_CHARS", "WorkerStats", "body_task_name", "clip", "task_event", "task_log", "task_name"]

task_log = logging.getLogger("tq_orchestrate.worker.tasks")
"""One INFO record per task; ``record.task_event`` holds id, class, seconds, outcome."""

LOG_BODY_CHARS = 4096
"""Message bodies in log lines are cut to this many characters (dead letters keep them whole)."""


@dataclass
class WorkerStats:
    """What a worker loop did."""

    executed: int = 0
    """Tasks whose execute() returned (deleted, or attempted if the lease was lost)."""
    failed: int = 0
    corrupt: int = 0
    lease_lost: int = 0
    undeleted: int = 0
    """Executed tasks whose delete still failed after ``delete_attempts`` rounds (they run again)."""
    released: int = 0
    """Leased tasks handed back unstarted when the worker stopped."""
    loops: int = 0
    stop_reason: str = ""
    error: BaseException | None = None
    """The task error that stopped the loop (``stop_on_error``)."""


def task_name(task: Any) -> str:
    """``module:function`` of a function task, else the task's class name."""
    key = getattr(task, "key", None)
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]}:{key[1]}"
    return type(task).__name__


def clip(text: str, limit: int = LOG_BODY_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text)} chars]"


def body_task_name(body: str) -> str:
    """The class or function a message body names, without building it ("?" if none)."""
    from .._payload import loads, unwrap

    try:
        payload, _ = unwrap(loads(body))
    except DeserializationError:
        return "?"
    if isinstance(payload, dict) and isinstance(payload.get("class"), str):
        return str(payload["class"])
    if isinstance(payload, list) and payload and isinstance(payload[0], list) and len(payload[0]) == 2:
        return f"{payload[0][0]}:{payload[0][1]}"
    return "?"


def task_event(message: Message, name: str, seconds: float, outcome: str, **more: Any) -> None:
    """Log one task's outcome on :data:`task_log` (text, plus ``record.task_event`` for JSON)."""
    if not task_log.isEnabledFor(logging.INFO):
        return
    event = {
        "id": message.message_id,
        "class": name,
        "seconds": round(seconds, 6),
        "outcome": outcome,
        "receive_count": message.receive_count,
        **more,
    }
    task_log.info(
        "%s %s %s in %.3f s", outcome, name, message.message_id, seconds, extra={"task_event": event}
    )
