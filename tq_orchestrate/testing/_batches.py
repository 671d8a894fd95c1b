"""Reading ``SendMessageBatch`` entries for the SQS stand-in (the general and the plain path)."""

from __future__ import annotations

import hashlib
from itertools import repeat
from typing import Any

from .sqs_messages import (
    _ENTRY_ID,
    _INVALID_CHARS,
    _NOT_ALLOWED_ASCII,
    _PLAIN_IDS,
    _SHORT_BODY,
    _SHORT_IDS,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Params,
    SqsFault,
    _short_md5,
)


def _batch_entries(params: Params) -> list[Params]:
    entries = params.get("Entries")
    if not isinstance(entries, list) or not entries:
        raise SqsFault(
            "EmptyBatchRequest",
            "a batch request needs at least one entry",
            query_code="AWS.SimpleQueueService.EmptyBatchRequest",
        )
    if len(entries) > 10:
        raise SqsFault(
            "TooManyEntriesInBatchRequest",
            f"at most 10 entries per batch, got {len(entries)}",
            query_code="AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        )
    ids = [str(e.get("Id", "")) for e in entries]
    bad = next((i for i in ids if not _ENTRY_ID.match(i)), None)
    if bad is not None:
        raise SqsFault(
            "InvalidBatchEntryId",
            f"invalid batch entry id {bad!r}",
            query_code="AWS.SimpleQueueService.InvalidBatchEntryId",
        )
    if len(set(ids)) != len(ids):
        raise SqsFault(
            "BatchEntryIdsNotDistinct",
            "batch entry ids must be distinct",
            query_code="AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        )
    return entries


def _plain_batch(
    entries: list[Any], default_delay: int
) -> tuple[list[str], list[str], list[int], list[str]] | None:
    """(ids, bodies, delays, body MD5s) of a batch :meth:`SqsState.send_plain_batch` takes, else None.

    Checks the batch as a whole: a handful of C calls, not a dozen per entry.
    """
    try:
        ids = [entry["Id"] for entry in entries]
        bodies = [entry["MessageBody"] for entry in entries]
        text = "".join(bodies)  # TypeError unless every body is a str (JSON makes no subclasses)
        distinct = set(ids)
        attributes = any(map(dict.__contains__, entries, repeat("MessageAttributes")))
    except (KeyError, TypeError):  # an entry that is no dict, lacks an id or a body, ...
        return None
    delays = [entry.get("DelaySeconds", default_delay) for entry in entries]
    if (
        len(distinct) != len(ids)
        or not (distinct <= _SHORT_IDS or _plain_ids(ids))
        or set(map(type, delays)) != {int}
        or min(delays) < 0
        or max(delays) > 900
        or not all(bodies)
        or (len(text) > MAX_MESSAGE_BYTES // 4 and max(map(len, bodies)) > MAX_MESSAGE_BYTES // 4)
        or attributes
    ):
        return None
    utf8 = text.encode("utf-8", "surrogatepass")  # lone surrogates are refused just below
    if len(utf8) > MAX_BATCH_BYTES:
        return None
    if text.isascii():
        if len(utf8.translate(None, _NOT_ALLOWED_ASCII)) != len(utf8):
            return None
    elif _INVALID_CHARS.search(text):
        return None
    md5 = hashlib.md5
    digests = [(_short_md5 if len(body) < _SHORT_BODY else md5)(body.encode()).hexdigest() for body in bodies]
    return ids, bodies, delays, digests


def _plain_ids(ids: list[Any]) -> bool:
    """True if every id is a ``str`` of 1 to 80 of ``[A-Za-z0-9_-]``."""
    try:
        joined = ",".join(ids)
    except TypeError:  # an id that is no str
        return False
    return joined.count(",") == len(ids) - 1 and _PLAIN_IDS.fullmatch(joined) is not None


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _message_id(receipt: str) -> str:
    message_id, sep, _ = receipt.partition("#")
    if not sep:
        raise SqsFault("ReceiptHandleIsInvalid", f"The input receipt handle {receipt[:60]!r} is invalid.")
    return message_id
