"""The SQS stand-in's records: messages, queues, replies and SQS errors."""

from __future__ import annotations

import hashlib
import importlib
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_BATCH_BYTES = 1024 * 1024
_DEDUP_SECONDS = 300.0
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
_INVALID_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PLAIN_IDS = re.compile(r"[A-Za-z0-9_-]{1,80}(?:,[A-Za-z0-9_-]{1,80})*")  # batch entry ids, comma-joined
_NOT_ALLOWED_ASCII = bytes([*range(9), 11, 12, *range(14, 32)])  # what _INVALID_CHARS finds in ASCII
_HEX2 = [f"{i:02x}" for i in range(256)]
_SHORT_IDS = frozenset(str(i) for i in range(100))  # the usual batch entry ids: valid, no pattern needed
_SHORT_BODY = 1024  # characters: CPython's own MD5 is quicker than OpenSSL's for shorter bodies

VISIBLE, INFLIGHT, DELAYED = 0, 1, 2

Params = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """An operation's answer: HTTP status, JSON document and extra headers."""

    status: int
    document: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class SqsFault(Exception):
    """An SQS error reply (``__type`` code, optional query-compatible code)."""

    def __init__(self, code: str, message: str, *, query_code: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.query_code = query_code or code
        self.status = status

    def reply(self) -> Reply:
        fault = "Sender" if self.status < 500 else "Receiver"
        return Reply(
            self.status,
            {"__type": f"com.amazonaws.sqs#{self.code}", "message": self.message},
            (("x-amzn-query-error", f"{self.query_code};{fault}"),),
        )


def _invalid(message: str) -> SqsFault:
    return SqsFault("InvalidParameterValue", message)


def md5_hex(text: str) -> str:
    """SQS's ``MD5OfMessageBody``: MD5 of the UTF-8 bytes."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class _Digest(Protocol):
    def hexdigest(self) -> str: ...


_short_md5: Callable[[bytes], _Digest]
try:  # CPython's own MD5 (not in every build): half the cost of OpenSSL's for a short body
    _short_md5 = importlib.import_module("_md5").md5
except ImportError:  # pragma: no cover - depends on the build
    _short_md5 = hashlib.md5


class Message:
    """One stored message."""

    __slots__ = (
        "attributes",
        "body",
        "dedup_id",
        "first_receive_ms",
        "group_id",
        "md5",
        "message_id",
        "receipt",
        "receive_count",
        "sent_ms",
        "sequence",
        "state",
        "token",
    )

    def __init__(self, message_id: str, body: str, md5: str, sent_ms: int) -> None:
        self.message_id = message_id
        self.body = body
        self.md5 = md5
        self.sent_ms = sent_ms
        self.receive_count = 0
        self.first_receive_ms = 0
        self.receipt = ""
        self.state = VISIBLE
        self.token = 0
        self.attributes: dict[str, Any] | None = None
        self.group_id: str | None = None
        self.dedup_id: str | None = None
        self.sequence = ""


@dataclass
class Queue:
    """One queue's messages and attributes."""

    name: str
    url: str
    arn: str
    attributes: dict[str, str]
    created: int = field(default_factory=lambda: int(time.time()))
    messages: dict[str, Message] = field(default_factory=dict)
    ready: deque[tuple[Message, int]] = field(default_factory=deque)
    timers: list[tuple[float, int, Message, int]] = field(default_factory=list)
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    dedup: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")

    def number(self, attribute: str, default: float) -> float:
        try:
            return float(self.attributes.get(attribute, default))
        except ValueError:
            return default
