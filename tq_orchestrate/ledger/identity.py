"""Task identity ``(block, index)``: stamped into a message body, read back by the worker.

The identity rides in a top-level envelope key that python-task-queue ignores
(its ``totask`` reads only ``"payload"`` and ``"id"``), appended last so a
worker finds it without parsing the payload again::

    {"payload": {...}, "queueName": "q", "tqoId": ["block-7", 41]}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["ID_KEY", "Identified", "Identity", "identifying", "identity_of", "stamp"]

ID_KEY = "tqoId"
_MARK = ',"' + ID_KEY + '":'


@dataclass(frozen=True, slots=True)
class Identity:
    """Which task of which block a message carries."""

    block: str
    index: int

    def __str__(self) -> str:
        return f"{self.block}#{self.index}"


@dataclass(frozen=True, slots=True)
class Identified:
    """A task to upload together with its identity (the uploader stamps it into the body)."""

    task: Any
    block: str
    index: int


def stamp(body: str, block: str, index: int) -> str:
    """``body`` (an envelope object) with the identity appended as its last key."""
    if not body.endswith("}"):
        raise ValueError("a message body to stamp must be a JSON object")
    return body[:-1] + _MARK + orjson.dumps([block, index]).decode() + "}"


def identity_of(body: str) -> Identity | None:
    """The identity stamped into ``body``; None for an unstamped (or unreadable) body."""
    at = body.rfind(_MARK)
    if at < 0:
        return None
    try:
        block, index = orjson.loads(body[at + len(_MARK) : -1])
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if not isinstance(block, str) or type(index) is not int or index < 0:
        return None
    return Identity(block, index)


def identifying(encode: Callable[[Any], str]) -> Callable[[Any], str]:
    """``encode`` that also stamps the identity of an :class:`Identified` task into its body."""

    def encode_identified(task: Any) -> str:
        if type(task) is Identified:
            return stamp(encode(task.task), task.block, task.index)
        return encode(task)

    return encode_identified
