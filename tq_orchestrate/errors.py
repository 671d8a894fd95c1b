"""The one exception tree of tq_orchestrate.

Every error this package raises on purpose derives from :class:`TaskQueueError`,
an ordinary :class:`Exception` (never ``BaseException``)::

    TaskQueueError
    ├── ConfigurationError        bad URL, unknown scheme, bad option value
    │   └── UnknownSchemeError    URL scheme with no registered backend
    │                             (alias: UnsupportedProtocolError, upstream's name)
    ├── QueueNotFoundError        the named queue does not exist
    ├── PayloadError              a task cannot become a message, or back
    │   ├── SerializationError    a value cannot be encoded (task, field)
    │   │   └── TaskArgumentError arguments do not fit the function (also a TypeError)
    │   ├── PayloadTooLargeError  encoded task over a backend limit (size, limit)
    │   └── DeserializationError  a message body cannot become a task (raw text)
    │       └── UnsafeTaskError   names an unregistered class / disallowed module
    │           └── UnregisteredFunctionError  names no allowed queueable function
    ├── BackendError              the storage or transport failed (retryable flag)
    │   ├── LeaseLostError        delete/renew with a lease that is no longer held
    │   └── LedgerError           the completion ledger could not be read or written
    ├── UploadError               some tasks could not be inserted (counts, ids)
    ├── QueueEmptyError           lease() found nothing (also a LookupError, as upstream)
    └── TaskExecutionError        a task raised while executing locally (payload)
"""

from __future__ import annotations

from collections.abc import Sequence


class TaskQueueError(Exception):
    """Root of every error raised by tq_orchestrate."""

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take keyword context; rebuild from message + attributes so
        # errors cross process boundaries (upload shards, local pools) intact.
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[TaskQueueError], message: str, state: dict[str, object]) -> TaskQueueError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigurationError(TaskQueueError):
    """A URL, option or environment setting is invalid."""


class UnknownSchemeError(ConfigurationError):
    """The URL's scheme has no backend; the message lists the known ones."""

    def __init__(self, url: str, scheme: str, known: Sequence[str]) -> None:
        self.url = url
        self.scheme = scheme
        self.known = tuple(known)
        super().__init__(
            f"unknown queue URL scheme {scheme!r} in {url!r}; known schemes: {', '.join(sorted(self.known))}"
        )


UnsupportedProtocolError = UnknownSchemeError
"""python-task-queue's name for an unknown URL scheme."""


class QueueNotFoundError(TaskQueueError):
    """The queue named by a URL does not exist."""

    def __init__(self, queue: str, detail: str = "") -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} does not exist" + (f": {detail}" if detail else ""))


class PayloadError(TaskQueueError):
    """A task cannot be turned into a message or a message into a task."""


class SerializationError(PayloadError):
    """A task attribute holds a value the payload format cannot carry."""

    def __init__(self, task: str, field: str, reason: str) -> None:
        self.task = task
        self.field = field
        self.reason = reason
        super().__init__(f"cannot encode {task}.{field}: {reason}")


class TaskArgumentError(SerializationError, TypeError):
    """A queueable function cannot be called with a task's arguments.

    Also a :class:`TypeError`, which python-task-queue raises in this case.
    """


class PayloadTooLargeError(PayloadError):
    """An encoded task is larger than the backend accepts."""

    def __init__(self, task: str, size: int, limit: int) -> None:
        self.task = task
        self.size = size
        self.limit = limit
        super().__init__(f"task {task} encodes to {size} bytes, over the limit of {limit} bytes per message")


class DeserializationError(PayloadError):
    """A message body is not a valid task payload; ``raw`` holds the text."""

    def __init__(self, reason: str, raw: str | bytes | None = None) -> None:
        self.reason = reason
        self.raw = raw
        shown = "" if raw is None else f" (payload: {_clip(raw)})"
        super().__init__(f"invalid task payload: {reason}{shown}")


class UnsafeTaskError(DeserializationError):
    """A payload names a class or function this process may not instantiate."""


class UnregisteredFunctionError(UnsafeTaskError):
    """A payload names a function that is not an allowed queueable function
    (python-task-queue's name for this error)."""


class BackendError(TaskQueueError):
    """The queue's storage or transport failed.

    ``retryable`` says whether the same call may succeed if tried again.
    """

    def __init__(self, message: str, *, queue: str = "", retryable: bool = False) -> None:
        self.queue = queue
        self.retryable = retryable
        super().__init__(f"{queue}: {message}" if queue else message)


class LeaseLostError(BackendError):
    """A delete or renew used a lease that expired or was taken by another worker."""


class LedgerError(BackendError):
    """The completion ledger's store failed (a write is retried; its tasks are not deleted)."""


class UploadError(TaskQueueError):
    """``insert_all`` could not insert every task.

    ``inserted`` tasks are in the queue; ``failed`` lists ``(index, reason)`` for
    the tasks that are not (index counts from 0 in the input order).
    """

    def __init__(self, message: str, *, inserted: int, failed: Sequence[tuple[int, str]] = ()) -> None:
        self.reason = message
        self.inserted = inserted
        self.failed = list(failed)
        sample = ", ".join(f"#{i}: {why}" for i, why in self.failed[:5])
        more = f" (+{len(self.failed) - 5} more)" if len(self.failed) > 5 else ""
        detail = f"; not inserted: {sample}{more}" if self.failed else ""
        super().__init__(f"{message}; {inserted} tasks inserted{detail}")


class QueueEmptyError(TaskQueueError, LookupError):
    """``lease`` found no task (a LookupError too, as python-task-queue's is)."""


class TaskExecutionError(TaskQueueError):
    """A task raised while executing locally; ``payload`` identifies it."""

    def __init__(self, payload: str, cause: BaseException) -> None:
        self.payload = payload
        super().__init__(f"task failed with {type(cause).__name__}: {cause} (payload: {_clip(payload)})")


def _clip(raw: str | bytes, limit: int = 300) -> str:
    text = raw if isinstance(raw, str) else repr(raw)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text)} chars]"
