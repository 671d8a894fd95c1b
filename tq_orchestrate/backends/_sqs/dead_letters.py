"""Dead letters on SQS: queue pairs with a redrive policy, the memo of received
messages that :meth:`SQSBackend.dead_letter` needs, and the message attributes a
dead letter carries.

SQS returns no body for a receipt handle, so a backend remembers what it received
(:class:`ReceivedMemo`, bounded) to copy a message to the dead-letter queue with
its error; SQS's own redrive moves messages without one, so errors recorded here
are shown for them when this process lists dead letters.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ...errors import ConfigurationError
from ..base import DeadLetter, Message

__all__ = [
    "ATTRIBUTES",
    "DLQ_RETENTION_SECONDS",
    "DLQ_SUFFIX",
    "ERROR_MAX_CHARS",
    "ReceivedMemo",
    "dead_letter_attributes",
    "dead_letter_from",
    "dlq_name",
    "ensure_queues",
    "redrive_policy",
    "sent_after",
    "sent_at_ms",
]

DLQ_SUFFIX = "-dlq"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
ERROR_ATTRIBUTE = "tq_error"
RECEIVES_ATTRIBUTE = "tq_receive_count"
MESSAGE_ID_ATTRIBUTE = "tq_message_id"
ATTRIBUTES = [ERROR_ATTRIBUTE, RECEIVES_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE]
"""The message attributes a dead letter copied by this package carries."""
ERROR_MAX_CHARS = 4096
_MEMO_MAX_MESSAGES = 1024
_MEMO_MAX_CHARS = 32 * 1024 * 1024
_ERRORS_MAX = 10_000


class ReceivedMemo:
    """The last messages received (by handle) and errors recorded (by message id),
    bounded in count and characters; per process (a forked child starts empty)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._messages: OrderedDict[str, Message] = OrderedDict()
        self._chars = 0
        self._errors: OrderedDict[str, str] = OrderedDict()

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # never share a lock with the parent
            self._reset()

    def remember(self, messages: Sequence[Message]) -> None:
        """Keep ``messages``, dropping the oldest beyond the bounds."""
        self._check_fork()
        with self._lock:
            for m in messages:
                self._messages[m.handle] = m
                self._chars += len(m.body)
            while self._messages and (
                len(self._messages) > _MEMO_MAX_MESSAGES or self._chars > _MEMO_MAX_CHARS
            ):
                _, old = self._messages.popitem(last=False)
                self._chars -= len(old.body)

    def get(self, handle: str) -> Message | None:
        """The message received under ``handle``, if still remembered."""
        self._check_fork()
        with self._lock:
            return self._messages.get(handle)

    def forget(self, handles: Sequence[str]) -> None:
        """Drop the messages of ``handles`` (deleted)."""
        self._check_fork()
        with self._lock:
            for handle in handles:
                old = self._messages.pop(handle, None)
                if old is not None:
                    self._chars -= len(old.body)

    def clear(self) -> None:
        """Drop every remembered message (errors stay)."""
        self._check_fork()
        with self._lock:
            self._messages.clear()
            self._chars = 0

    def record_error(self, handle: str, error: str) -> None:
        """Remember ``error`` for the message received under ``handle`` (if known)."""
        self._check_fork()
        with self._lock:
            message = self._messages.get(handle)
            if message is None:
                return
            self._errors[message.message_id] = error[:ERROR_MAX_CHARS]
            self._errors.move_to_end(message.message_id)
            while len(self._errors) > _ERRORS_MAX:
                self._errors.popitem(last=False)

    def errors(self) -> dict[str, str]:
        """A copy of the recorded errors by message id."""
        self._check_fork()
        with self._lock:
            return dict(self._errors)


def dead_letter_attributes(message: Message, error: str) -> dict[str, dict[str, str]]:
    """The message attributes of a dead-letter copy: error, receive count, original id."""
    return {
        ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": error[:ERROR_MAX_CHARS] or "error"},
        RECEIVES_ATTRIBUTE: {"DataType": "Number", "StringValue": str(message.receive_count)},
        MESSAGE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": message.message_id},
    }


def dead_letter_from(raw: dict[str, Any], errors: dict[str, str], max_receives: int) -> DeadLetter:
    """A received dead-letter-queue message as a :class:`DeadLetter`."""
    custom = raw.get("MessageAttributes", {})
    message_id = custom.get(MESSAGE_ID_ATTRIBUTE, {}).get("StringValue") or raw["MessageId"]
    error = custom.get(ERROR_ATTRIBUTE, {}).get("StringValue") or errors.get(message_id)
    recorded = custom.get(RECEIVES_ATTRIBUTE, {}).get("StringValue")
    return DeadLetter(
        message_id=message_id,
        body=raw["Body"],
        receive_count=int(recorded) if recorded is not None else max_receives,
        error=error,
    )


def sent_at_ms(raw: dict[str, Any]) -> int:
    """A received message's ``SentTimestamp`` (ms since the epoch; 0 if not given)."""
    return int(raw.get("Attributes", {}).get("SentTimestamp", 0))


def sent_after(
    raw: Sequence[dict[str, Any]], cutoff_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``raw`` split into messages sent up to ``cutoff_ms`` and those sent after it."""
    old = [m for m in raw if sent_at_ms(m) <= cutoff_ms]
    new = [m for m in raw if sent_at_ms(m) > cutoff_ms]
    return old, new


def redrive_policy(attributes: dict[str, str]) -> tuple[str, int] | None:
    """``(deadLetterTargetArn, maxReceiveCount)`` from queue attributes, or None."""
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return None
    parsed = json.loads(policy)
    return str(parsed["deadLetterTargetArn"]), int(parsed.get("maxReceiveCount", 0))


# -- queue creation -----------------------------------------------------------------------------


def ensure_queues(client: Any, name: str, max_receives: int | None) -> tuple[str, str | None]:
    """Create the queue (and with ``max_receives`` its DLQ and redrive policy) through
    a botocore client; botocore's errors are the caller's to translate."""
    if max_receives is None:
        return _create(client, name, {}), None
    dlq_url = _create(client, dlq_name(name), {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
    arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = _create(client, name, {})
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives})
    client.set_queue_attributes(QueueUrl=queue_url, Attributes={"RedrivePolicy": policy})
    return queue_url, dlq_url


def _create(client: Any, name: str, attributes: dict[str, str]) -> str:
    """Return the URL of ``name``, creating it with ``attributes`` if it is missing."""
    import botocore.exceptions

    from .protocol import NOT_FOUND_CODES
    from .transports import error_codes

    try:
        return str(client.get_queue_url(QueueName=name)["QueueUrl"])
    except botocore.exceptions.ClientError as e:
        if not error_codes(e) & NOT_FOUND_CODES:
            raise
    if name.endswith(".fifo"):
        attributes = {**attributes, "FifoQueue": "true"}
    return str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def dlq_name(name: str) -> str:
    """``<name>-dlq`` (FIFO: ``<base>-dlq.fifo``); refused when over SQS's 80 characters."""
    base, fifo = (name[: -len(".fifo")], ".fifo") if name.endswith(".fifo") else (name, "")
    dlq = f"{base}{DLQ_SUFFIX}{fifo}"
    if len(dlq) > 80:
        raise ConfigurationError(f"queue name {name!r} is too long to add {DLQ_SUFFIX!r} (SQS allows 80)")
    return dlq
