"""One process's way to one SQS queue: botocore clients, the queue URL, the transport.

Everything is built on first use and again in a forked child (a client, a lock
or a socket is never shared with the parent). The transport is the one the
resolved engine names (:func:`.transports.open_transport`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .._aws import AwsSettings, AwsTarget, QueueAddress, environment_target, resolve_settings
from .dead_letters import ensure_queues
from .options import SQSOptions
from .transports import (
    Boto3Transport,
    RoutedTransport,
    Transport,
    boto_errors,
    open_transport,
    resolve_engine,
)
from .transports import translate as _translate

if TYPE_CHECKING:
    from ..sqs_fast import FastClient

__all__ = ["Clients", "QueueConnection", "in_background"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Clients:
    """One process's botocore clients and the resolved queue URL."""

    pid: int
    settings: AwsSettings
    client: Any
    queue_url: str
    pool_size: int
    bulk_client: Any = None
    """``client`` without parameter validation, for the bulk sender (made on first use)."""


class QueueConnection:
    """Clients, queue URL and transport for the queue at ``url``, per process."""

    def __init__(self, url: str, address: QueueAddress, options: SQSOptions) -> None:
        self.url = url
        self.address = address
        self.options = options
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._clients: Clients | None = None
        self._transport: Transport | None = None
        self._target: AwsTarget | None = None
        self._lookup_client: FastClient | None = None
        """The FastClient that asked GetQueueUrl, handed on to the transport."""
        self.before_lookup: Callable[[AwsTarget], object] | None = None
        """Called with the endpoint-only target right before the fast engine asks
        GetQueueUrl, to start work that overlaps its round trip (see :func:`in_background`)."""

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # forked: never share a client, a socket or a lock
            self._lock = threading.Lock()
            self._pid = os.getpid()
            self._clients = None
            self._transport = None
            self._target = None
            self._lookup_client = None

    def clients(self, pool_size: int = 0, bulk: bool = False) -> Clients:
        """The clients, with at least ``pool_size`` pooled connections and, with
        ``bulk``, the bulk sender's client."""
        self._check_fork()
        clients = self._clients
        if clients is not None and clients.pool_size >= pool_size and (clients.bulk_client or not bulk):
            return clients
        with self._lock:
            return self.clients_locked(pool_size, bulk)

    def clients_locked(self, pool_size: int = 0, bulk: bool = False) -> Clients:
        """:meth:`clients` for a caller that holds the lock."""
        clients = self._clients
        if clients is None or clients.pool_size < pool_size:
            clients = self._connect(clients, pool_size)
        if bulk and clients.bulk_client is None:
            clients = replace(clients, bulk_client=_without_validation(clients.settings, clients.client))
        self._clients = clients
        return clients

    def target(self) -> AwsTarget:
        """Queue URL, endpoint, region and credentials for the fast engine.

        Where the environment alone decides them (:func:`.._aws.environment_target`)
        and the fast engine is chosen, botocore is not imported and GetQueueUrl is
        asked by the fast engine; otherwise they come from a botocore client.
        """
        self._check_fork()
        target = self._target
        if target is None:
            with self._lock:
                target = self._target or self._environment_target() or self._client_target()
                self._target = target
        return target

    def _client_target(self) -> AwsTarget:
        clients = self.clients_locked()
        return clients.settings.target(clients.queue_url, clients.client.meta.endpoint_url)

    def _environment_target(self) -> AwsTarget | None:
        opts = self.options
        if opts.engine == "boto3" or opts.create:
            return None
        found = environment_target(
            self.address,
            region=opts.region,
            endpoint_url=opts.endpoint_url,
            profile=opts.profile,
            allow_insecure_http=opts.allow_insecure_http,
        )
        if found is None or resolve_engine(opts.engine, found.endpoint_url) != "fast":
            return None
        queue_url = self.address.queue_url
        if queue_url is None:
            client = self._fast_client_for(found)
            if self.before_lookup is not None:
                self.before_lookup(found)
            try:
                queue_url = str(client.call("GetQueueUrl", {"QueueName": self.address.name})["QueueUrl"])
            except BaseException:  # no queue, no credentials...: nothing stays open
                client.close()
                raise
            client.queue_url = queue_url
            self._lookup_client = client
        return replace(found, queue_url=queue_url)

    @property
    def engine(self) -> str:
        """The ``engine`` option with ``"auto"`` resolved (see :func:`.transports.resolve_engine`)."""
        if self.options.engine != "auto":
            return self.options.engine
        return resolve_engine(self.options.engine, self.target().endpoint_url)

    def transport(self) -> Transport:
        """The transport of the resolved engine, built on first use."""
        self._check_fork()
        transport = self._transport
        if transport is not None:
            return transport
        boto3 = Boto3Transport(lambda: self.clients().client, self.address.name)
        transport = open_transport(self.engine, boto3, self._new_fast_client)
        with self._lock:
            if self._transport is None:
                self._transport = transport
            return self._transport

    def fast_client(self) -> FastClient | None:
        """The FastClient when the engine resolves to ``"fast"``, else None."""
        transport = self.transport()
        return transport.fast if isinstance(transport, RoutedTransport) else None  # type: ignore[return-value]

    def close(self) -> None:
        """Close this process's clients and connections; a later call reconnects."""
        self._check_fork()
        with self._lock:
            clients, self._clients = self._clients, None
            transport, self._transport = self._transport, None
            lookup, self._lookup_client = self._lookup_client, None
            self._target = None  # resolved again on reuse, as the clients are
        if lookup is not None:
            lookup.close()
        if clients is not None:
            clients.client.close()
            if clients.bulk_client is not None:
                clients.bulk_client.close()
        if transport is not None:
            transport.close()

    def _new_fast_client(self) -> FastClient:
        target = self.target()
        with self._lock:
            client, self._lookup_client = self._lookup_client, None
        return client or self._fast_client_for(target)

    def _fast_client_for(self, target: AwsTarget) -> FastClient:
        from ..sqs_fast import FastClient

        return FastClient(
            target,
            allow_insecure_http=self.options.allow_insecure_http,
            max_attempts=self.options.max_attempts,
        )

    def _connect(self, old: Clients | None, pool_size: int) -> Clients:
        opts = self.options
        settings = old.settings if old else self._settings()
        size = max(pool_size, opts.max_pool_connections, old.pool_size if old else 0)
        client = settings.create_client(
            max_pool_connections=size, retry_mode=opts.retry_mode, max_attempts=opts.max_attempts
        )
        known = self._target.queue_url if self._target is not None and not opts.create else None
        queue_url = old.queue_url if old else (known or self._lookup_queue_url(client))
        return Clients(os.getpid(), settings, client, queue_url, size)

    def _settings(self) -> AwsSettings:
        opts = self.options
        return resolve_settings(
            self.url,
            region=opts.region,
            endpoint_url=opts.endpoint_url,
            profile=opts.profile,
            allow_insecure_http=opts.allow_insecure_http,
        )

    def _lookup_queue_url(self, client: Any) -> str:
        name = self.address.name
        if not self.options.create and self.address.queue_url is not None:
            return self.address.queue_url
        operation = "CreateQueue" if self.options.create else "GetQueueUrl"
        try:
            if self.options.create:
                return ensure_queues(client, name, self.options.max_receives)[0]
            return str(client.get_queue_url(QueueName=name)["QueueUrl"])
        except boto_errors() as e:
            raise _translate(e, operation, name) from e


def _without_validation(settings: AwsSettings, client: Any) -> Any:
    """A client configured like ``client`` (same session, region and endpoint) but
    with ``parameter_validation=False``."""
    from botocore.config import Config

    return settings.session.create_client(
        "sqs",
        region_name=client.meta.region_name,
        endpoint_url=client.meta.endpoint_url,
        config=client.meta.config.merge(Config(parameter_validation=False)),
    )


def in_background(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` in a daemon thread; its result (or error) in the returned future.

    For work that can overlap a network round trip (imports, opening connections).
    """
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # handed to whoever reads the future
            future.set_exception(e)

    threading.Thread(target=run, name="tqo-ahead", daemon=True).start()
    return future
