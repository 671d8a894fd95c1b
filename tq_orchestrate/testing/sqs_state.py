"""In-memory SQS queues: the semantics behind the stand-in server, with no I/O.

:class:`SqsState` answers AWS JSON 1.0 SQS operations given as ``(name,
params)`` with a :class:`Reply`. It keeps visibility timeouts, delays, receive
counts, receipt handles (only the latest one deletes), the three approximate
counts (exact here), redrive to a dead-letter queue after ``maxReceiveCount``
receives, and FIFO deduplication ids (no FIFO ordering or group locking).

Not thread-safe: the server calls it from its event loop thread only.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from ._batches import _batch_entries, _message_id, _plain_batch, _utf8_len
from .sqs_messages import (
    _DEDUP_SECONDS,
    _HEX2,
    _INVALID_CHARS,
    _QUEUE_NAME,
    DELAYED,
    INFLIGHT,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    VISIBLE,
    Message,
    Params,
    Queue,
    Reply,
    SqsFault,
    _invalid,
    md5_hex,
)

__all__ = ["Message", "Queue", "Reply", "SqsFault", "SqsState", "md5_hex"]


class SqsState:
    """Queues by name, and the SQS operations on them.

    ``store=False`` accepts and acknowledges messages without keeping them (a
    sink for upload benchmarks); counts then stay at zero.
    """

    def __init__(
        self,
        endpoint_url: str = "http://127.0.0.1",
        *,
        account: str = "000000000000",
        region: str = "us-east-1",
        store: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.account = account
        self.region = region
        self.store = store
        self.clock = clock
        self.queues: dict[str, Queue] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._id_prefix = f"{int(time.time()) & 0xFFFFFFFF:08x}-5e5e-4000-8000"
        self._id_head = (-1, "")  # a block of 256 message ids, and their common head
        self._queue_names: dict[str, str] = {}  # queue URL -> name, as queue() reads it
        self.operations: dict[str, Callable[[Params], dict[str, Any]]] = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "ListQueues": self.list_queues,
            "DeleteQueue": self.delete_queue,
            "GetQueueAttributes": self.get_queue_attributes,
            "SetQueueAttributes": self.set_queue_attributes,
            "PurgeQueue": self.purge_queue,
            "SendMessage": self.send_message,
            "SendMessageBatch": self.send_message_batch,
            "ReceiveMessage": self.receive_message,
            "DeleteMessage": self.delete_message,
            "DeleteMessageBatch": self.delete_message_batch,
            "ChangeMessageVisibility": self.change_message_visibility,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
        }

    def handle(self, operation: str, params: Params) -> Reply:
        """Run one operation; errors become SQS error replies."""
        handler = self.operations.get(operation)
        try:
            if handler is None:
                raise SqsFault("UnsupportedOperation", f"operation {operation!r} is not supported")
            return Reply(200, handler(params))
        except SqsFault as e:
            return e.reply()
        except (KeyError, TypeError, ValueError) as e:
            return _invalid(f"invalid request for {operation}: {type(e).__name__}: {e}").reply()

    # -- queues ------------------------------------------------------------------

    def create_queue(self, params: Params) -> dict[str, Any]:
        name = str(params["QueueName"])
        if not _QUEUE_NAME.match(name):
            raise _invalid(f"invalid queue name {name!r}")
        attributes = {str(k): str(v) for k, v in (params.get("Attributes") or {}).items()}
        existing = self.queues.get(name)
        if existing is not None:
            if any(existing.attributes.get(k) != v for k, v in attributes.items()):
                raise SqsFault(
                    "QueueNameExists",
                    f"queue {name} exists with other attributes",
                    query_code="QueueAlreadyExists",
                )
            return {"QueueUrl": existing.url}
        if name.endswith(".fifo") != (attributes.get("FifoQueue", "false").lower() == "true"):
            raise _invalid("a FIFO queue name ends in .fifo and sets FifoQueue=true")
        url = f"{self.endpoint_url}/{self.account}/{name}"
        arn = f"arn:aws:sqs:{self.region}:{self.account}:{name}"
        self.queues[name] = Queue(name, url, arn, attributes)
        return {"QueueUrl": url}

    def queue(self, params: Params) -> Queue:
        """The queue named by ``params["QueueUrl"]`` (any host; the last path part is the name)."""
        url = str(params.get("QueueUrl") or "")
        queue = self.queues.get(url.rstrip("/").rsplit("/", 1)[-1])
        if queue is None:
            raise SqsFault(
                "QueueDoesNotExist",
                "The specified queue does not exist.",
                query_code="AWS.SimpleQueueService.NonExistentQueue",
            )
        return queue

    def get_queue_url(self, params: Params) -> dict[str, Any]:
        return {"QueueUrl": self.queue({"QueueUrl": str(params["QueueName"])}).url}

    def list_queues(self, params: Params) -> dict[str, Any]:
        prefix = str(params.get("QueueNamePrefix") or "")
        return {"QueueUrls": [q.url for q in self.queues.values() if q.name.startswith(prefix)]}

    def delete_queue(self, params: Params) -> dict[str, Any]:
        del self.queues[self.queue(params).name]
        return {}

    def set_queue_attributes(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        queue.attributes.update({str(k): str(v) for k, v in (params.get("Attributes") or {}).items()})
        return {}

    def get_queue_attributes(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        self._promote(queue)
        visible, inflight, delayed = queue.counts
        values = {
            "ApproximateNumberOfMessages": visible,
            "ApproximateNumberOfMessagesNotVisible": inflight,
            "ApproximateNumberOfMessagesDelayed": delayed,
            "QueueArn": queue.arn,
            "CreatedTimestamp": queue.created,
            "LastModifiedTimestamp": queue.created,
            "VisibilityTimeout": 30,
            "DelaySeconds": 0,
            "MaximumMessageSize": MAX_MESSAGE_BYTES,
            "MessageRetentionPeriod": 345600,
            "ReceiveMessageWaitTimeSeconds": 0,
            **queue.attributes,
        }
        names = list(params.get("AttributeNames") or ["All"])
        chosen = values if "All" in names else {k: values[k] for k in names if k in values}
        return {"Attributes": {k: str(v) for k, v in chosen.items()}}

    def purge_queue(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        queue.messages.clear()
        queue.ready.clear()
        queue.timers.clear()
        queue.counts[:] = [0, 0, 0]
        return {}

    # -- sending -------------------------------------------------------------------

    def send_message(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        entry = {k: v for k, v in params.items() if k != "QueueUrl"}
        problem = self._check_entry(queue, entry)
        if problem is not None:
            raise SqsFault(problem[0], problem[1])
        message = self._store(queue, entry)
        out = {"MessageId": message.message_id, "MD5OfMessageBody": message.md5}
        if message.sequence:
            out["SequenceNumber"] = message.sequence
        return out

    def send_message_batch(self, params: Params, fail: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """``fail(body)`` (fault injection) refuses chosen entries with a retryable ``Failed`` entry."""
        queue = self.queue(params)
        entries = _batch_entries(params)
        if sum(_utf8_len(str(e.get("MessageBody", ""))) for e in entries) > MAX_BATCH_BYTES:
            raise SqsFault(
                "BatchRequestTooLong",
                "batch requests may hold at most 1048576 bytes",
                query_code="AWS.SimpleQueueService.BatchRequestTooLong",
            )
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        if not queue.fifo and fail is None:
            entries = self._store_plain(queue, entries, successful)
        for entry in entries:
            problem = self._check_entry(queue, entry)
            if problem is not None:
                failed.append(
                    {"Id": entry["Id"], "Code": problem[0], "Message": problem[1], "SenderFault": True}
                )
                continue
            if fail is not None and fail(str(entry["MessageBody"])):
                failed.append(
                    {
                        "Id": entry["Id"],
                        "Code": "InternalError",
                        "Message": "injected entry failure",
                        "SenderFault": False,
                    }
                )
                continue
            message = self._store(queue, entry)
            ok = {"Id": entry["Id"], "MessageId": message.message_id, "MD5OfMessageBody": message.md5}
            if message.sequence:
                ok["SequenceNumber"] = message.sequence
            successful.append(ok)
        return {"Successful": successful, "Failed": failed}

    def send_plain_batch(self, params: Params) -> bytes | None:
        """The upload hot path: ``SendMessageBatch``'s reply as JSON bytes, or None with nothing done.

        ``params`` as a JSON parser gives them (plain dicts, lists, str, int). It
        answers only a batch that :meth:`send_message_batch` would store whole
        through :meth:`_store_plain`: a standard queue, 1 to 10 entries with
        distinct ids of ``[A-Za-z0-9_-]``, each a non-empty ``str`` body of at most
        256 Ki characters that SQS allows, an ``int`` delay of 0 to 900 s (or the
        queue's default) and no message attributes, within the batch size limit.
        It checks the whole batch at once, stores it like ``_store_plain`` and
        returns what ``json.dumps(document, separators=(",", ":"))`` writes for the
        same document. For anything else (errors included) it returns None before
        changing anything, and :meth:`handle` answers the request as usual.
        """
        entries, url = params.get("Entries"), params.get("QueueUrl")
        if type(entries) is not list or not 0 < len(entries) <= 10 or type(url) is not str:
            return None
        name = self._queue_names.get(url)
        if name is None:
            if len(self._queue_names) >= 64:
                self._queue_names.clear()
            name = self._queue_names[url] = url.rstrip("/").rsplit("/", 1)[-1]
        queue = self.queues.get(name)
        if queue is None or queue.fifo:
            return None
        default_delay = 0
        if "DelaySeconds" in queue.attributes:
            try:
                default_delay = int(queue.number("DelaySeconds", 0))
            except (ValueError, OverflowError):  # a NaN or infinite default: handle() says what it says
                return None
        batch = _plain_batch(entries, default_delay)
        if batch is None:
            return None
        ids, bodies, delays, digests = batch
        head, tails = self._message_ids(len(ids))
        if self.store:
            messages, ready, counts, seq = queue.messages, queue.ready, queue.counts, self._seq
            now, sent_ms = self.clock(), int(time.time() * 1000)
            for tail, body, digest, delay in zip(tails, bodies, digests, delays, strict=True):
                message_id = head + tail
                message = Message(message_id, body, digest, sent_ms)
                messages[message_id] = message
                if delay > 0:
                    self._set_state(queue, message, DELAYED, now + delay, counted=False)
                else:  # _set_state(queue, message, VISIBLE, counted=False), inline: a new message is VISIBLE
                    token = message.token = next(seq)
                    ready.append((message, token))
                    counts[VISIBLE] += 1
        # {"Successful":[{"Id":..,"MessageId":..,"MD5OfMessageBody":..},..],"Failed":[]}; the ids
        # match _PLAIN_IDS and the rest is hex, so nothing needs escaping
        rows = zip(ids, tails, digests, strict=True)
        successful = '"},{"Id":"'.join(
            [f'{i}","MessageId":"{head}{t}","MD5OfMessageBody":"{d}' for i, t, d in rows]
        )
        return ('{"Successful":[{"Id":"' + successful + '"}],"Failed":[]}').encode()

    def _message_ids(self, count: int) -> tuple[str, list[str]]:
        """The next ``count`` message ids (those ``count`` calls of ``next(self._ids)`` would make),
        as a head common to all and their tails: ``head + tail`` each."""
        first = next(self._ids)
        self._ids = itertools.count(first + count)
        low = first & 0xFF
        if low + count > 256:
            return "", [f"{self._id_prefix}-{n:012x}" for n in range(first, first + count)]
        block, head = self._id_head
        if block != first >> 8:
            block, head = first >> 8, f"{self._id_prefix}-{first >> 8:010x}"  # 10 hex digits, then 2
            self._id_head = block, head
        return head, _HEX2[low : low + count]

    def _store_plain(
        self, queue: Queue, entries: list[Params], successful: list[dict[str, Any]]
    ) -> list[Params]:
        """The fast path for a standard queue: store the plain entries, return the others."""
        now, sent_ms = self.clock(), int(time.time() * 1000)
        default_delay = int(queue.number("DelaySeconds", 0))
        prefix, ids, md5, invalid = self._id_prefix, self._ids, hashlib.md5, _INVALID_CHARS.search
        rest: list[Params] = []
        for entry in entries:
            body, delay = entry.get("MessageBody"), entry.get("DelaySeconds", default_delay)
            if (
                type(body) is not str
                or not body
                or len(body) > MAX_MESSAGE_BYTES // 4
                or type(delay) is not int
                or not 0 <= delay <= 900
                or "MessageAttributes" in entry
                or invalid(body)
            ):
                rest.append(entry)  # checked and stored one by one
                continue
            digest = md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()
            message_id = f"{prefix}-{next(ids):012x}"
            if self.store:
                message = Message(message_id, body, digest, sent_ms)
                queue.messages[message_id] = message
                if delay > 0:
                    self._set_state(queue, message, DELAYED, now + delay, counted=False)
                else:
                    self._set_state(queue, message, VISIBLE, counted=False)
            successful.append({"Id": entry["Id"], "MessageId": message_id, "MD5OfMessageBody": digest})
        return rest

    def _check_entry(self, queue: Queue, entry: Params) -> tuple[str, str] | None:
        body = entry.get("MessageBody")
        if not isinstance(body, str) or not body:
            return "InvalidParameterValue", "MessageBody must be a non-empty string"
        if len(body) > MAX_MESSAGE_BYTES // 4 and len(body.encode("utf-8")) > MAX_MESSAGE_BYTES:
            return "InvalidParameterValue", f"message body over {MAX_MESSAGE_BYTES} bytes"
        if _INVALID_CHARS.search(body):
            return "InvalidMessageContents", "message body holds characters SQS does not allow"
        delay = entry.get("DelaySeconds")
        if delay is not None and not (isinstance(delay, int) and 0 <= delay <= 900):
            return "InvalidParameterValue", f"DelaySeconds must be an integer from 0 to 900, got {delay!r}"
        if queue.fifo:
            if not entry.get("MessageGroupId"):
                return "MissingParameter", "FIFO queues need a MessageGroupId"
            if delay:
                return "InvalidParameterValue", "FIFO queues take no per-message DelaySeconds"
        return None

    def _store(self, queue: Queue, entry: Params) -> Message:
        body = str(entry["MessageBody"])
        now = self.clock()
        dedup_id = entry.get("MessageDeduplicationId")
        if queue.fifo and dedup_id is None and queue.attributes.get("ContentBasedDeduplication") == "true":
            dedup_id = hashlib.sha256(body.encode("utf-8")).hexdigest()
        if queue.fifo and dedup_id is not None:
            seen = queue.dedup.get(str(dedup_id))
            if seen is not None and seen[0] > now:
                kept = queue.messages.get(seen[1])
                if kept is not None:
                    return kept
        message = Message(
            f"{self._id_prefix}-{next(self._ids):012x}", body, md5_hex(body), int(time.time() * 1000)
        )
        if entry.get("MessageAttributes"):
            message.attributes = dict(entry["MessageAttributes"])
        if queue.fifo:
            message.group_id = str(entry.get("MessageGroupId"))
            message.dedup_id = None if dedup_id is None else str(dedup_id)
            message.sequence = f"{next(self._seq):020d}"
            if dedup_id is not None:
                queue.dedup[str(dedup_id)] = (now + _DEDUP_SECONDS, message.message_id)
        if not self.store:
            return message
        queue.messages[message.message_id] = message
        given = entry.get("DelaySeconds")  # an explicit 0 overrides the queue's default
        delay = int(queue.number("DelaySeconds", 0) if given is None else given)
        if delay > 0:
            self._set_state(queue, message, DELAYED, now + delay, counted=False)
        else:
            self._set_state(queue, message, VISIBLE, counted=False)
        return message

    # -- receiving ---------------------------------------------------------------

    def receive_message(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        count = int(params.get("MaxNumberOfMessages") or 1)
        if not 1 <= count <= 10:
            raise _invalid(
                f"MaxNumberOfMessages must be 1 to 10, got {count}",
            )
        visibility = params.get("VisibilityTimeout")
        lease = float(queue.number("VisibilityTimeout", 30) if visibility is None else visibility)
        names = set(params.get("AttributeNames") or ()) | set(params.get("MessageSystemAttributeNames") or ())
        messages = [self._render(m, names) for m in self.receive(queue, count, lease)]
        return {"Messages": messages} if messages else {}  # SQS omits the key when empty

    def receive(self, queue: Queue, count: int, lease_seconds: float) -> list[Message]:
        """Lease up to ``count`` visible messages (moving over-received ones to the DLQ)."""
        self._promote(queue)
        now = self.clock()
        redrive = self._redrive(queue)
        out: list[Message] = []
        while queue.ready and len(out) < count:
            message, token = queue.ready.popleft()
            if message.token != token or message.state != VISIBLE:
                continue
            if redrive is not None and message.receive_count >= redrive[1]:
                self._move(queue, message, redrive[0])
                continue
            message.receive_count += 1
            if not message.first_receive_ms:
                message.first_receive_ms = int(time.time() * 1000)
            message.receipt = f"{message.message_id}#{message.receive_count}#{next(self._seq)}"
            self._set_state(queue, message, INFLIGHT, now + lease_seconds)
            out.append(message)
        return out

    def has_visible(self, queue: Queue) -> bool:
        """True if a receive would find a message now."""
        self._promote(queue)
        return queue.counts[VISIBLE] > 0

    def _render(self, message: Message, names: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "MessageId": message.message_id,
            "ReceiptHandle": message.receipt,
            "MD5OfBody": message.md5,
            "Body": message.body,
        }
        if names:
            every = "All" in names
            values = {
                "ApproximateReceiveCount": message.receive_count,
                "SentTimestamp": message.sent_ms,
                "ApproximateFirstReceiveTimestamp": message.first_receive_ms,
                "SenderId": "AIDASTANDIN",
            }
            if message.group_id is not None:
                values.update(MessageGroupId=message.group_id, SequenceNumber=message.sequence)
                if message.dedup_id is not None:
                    values["MessageDeduplicationId"] = message.dedup_id
            out["Attributes"] = {k: str(v) for k, v in values.items() if every or k in names}
        if message.attributes:
            out["MessageAttributes"] = message.attributes
        return out

    def _redrive(self, queue: Queue) -> tuple[Queue, int] | None:
        policy = queue.attributes.get("RedrivePolicy")
        if not policy:
            return None
        data = json.loads(policy)
        target = self.queues.get(str(data["deadLetterTargetArn"]).rsplit(":", 1)[-1])
        return None if target is None else (target, int(data["maxReceiveCount"]))

    def _move(self, queue: Queue, message: Message, target: Queue) -> None:
        self._forget(queue, message)
        target.messages[message.message_id] = message
        message.receipt = ""
        self._set_state(target, message, VISIBLE, counted=False)

    # -- after receiving ---------------------------------------------------------------

    def delete_message(self, params: Params) -> dict[str, Any]:
        self.delete(self.queue(params), str(params["ReceiptHandle"]))
        return {}

    def delete_message_batch(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        successful, failed = [], []
        for entry in _batch_entries(params):
            try:
                self.delete(queue, str(entry["ReceiptHandle"]))
                successful.append({"Id": entry["Id"]})
            except SqsFault as e:
                failed.append({"Id": entry["Id"], "Code": e.code, "Message": e.message, "SenderFault": True})
        return {"Successful": successful, "Failed": failed}

    def delete(self, queue: Queue, receipt: str) -> None:
        """Delete the message if ``receipt`` is its latest receipt handle (else do nothing)."""
        message = queue.messages.get(_message_id(receipt))
        if message is not None and message.receipt == receipt:
            self._forget(queue, message)

    def change_message_visibility(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        self.change_visibility(queue, str(params["ReceiptHandle"]), float(params["VisibilityTimeout"]))
        return {}

    def change_message_visibility_batch(self, params: Params) -> dict[str, Any]:
        queue = self.queue(params)
        successful, failed = [], []
        for entry in _batch_entries(params):
            try:
                self.change_visibility(queue, str(entry["ReceiptHandle"]), float(entry["VisibilityTimeout"]))
                successful.append({"Id": entry["Id"]})
            except SqsFault as e:
                failed.append({"Id": entry["Id"], "Code": e.code, "Message": e.message, "SenderFault": True})
        return {"Successful": successful, "Failed": failed}

    def change_visibility(self, queue: Queue, receipt: str, seconds: float) -> None:
        """Set an in-flight message's remaining lease; 0 makes it visible now."""
        if not 0 <= seconds <= 43200:
            raise _invalid(f"VisibilityTimeout must be 0 to 43200, got {seconds:g}")
        self._promote(queue)
        message = queue.messages.get(_message_id(receipt))
        if message is None or message.receipt != receipt or message.state != INFLIGHT:
            raise SqsFault(
                "MessageNotInflight",
                "The message referred to isn't in flight.",
                query_code="AWS.SimpleQueueService.MessageNotInflight",
            )
        if seconds == 0:
            self._set_state(queue, message, VISIBLE)
        else:
            self._set_state(queue, message, INFLIGHT, self.clock() + seconds)

    # -- bookkeeping ----------------------------------------------------------------

    def _set_state(
        self, queue: Queue, message: Message, state: int, until: float = 0.0, *, counted: bool = True
    ) -> None:
        counts = queue.counts
        if counted:  # leaving a state it was counted in
            counts[message.state] -= 1
        counts[state] += 1
        message.state = state
        message.token = next(self._seq)  # unique: older ready/timer entries no longer match
        if state == VISIBLE:
            queue.ready.append((message, message.token))
        else:
            heapq.heappush(queue.timers, (until, message.token, message, message.token))

    def _forget(self, queue: Queue, message: Message) -> None:
        del queue.messages[message.message_id]
        queue.counts[message.state] -= 1
        message.token = -1  # invalidates its entries in ready and timers

    def _promote(self, queue: Queue) -> None:
        timers, now = queue.timers, self.clock()
        while timers and timers[0][0] <= now:
            _, _, message, token = heapq.heappop(timers)
            if message.token == token and message.state != VISIBLE:
                self._set_state(queue, message, VISIBLE)

    def bodies(self, name: str) -> list[str]:
        """Every stored message body of queue ``name`` (any state), oldest first."""
        return [m.body for m in self.queues[name].messages.values()]
