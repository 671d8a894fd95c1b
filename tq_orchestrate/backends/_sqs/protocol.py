"""Pure SQS protocol knowledge, shared by both engines (no I/O, no botocore).

* limits and clamps: :func:`delay_seconds`, :func:`lease_seconds`, :func:`wait_seconds`;
* ``SendMessageBatch`` entries (:func:`send_entries`, FIFO ids from the caller);
* the one ``SendMessageBatch`` reply parser (:func:`batch_failures`);
* the one error classifier (:func:`is_retryable`) and the one mapping of an SQS
  error reply to the package's exception tree (:func:`error_for`);
* the body checksum SQS reports (:func:`body_md5`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import BackendError, ConfigurationError, LeaseLostError, QueueNotFoundError, TaskQueueError
from ..base import EntryFailure

__all__ = [
    "LEASE_LOST_CODES",
    "MAX_BATCH",
    "MAX_DELAY_SECONDS",
    "MAX_LEASE_SECONDS",
    "MAX_WAIT_SECONDS",
    "NOT_FOUND_CODES",
    "PURGE_BUSY_CODES",
    "RETRYABLE_ERROR_CODES",
    "ErrorReply",
    "FifoIds",
    "batch_failures",
    "body_md5",
    "delay_seconds",
    "error_for",
    "is_retryable",
    "lease_seconds",
    "send_entries",
    "wait_seconds",
]

MAX_BATCH = 10
MAX_LEASE_SECONDS = 43200
MAX_DELAY_SECONDS = 900
MAX_WAIT_SECONDS = 20

RETRYABLE_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "AWS.SimpleQueueService.RequestThrottled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "KmsThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestExpired",
        "ExpiredToken",
    }
)
"""AWS error codes after which the same call, signed again, may succeed (besides any 5xx)."""
NOT_FOUND_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
LEASE_LOST_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"}
)
PURGE_BUSY_CODES = frozenset({"AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"})

MD5_MISMATCH = "MD5OfMessageBody does not match the body sent"
NOT_LISTED = "the response does not list this entry"

FifoIds = Callable[[str], tuple[str, str]]
"""Maps a body to its ``(MessageGroupId, MessageDeduplicationId)`` for FIFO queues."""

_IDS = tuple(str(i) for i in range(MAX_BATCH))


# -- clamps ------------------------------------------------------------------------------------


def delay_seconds(value: float) -> int:
    """SQS's whole-second delay for ``value``: rounded up (never early), 0 to 900.

    Anything below 0 (``-0.5`` included), above 900 or not a number is refused.
    """
    if not 0 <= value <= MAX_DELAY_SECONDS:
        raise ConfigurationError(f"SQS delay_seconds must be from 0 to {MAX_DELAY_SECONDS}, got {value!r}")
    return math.ceil(value)


def lease_seconds(value: float) -> int:
    """SQS's ``VisibilityTimeout`` for a lease: rounded up, clamped to 0..12 h."""
    return min(MAX_LEASE_SECONDS, max(0, math.ceil(value)))


def wait_seconds(value: float) -> int:
    """SQS's ``WaitTimeSeconds`` for a long poll: rounded up, clamped to 0..20."""
    return min(MAX_WAIT_SECONDS, max(0, math.ceil(value)))


def body_md5(text: str) -> str:
    """SQS's ``MD5OfMessageBody``: MD5 of the UTF-8 bytes (lone surrogates as SQS sees them)."""
    return hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


# -- SendMessageBatch ----------------------------------------------------------------------------


def send_entries(
    bodies: Sequence[str], delay: float = 0, *, fifo_ids: FifoIds | None = None, queue: str = ""
) -> list[dict[str, Any]]:
    """``SendMessageBatch`` entries (Ids ``"0"``..``"n-1"``) for 1-10 ``bodies``.

    ``DelaySeconds`` is always sent, as python-task-queue does (0 overrides a
    queue's default delay). FIFO queues (``fifo_ids`` given) take no delay; each
    entry gets the group and deduplication ids ``fifo_ids`` returns.
    """
    if not 1 <= len(bodies) <= MAX_BATCH:
        raise ConfigurationError(f"SendMessageBatch takes 1 to {MAX_BATCH} messages, got {len(bodies)}")
    for index, body in enumerate(bodies):
        if not isinstance(body, str):
            raise BackendError(
                f"SendMessageBatch: message body {index} is {type(body).__name__}, not str", queue=queue
            )
    whole = delay_seconds(delay)
    if fifo_ids is None:
        return [{"Id": _IDS[i], "MessageBody": b, "DelaySeconds": whole} for i, b in enumerate(bodies)]
    if whole:
        raise ConfigurationError(
            f"FIFO queue {queue!r} does not accept per-message delay_seconds "
            f"(got {delay}); set the queue's DelaySeconds attribute instead"
        )
    entries = []
    for i, body in enumerate(bodies):
        group, dedup = fifo_ids(body)
        entries.append(
            {"Id": _IDS[i], "MessageBody": body, "MessageGroupId": group, "MessageDeduplicationId": dedup}
        )
    return entries


def batch_failures(reply: Mapping[str, Any], bodies: Sequence[str]) -> list[EntryFailure]:
    """The entries of a ``SendMessageBatch`` for ``bodies`` that were not stored intact.

    * a ``Failed`` entry is reported as SQS gave it (``retryable = not SenderFault``);
      when the same id is also listed as ``Successful``, the ``Failed`` report wins;
    * a ``Successful`` entry whose ``MD5OfMessageBody`` differs from the body's MD5
      is a retryable ``MD5Mismatch``;
    * an entry the reply does not list is a retryable ``MissingFromResponse``.

    Ids that name no entry sent (out of range, not a number) are ignored; the
    entry they may have meant is then reported missing, never assumed sent.
    """
    count = len(bodies)
    failures: dict[int, EntryFailure] = {}
    for entry in reply.get("Failed") or ():
        index = _index(entry, count)
        if index is not None:
            failures[index] = EntryFailure(
                index,
                str(entry.get("Code") or "Failed"),
                str(entry.get("Message") or ""),
                retryable=not entry.get("SenderFault", False),
            )
    succeeded = [False] * count
    for entry in reply.get("Successful") or ():
        index = _index(entry, count)
        if index is None:
            continue
        succeeded[index] = True
        md5 = entry.get("MD5OfMessageBody")
        if md5 is not None and index not in failures and md5 != body_md5(bodies[index]):
            failures[index] = EntryFailure(index, "MD5Mismatch", MD5_MISMATCH)
    if not failures and all(succeeded):
        return []
    for index in range(count):
        if not succeeded[index] and index not in failures:
            failures[index] = EntryFailure(index, "MissingFromResponse", NOT_LISTED)
    return [failures[i] for i in sorted(failures)]


def _index(entry: Mapping[str, Any], count: int) -> int | None:
    ident = entry.get("Id")
    if isinstance(ident, str) and ident.isascii() and ident.isdigit():
        index = int(ident)
    elif isinstance(ident, int) and not isinstance(ident, bool):
        index = ident
    else:
        return None
    return index if 0 <= index < count else None


# -- errors ----------------------------------------------------------------------------------------


def is_retryable(status: int, codes: Iterable[str]) -> bool:
    """True when the same call, signed again, may succeed: HTTP 5xx or 429, or a
    throttling / transient code (:data:`RETRYABLE_ERROR_CODES`)."""
    return status >= 500 or status == 429 or not RETRYABLE_ERROR_CODES.isdisjoint(codes)


@dataclass(frozen=True)
class ErrorReply:
    """An SQS error reply, as botocore names its parts.

    ``code`` is the query-compatible code (the ``x-amzn-query-error`` header) when
    there is one, else the JSON ``__type``; ``query_code`` is then the ``__type``.
    """

    status: int
    code: str
    message: str
    query_code: str = ""
    fault: str = ""
    request_id: str = ""

    @property
    def codes(self) -> frozenset[str]:
        """Every code the reply names."""
        return frozenset(c for c in (self.code, self.query_code) if c)

    @property
    def retryable(self) -> bool:
        """See :func:`is_retryable`."""
        return is_retryable(self.status, self.codes)

    @classmethod
    def from_json(cls, status: int, headers: Mapping[str, str], body: bytes) -> ErrorReply:
        """Parse an AWS JSON 1.0 error reply (the fields botocore's parser would give)."""
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                data = {}
        except ValueError:
            data = {"message": body[:200].decode("utf-8", "replace")}
        message = str(data.get("message", data.get("Message", "")))
        code = str(data.get("__type") or status).split(":", 1)[0].rsplit("#", 1)[-1]
        query = headers.get("x-amzn-query-error", "").split(";")
        if len(query) == 2 and query[0]:
            return cls(status, query[0], message, code, query[1], headers.get("x-amzn-requestid", ""))
        return cls(status, code, message, request_id=headers.get("x-amzn-requestid", ""))

    @classmethod
    def from_botocore(cls, response: Mapping[str, Any]) -> ErrorReply:
        """From a botocore ``ClientError.response``."""
        info = response.get("Error", {})
        meta = response.get("ResponseMetadata", {})
        return cls(
            int(meta.get("HTTPStatusCode", 0) or 0),
            str(info.get("Code") or ""),
            str(info.get("Message") or ""),
            str(info.get("QueryErrorCode") or ""),
            str(info.get("Type") or ""),
            str(meta.get("RequestId") or ""),
        )


def error_for(reply: ErrorReply, operation: str, queue: str) -> TaskQueueError:
    """The package's error for an SQS error reply to ``operation`` on ``queue``."""
    if reply.codes & NOT_FOUND_CODES:
        return QueueNotFoundError(queue, f"{operation}: {reply.message or 'not found'}")
    text = f"{operation} failed: {reply.code or 'Unknown'}: {reply.message} (HTTP {reply.status})"
    if reply.codes & LEASE_LOST_CODES or (
        operation.startswith("ChangeMessageVisibility") and "receipt handle" in reply.message.lower()
    ):
        return LeaseLostError(text, queue=queue)
    return BackendError(text, queue=queue, retryable=reply.retryable)
