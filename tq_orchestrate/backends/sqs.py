"""Amazon SQS (or any SQS-compatible endpoint) through botocore.

URLs: ``sqs://name``, ``https://sqs.<region>.amazonaws.com/<account>/<name>``,
or an emulator's ``http://127.0.0.1:PORT/<account>/<name>``; see
:mod:`._aws` for how region, endpoint and credentials are found.

Options (``from_url`` keyword arguments; plain values, so a backend pickles as
URL + options and is rebuilt in child processes):

``region``, ``endpoint_url``, ``profile``
    Override the AWS configuration chain.
``allow_insecure_http``
    Permit plain ``http://`` to a host that is not loopback (default False).
``engine``
    ``"auto"`` (default), ``"fast"`` or ``"boto3"``: how uploads and the worker's
    calls reach SQS. ``"fast"`` uploads with
    :class:`tq_orchestrate.backends.sqs_fast.FastSender` and makes
    ``ReceiveMessage``, ``DeleteMessageBatch`` and ``ChangeMessageVisibility``
    with :class:`tq_orchestrate.backends.sqs_fast.FastClient` (own SigV4 signing
    and keep-alive HTTP/1.1; tested equal to botocore's signature, requests and
    results); everything else goes through botocore. ``"auto"`` uses it unless an
    HTTP proxy applies to the endpoint, which only boto3 supports, or moto's
    in-process ``mock_aws`` is active (it intercepts botocore, not sockets).
``create``, ``max_receives``
    Create the queue if missing (default False); with ``max_receives`` it gets a
    ``<name>-dlq`` dead-letter queue and a redrive policy (:func:`ensure_queue_pair`).
``message_group_id``, ``deduplication``
    FIFO queues only, see :meth:`SQSBackend.build_entries`.
``retry_mode``, ``max_attempts``, ``max_pool_connections``
    botocore's transport retries and connection pool.

The boto3 engine's bulk sender (:meth:`SQSBackend.open_sender`) calls
``SendMessageBatch`` through a second botocore client, configured like the first
but with ``parameter_validation=False``: this module builds every parameter
itself (bodies are checked to be ``str``), SQS validates them again, and the
client-side check cost about 8% of the client CPU of each call.

SQS facts this backend lives with: counts are approximate (``exact=False``);
leased messages cannot be listed, so :meth:`SQSBackend.release_all` is refused;
``PurgeQueue`` is allowed once per 60 s (see :meth:`SQSBackend.purge`).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ..errors import BackendError, ConfigurationError, LeaseLostError
from ._aws import AwsTarget, check_endpoint, parse_queue_url, resolve_settings
from ._sqs import protocol
from ._sqs.connection import QueueConnection, in_background
from ._sqs.dead_letters import (
    ATTRIBUTES,
    ReceivedMemo,
    dead_letter_attributes,
    dead_letter_from,
    ensure_queues,
    redrive_policy,
    sent_after,
    sent_at_ms,
)
from ._sqs.options import DEFAULT_ENGINE, ENGINES, SQSOptions, check_int
from ._sqs.protocol import MAX_BATCH, MAX_DELAY_SECONDS, MAX_LEASE_SECONDS, MAX_WAIT_SECONDS
from ._sqs.transports import boto_errors, error_codes
from ._sqs.transports import translate as _translate
from .base import Backend, BatchSender, Capabilities, Counts, DeadLetter, EntryFailure, Message, ThreadSender

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ._http11 import HttpPool

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_ENGINE", "ENGINES", "SQSBackend", "SQSOptions", "ensure_queue_pair"]


FIFO_GROUPS = 16
"""Default FIFO message groups; each task's group is picked by its body hash."""
REDRIVE_CLOCK_SKEW_MS = 5000


class SQSBackend(Backend):
    """An SQS queue; one botocore client per instance (and per process), built lazily."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch_count=MAX_BATCH,
        max_batch_bytes=1_048_576,
        max_message_bytes=1_048_576,
        max_receive_count=MAX_BATCH,
        max_lease_seconds=MAX_LEASE_SECONDS,
        max_delay_seconds=MAX_DELAY_SECONDS,
        exact_counts=False,
        counts_completions=False,
        dead_letters=True,
        upload_concurrency=32,
    )
    scan_wait_seconds: ClassVar[int] = 1
    """Long-poll wait when scanning a queue to its end (dead letters, redrive, purge
    fallback): a short poll may miss messages held by other SQS servers."""

    def __init__(self, url: str, options: SQSOptions, raw_options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self._raw_options = dict(raw_options)
        self.address = parse_queue_url(url)
        self._connections = QueueConnection(url, self.address, options)
        self._dlq_urls: dict[str, str] = {}
        self._memo = ReceivedMemo()
        self._nonce = uuid.uuid4().hex
        self._sequence = itertools.count()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQSBackend:
        """Validate ``url`` and options; nothing is contacted until first use."""
        parsed = SQSOptions.parse(options)
        backend = cls(url, parsed, options)
        if backend.address.queue_url is not None:
            check_endpoint(backend.address.queue_url, parsed.allow_insecure_http, what="queue URL")
        if parsed.endpoint_url is not None:
            check_endpoint(parsed.endpoint_url, parsed.allow_insecure_http)
        return backend

    def __reduce__(self) -> tuple[Callable[[str, dict[str, Any]], SQSBackend], tuple[str, dict[str, Any]]]:
        return _rebuild, (self.url, dict(self._raw_options))

    # -- connection ---------------------------------------------------------------

    @property
    def fifo(self) -> bool:
        """True for FIFO queues (``.fifo`` names)."""
        return self.address.fifo

    @property
    def queue_url(self) -> str:
        """The full queue URL (looked up with GetQueueUrl on first use)."""
        return self._connections.clients().queue_url

    @property
    def client(self) -> Any:
        """This process's botocore SQS client."""
        return self._connections.clients().client

    @property
    def target(self) -> AwsTarget:
        """Queue URL, endpoint, region and credentials for the fast upload engine."""
        return self._connections.target()

    def _call(self, operation: str, queue_url: str | None = None, **params: Any) -> dict[str, Any]:
        """Run one SQS operation on this queue (or ``queue_url``) through this process's
        transport (:mod:`._sqs.transports`); errors come back as the package's."""
        url = queue_url or self._connections.clients().queue_url
        wait = params.get("WaitTimeSeconds", 0)
        return self._connections.transport().call(operation, {"QueueUrl": url, **params}, wait)

    @property
    def call_engine(self) -> str:
        """``"fast"`` or ``"boto3"``: what makes this process's receive, delete and
        change_lease calls (the :attr:`engine`, resolved once per process)."""
        return self._connections.transport().name

    def close(self) -> None:
        """Close this process's clients and connections; a later call reconnects."""
        self._connections.close()
        self._memo.clear()

    # -- sending ------------------------------------------------------------------

    def build_entries(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[dict[str, Any]]:
        """SendMessageBatch entries (Ids ``"0"``..``"n-1"``) for ``bodies``.

        FIFO queues: ``MessageGroupId`` is the ``message_group_id`` option, or by
        default one of 16 groups chosen by the body's hash (parallel consumers,
        ordering kept only among tasks of one group). ``MessageDeduplicationId``
        is, with ``deduplication="unique"`` (default), a hash of the body and a
        never-repeating nonce, so identical tasks inserted on purpose are all kept
        (a batch resent after a lost reply may then be stored twice);
        with ``"content"`` it is the body hash alone, so identical bodies sent
        within SQS's 5-minute window (including resends after a lost reply) are
        stored once. FIFO queues refuse per-message delays.
        """
        return protocol.send_entries(
            bodies, delay_seconds, fifo_ids=self.fifo_ids if self.fifo else None, queue=self.address.name
        )

    def fifo_ids(self, body: str) -> tuple[str, str]:
        """``(MessageGroupId, MessageDeduplicationId)`` for one body of a FIFO queue.

        Both engines use it (see :meth:`build_entries` for the rules). Unique ids
        come from a random per-instance nonce, the process id and a counter.
        """
        digest = hashlib.sha256(body.encode()).hexdigest()
        group = self.options.message_group_id or f"tq-{int(digest[:8], 16) % FIFO_GROUPS:02d}"
        if self.options.deduplication == "content":
            return group, digest
        return group, _sha256(f"{self._nonce}:{os.getpid()}:{next(self._sequence)}:{digest}")

    def send_batch(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[EntryFailure]:
        """SendMessageBatch; refused, missing or MD5-mismatched entries come back as failures."""
        return self._send(bodies, delay_seconds)

    def _send(
        self, bodies: Sequence[str], delay_seconds: float = 0, bulk: bool = False
    ) -> list[EntryFailure]:
        """:meth:`send_batch`; with ``bulk`` through the client without parameter validation."""
        if not bodies:
            return []
        entries = self.build_entries(bodies, delay_seconds)
        conn = self._connections.clients(bulk=bulk)
        try:
            client = conn.bulk_client if bulk else conn.client
            response = client.send_message_batch(QueueUrl=conn.queue_url, Entries=entries)
        except boto_errors() as e:
            raise _translate(e, "SendMessageBatch", self.address.name) from e
        return protocol.batch_failures(response, bodies)

    def open_sender(self, concurrency: int | None = None, expected_batches: int | None = None) -> BatchSender:
        """The bulk upload engine chosen by the ``engine`` option (see the module docstring).

        When the fast engine asks GetQueueUrl itself, its connection pool is built
        in a background thread during that round trip (importing asyncio, ~15 ms),
        and up to ``expected_batches`` connections are opened ahead.
        """
        ahead: list[Future[HttpPool]] = []
        if self.options.engine != "boto3":

            def open_ahead(found: AwsTarget) -> None:
                ahead.append(in_background(_open_pool, found, concurrency, expected_batches or 0))

            self._connections.before_lookup = open_ahead
        try:
            engine = self.engine
        except BaseException:
            _discard(ahead)
            raise
        finally:
            self._connections.before_lookup = None
        if engine == "fast":
            from .sqs_fast import DEFAULT_CONCURRENCY, FastSender

            pool = _pool_or_none(ahead)
            try:
                return FastSender(
                    self.target,
                    concurrency or DEFAULT_CONCURRENCY,
                    allow_insecure_http=self.options.allow_insecure_http,
                    fifo_ids=self.fifo_ids if self.fifo else None,
                    pool=pool,
                )
            except BaseException:
                if pool is not None:
                    pool.close()
                raise
        _discard(ahead)
        threads = concurrency or self.capabilities.upload_concurrency
        self._connections.clients(pool_size=threads, bulk=True)
        return ThreadSender(cast(Backend, _BulkSend(self)), threads)

    @property
    def engine(self) -> str:
        """The upload engine in use: the ``engine`` option with ``"auto"`` resolved."""
        return self._connections.engine

    # -- leasing ------------------------------------------------------------------

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]:
        """ReceiveMessage (up to 10, visibility = lease); long-polls up to ``wait_seconds``."""
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            remaining = deadline - time.monotonic()
            messages = self._receive_once(max_messages, lease_seconds, remaining)
            if messages or remaining <= MAX_WAIT_SECONDS:
                return messages

    def _receive_once(
        self, max_messages: int, lease_seconds: float, wait_seconds: float, queue_url: str | None = None
    ) -> list[Message]:
        raw = self._receive_raw(max_messages, lease_seconds, wait_seconds, queue_url)
        messages = [_message(m) for m in raw]
        if queue_url is None:
            self._memo.remember(messages)
        return messages

    def _receive_raw(
        self, max_messages: int, lease_seconds: float, wait_seconds: float, queue_url: str | None = None
    ) -> list[dict[str, Any]]:
        response = self._call(
            "ReceiveMessage",
            queue_url,
            MaxNumberOfMessages=min(MAX_BATCH, max(1, int(max_messages))),
            VisibilityTimeout=protocol.lease_seconds(lease_seconds),
            WaitTimeSeconds=protocol.wait_seconds(wait_seconds),
            MessageSystemAttributeNames=_SYSTEM_ATTRIBUTES,
            # the older name too: some emulators (local-aws-sqs) only honour this one
            AttributeNames=_SYSTEM_ATTRIBUTES,
            MessageAttributeNames=ATTRIBUTES,
        )
        return [m for m in response.get("Messages", []) if _body_intact(m, self.address.name)]

    def delete(self, handles: Sequence[str]) -> int:
        """DeleteMessageBatch in chunks of 10; return how many SQS confirmed."""
        deleted = 0
        for start in range(0, len(handles), MAX_BATCH):
            deleted += self._delete_chunk(list(handles[start : start + MAX_BATCH]))
        return deleted

    def _delete_chunk(self, handles: list[str], queue_url: str | None = None) -> int:
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        response = self._call("DeleteMessageBatch", queue_url, Entries=entries)
        self._memo.forget(handles)
        failed = response.get("Failed", [])
        server_side = [f for f in failed if not f.get("SenderFault", False)]
        if server_side:
            codes = sorted({str(f.get("Code")) for f in server_side})
            raise BackendError(
                f"DeleteMessageBatch: {len(server_side)} of {len(handles)} deletes failed on the "
                f"server ({', '.join(codes)}); {len(response.get('Successful', []))} deleted",
                queue=self.address.name,
                retryable=True,
            )
        return len(response.get("Successful", []))

    def change_lease(self, handle: str, lease_seconds: float) -> None:
        """ChangeMessageVisibility (capped at 12 h); a dead handle raises LeaseLostError."""
        self._call(
            "ChangeMessageVisibility",
            ReceiptHandle=handle,
            VisibilityTimeout=protocol.lease_seconds(lease_seconds),
        )

    def release_all(self) -> int:
        """Refused: SQS cannot list or reach messages leased by other consumers."""
        raise ConfigurationError(
            f"SQS queue {self.address.name!r} cannot release all leased messages: SQS gives no way to "
            "list in-flight messages; their leases expire on their own (or release the ones you hold "
            "with change_lease(handle, 0))"
        )

    # -- queue state --------------------------------------------------------------

    def counts(self) -> Counts:
        """The three approximate counts; ``dead`` is the dead-letter queue's depth."""
        attributes = self._attributes(self._call("GetQueueAttributes", AttributeNames=["All"]))
        dlq = self._dlq(attributes)
        dead = None
        if dlq is not None:
            response = self._call("GetQueueAttributes", dlq[0], AttributeNames=["All"])
            dead = _pending(self._attributes(response))
        return Counts(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            leased=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            dead=dead,
            exact=False,
        )

    @staticmethod
    def _attributes(response: dict[str, Any]) -> dict[str, str]:
        return dict(response.get("Attributes", {}))

    def purge(self) -> None:
        """PurgeQueue. SQS allows one per 60 s: if one is already running, the visible
        messages are received and deleted instead (messages leased elsewhere are left
        to the running purge). SQS may still delete messages sent in the 60 s after a
        purge."""
        conn = self._connections.clients()
        try:
            conn.client.purge_queue(QueueUrl=conn.queue_url)
        except boto_errors() as e:
            if _is_client_error(e) and error_codes(cast(Any, e)) & protocol.PURGE_BUSY_CODES:
                self._drain(None)
                return
            raise _translate(e, "PurgeQueue", self.address.name) from e
        self._memo.clear()

    def _drain(self, queue_url: str | None) -> int:
        """Receive and delete until a long poll comes back empty; return how many."""
        drained = 0
        while True:
            raw = self._receive_raw(MAX_BATCH, 60, self.scan_wait_seconds, queue_url)
            if not raw:
                return drained
            drained += self._delete_chunk([m["ReceiptHandle"] for m in raw], queue_url)

    # -- dead letters -------------------------------------------------------------

    def _dlq(self, attributes: dict[str, str] | None = None) -> tuple[str, int] | None:
        """The dead-letter queue's URL and maxReceiveCount from the redrive policy, or None."""
        if attributes is None:
            response = self._call("GetQueueAttributes", AttributeNames=["RedrivePolicy"])
            attributes = self._attributes(response)
        policy = redrive_policy(attributes)
        if policy is None:
            return None
        arn, max_receives = policy
        url = self._dlq_urls.get(arn)
        if url is None:
            url = self._queue_url_from_arn(arn)
            self._dlq_urls[arn] = url
        return url, max_receives

    def _queue_url_from_arn(self, arn: str) -> str:
        parts = arn.split(":")
        if len(parts) != 6:
            raise BackendError(f"unexpected dead-letter queue ARN {arn!r}", queue=self.address.name)
        client = self._connections.clients().client
        try:
            url = client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        except boto_errors() as e:
            raise _translate(e, "GetQueueUrl", parts[5]) from e
        return str(url)

    def _require_dlq(self, what: str) -> tuple[str, int]:
        dlq = self._dlq()
        if dlq is None:
            raise ConfigurationError(
                f"SQS queue {self.address.name!r} has no dead-letter queue, so it cannot {what}; "
                "create one with ensure_queue_pair() or the create=True, max_receives=N options"
            )
        return dlq

    def dead_letter(self, handle: str, error: str) -> None:
        """Copy a message this backend received to the dead-letter queue, then delete it.

        Only handles from this instance's :meth:`receive` work (SQS returns no body
        for a handle). The dead-letter copy is a new SQS message; the error, the
        receive count and the original message id travel as message attributes.
        """
        dlq = self._require_dlq("dead-letter messages")[0]
        message = self._memo.get(handle)
        if message is None:
            raise LeaseLostError(
                "dead_letter needs a handle received by this backend in this process "
                "(unknown, already deleted, or forgotten)",
                queue=self.address.name,
            )
        attributes = dead_letter_attributes(message, error)
        params: dict[str, Any] = {"MessageBody": message.body, "MessageAttributes": attributes}
        if dlq.endswith(".fifo"):
            params.update(self.build_entries([message.body])[0])
            del params["Id"]
        self._call("SendMessage", dlq, **params)
        self._delete_chunk([handle])

    def record_error(self, handle: str, error: str) -> None:
        """Remember ``error`` for the message, by message id, in this process only.

        SQS messages cannot carry it: when SQS's redrive policy moves the message,
        :meth:`dead_letters` of this backend shows the last error recorded here.
        Use :meth:`dead_letter` to move a message together with its error.
        """
        self._memo.record_error(handle, error)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Peek at up to ``limit`` dead letters, oldest first.

        Each is received with a short lease and made visible again at once.
        ``receive_count`` is the count recorded by :meth:`dead_letter`, or else the
        redrive policy's maxReceiveCount (SQS moved it after that many receives).
        """
        dlq, max_receives = self._require_dlq("list dead letters")
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < limit:
            raw = self._receive_raw(min(MAX_BATCH, limit - len(seen)), 30, self.scan_wait_seconds, dlq)
            fresh = [m for m in raw if m["MessageId"] not in seen]
            seen.update((m["MessageId"], m) for m in raw)
            if not fresh:
                break
        self._release_raw(list(seen.values()), dlq)
        ordered = sorted(seen.values(), key=sent_at_ms)
        errors = self._memo.errors()
        return [dead_letter_from(m, errors, max_receives) for m in ordered[:limit]]

    def _release_raw(self, raw: list[dict[str, Any]], queue_url: str) -> None:
        for start in range(0, len(raw), MAX_BATCH):
            chunk = raw[start : start + MAX_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ]
            self._call("ChangeMessageVisibilityBatch", queue_url, Entries=entries)

    def redrive(self) -> int:
        """Move every dead letter back to this queue; return how many moved.

        Stops at dead letters sent after the redrive began (plus a 5 s allowance for
        clock skew): tasks that failed again stay put, so a fast-failing worker cannot
        keep the redrive going forever.
        """
        dlq = self._require_dlq("redrive")[0]
        cutoff_ms = int(time.time() * 1000) + REDRIVE_CLOCK_SKEW_MS
        moved = 0
        while True:
            raw = self._receive_raw(MAX_BATCH, 60, self.scan_wait_seconds, dlq)
            old, new = sent_after(raw, cutoff_ms)
            if new:
                self._release_raw(new, dlq)
            if not old:
                return moved
            moved += self._move_back(old, dlq)

    def _move_back(self, raw: list[dict[str, Any]], dlq: str) -> int:
        failures = self.send_batch([m["Body"] for m in raw])
        refused = {f.index for f in failures}
        sent = [m for i, m in enumerate(raw) if i not in refused]
        if sent:
            self._delete_chunk([m["ReceiptHandle"] for m in sent], dlq)
        if failures:
            self._release_raw([m for i, m in enumerate(raw) if i in refused], dlq)
            raise BackendError(
                f"redrive: {len(failures)} messages could not be sent back "
                f"({', '.join(sorted({f.code for f in failures}))}); they stay in the dead-letter queue",
                queue=self.address.name,
                retryable=any(f.retryable for f in failures),
            )
        return len(sent)


def _is_client_error(error: Exception) -> bool:
    import botocore.exceptions

    return isinstance(error, botocore.exceptions.ClientError)


def _open_pool(found: AwsTarget, concurrency: int | None, expected_batches: int) -> HttpPool:
    from .sqs_fast import DEFAULT_CONCURRENCY, open_pool

    size = concurrency or DEFAULT_CONCURRENCY
    return open_pool(found, size, warm=min(size, expected_batches))


def _pool_or_none(ahead: list[Future[HttpPool]]) -> HttpPool | None:
    """The pool built during GetQueueUrl, or None (not built; or failed: the sender
    builds its own and reports the error)."""
    if not ahead:
        return None
    try:
        return ahead[0].result()
    except Exception:
        log.debug("opening connections ahead failed", exc_info=True)
        return None


def _discard(ahead: list[Future[HttpPool]]) -> None:
    """Close the pool built during GetQueueUrl once it exists (it is not used)."""
    for future in ahead:
        future.add_done_callback(_close_pool)


def _close_pool(future: Future[HttpPool]) -> None:
    if future.exception() is None:
        future.result().close()


def _rebuild(url: str, options: dict[str, Any]) -> SQSBackend:
    return SQSBackend.from_url(url, **options)


class _BulkSend:
    """What the boto3 engine's sender threads call: ``send_batch``, the only method
    ThreadSender uses, through the client without parameter validation."""

    def __init__(self, backend: SQSBackend) -> None:
        self._backend = backend

    def send_batch(self, bodies: Sequence[str], delay_seconds: float = 0) -> list[EntryFailure]:
        return self._backend._send(bodies, delay_seconds, bulk=True)


# -- queue creation -----------------------------------------------------------------


def ensure_queue_pair(
    name: str,
    max_receives: int,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    profile: str | None = None,
    allow_insecure_http: bool = False,
) -> tuple[str, str]:
    """Create ``name`` and ``<name>-dlq`` (FIFO: ``<base>-dlq.fifo``) if missing and
    attach a redrive policy moving a message after ``max_receives`` receives.

    ``name`` may also be an SQS URL. Returns ``(queue_url, dlq_url)``; safe to repeat.
    """
    check_int("max_receives", max_receives, 1, 1000)
    settings = resolve_settings(
        name if "://" in name else f"sqs://{name}",
        region=region,
        endpoint_url=endpoint_url,
        profile=profile,
        allow_insecure_http=allow_insecure_http,
    )
    client = settings.create_client(max_pool_connections=2)
    queue = settings.address.name
    try:
        queue_url, dlq_url = ensure_queues(client, queue, max_receives)
    except boto_errors() as e:
        raise _translate(e, "CreateQueue", queue) from e
    finally:
        client.close()
    assert dlq_url is not None
    return queue_url, dlq_url


# -- translation helpers ------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_SYSTEM_ATTRIBUTES: list[Any] = ["ApproximateReceiveCount", "SentTimestamp"]


def _body_intact(raw: dict[str, Any], queue: str) -> bool:
    """False (and a warning) when ``MD5OfBody`` is given and does not match the body.

    The damaged copy is skipped: the message stays in SQS and is received again
    when the lease ends.
    """
    md5 = raw.get("MD5OfBody")
    if md5 is None or md5 == protocol.body_md5(raw["Body"]):
        return True
    log.warning(
        "queue %s: message %s arrived damaged (MD5OfBody mismatch); skipped", queue, raw.get("MessageId")
    )
    return False


def _message(raw: dict[str, Any]) -> Message:
    attributes = raw.get("Attributes", {})
    return Message(
        handle=raw["ReceiptHandle"],
        body=raw["Body"],
        message_id=raw["MessageId"],
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
    )


def _pending(attributes: dict[str, str]) -> int:
    return sum(
        int(attributes.get(k, 0))
        for k in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )
