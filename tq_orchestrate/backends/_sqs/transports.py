"""The SQS engines behind one small interface, and the one place that picks them.

A :class:`Transport` makes one SQS operation: parameters in, botocore-shaped
result dictionary out, failures raised as the package's errors (never
botocore's). :class:`Boto3Transport` goes through a botocore client;
:class:`~tq_orchestrate.backends.sqs_fast.FastClient` speaks AWS JSON 1.0
itself. :func:`resolve_engine` decides between them and :func:`open_transport`
builds what the decision names; :func:`translate` is the one mapping of
botocore's errors to ours.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import BackendError, ConfigurationError, TaskQueueError
from .protocol import ErrorReply, error_for

if TYPE_CHECKING:
    import botocore.exceptions

__all__ = [
    "FAST_OPERATIONS",
    "Boto3Transport",
    "RoutedTransport",
    "Transport",
    "boto_errors",
    "open_transport",
    "resolve_engine",
    "translate",
]


def boto_errors() -> tuple[type[Exception], ...]:
    """What a botocore client call raises for a failed request (also :data:`BOTO_ERRORS`).

    A function, so that botocore is imported only by code that uses it: an
    ``except boto_errors():`` clause is evaluated only when something was raised.
    """
    import botocore.exceptions
    from botocore.parsers import ResponseParserError

    return (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, ResponseParserError)


def __getattr__(name: str) -> Any:
    if name == "BOTO_ERRORS":  # the old constant, now without importing botocore at import
        return boto_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FAST_OPERATIONS = frozenset({"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibility"})
"""Operations the fast engine makes without botocore (the worker's hot path)."""


class Transport(ABC):
    """Makes SQS operations for one queue; raises only the package's errors."""

    name: str = "transport"
    """``"boto3"`` or ``"fast"``: the engine behind :meth:`call`."""

    @abstractmethod
    def call(self, operation: str, params: dict[str, Any], wait_seconds: float = 0) -> dict[str, Any]:
        """Run ``operation`` (e.g. ``"ReceiveMessage"``) with botocore's parameter names.

        ``wait_seconds`` is a long poll's wait, so a transport can allow for it.
        """

    def close(self) -> None:  # noqa: B027 - optional hook; nothing to release by default
        """Release connections; a later call reconnects."""


class Boto3Transport(Transport):
    """Calls through a botocore SQS client (its own retries, proxies, mocks)."""

    name = "boto3"

    def __init__(self, client: Callable[[], Any], queue: str) -> None:
        self.client = client
        """Returns the current client (it is remade for a larger connection pool)."""
        self.queue = queue

    def call(self, operation: str, params: dict[str, Any], wait_seconds: float = 0) -> dict[str, Any]:
        """One client method call, botocore errors translated (see :func:`translate`)."""
        method = getattr(self.client(), snake(operation))
        try:
            result: dict[str, Any] = method(**params)
        except boto_errors() as e:
            raise translate(e, operation, self.queue) from e
        return result


class RoutedTransport(Transport):
    """The fast engine: ``operations`` through ``fast``, every other one through ``fallback``."""

    name = "fast"

    def __init__(self, fast: Transport, fallback: Transport, operations: frozenset[str] = FAST_OPERATIONS):
        self.fast = fast
        self.fallback = fallback
        self.operations = operations

    def call(self, operation: str, params: dict[str, Any], wait_seconds: float = 0) -> dict[str, Any]:
        """Route ``operation`` to the transport that makes it."""
        chosen = self.fast if operation in self.operations else self.fallback
        return chosen.call(operation, params, wait_seconds)

    def close(self) -> None:
        """Close the fast transport's connections (the fallback's client is the backend's)."""
        self.fast.close()


def resolve_engine(option: str, endpoint_url: str) -> str:
    """``"fast"`` or ``"boto3"`` for the ``engine`` option (``"auto"`` resolved).

    ``"auto"`` means fast unless an HTTP proxy applies to the endpoint (only
    botocore uses proxies) or moto's in-process ``mock_aws`` is active (it
    intercepts botocore, not sockets).
    """
    if option != "auto":
        return option
    from .._aws import proxy_for

    if proxy_for(endpoint_url) or _moto_mock_active():
        return "boto3"
    return "fast"


def open_transport(engine: str, boto3: Boto3Transport, make_fast: Callable[[], Transport]) -> Transport:
    """The transport for a resolved ``engine``: ``boto3`` itself, or fast routed over it."""
    if engine == "boto3":
        return boto3
    if engine == "fast":
        return RoutedTransport(make_fast(), boto3)
    raise ConfigurationError(f"unknown SQS engine {engine!r}; known: boto3, fast")


def _moto_mock_active() -> bool:
    """True inside moto's ``mock_aws``, which only botocore's requests can reach."""
    models = sys.modules.get("moto.core.models")
    stubber = getattr(models, "botocore_stubber", None)
    return bool(getattr(stubber, "enabled", False))


def snake(operation: str) -> str:
    """botocore's method name for an operation (``SendMessageBatch`` -> ``send_message_batch``)."""
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


def error_codes(error: botocore.exceptions.ClientError) -> frozenset[str]:
    """The codes a botocore ClientError names."""
    return ErrorReply.from_botocore(error.response).codes


def translate(error: Exception, operation: str, queue: str) -> TaskQueueError:
    """Map a botocore error to the package's exception tree (never with credentials)."""
    import botocore.exceptions
    from botocore.parsers import ResponseParserError

    if isinstance(error, botocore.exceptions.ClientError):
        return error_for(ErrorReply.from_botocore(error.response), operation, queue)
    if isinstance(
        error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return ConfigurationError(f"{operation}: AWS credentials are missing or incomplete")
    transient = isinstance(
        error,
        botocore.exceptions.HTTPClientError | botocore.exceptions.ConnectionError | ResponseParserError,
    )
    text = f"{operation} failed: {type(error).__name__}: {error}"
    return BackendError(text, queue=queue, retryable=transient)
