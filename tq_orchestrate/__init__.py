"""tq_orchestrate: fan out small independent tasks to a queue and keep workers fed.

Public API only; the implementation lives in private modules. Importing this
package has no side effects and does not import boto3 or Dagster.
"""

from ._local import LocalTaskQueue, MockTaskQueue
from ._queue import TaskQueue
from ._task import FunctionTask, RegisteredTask, allow_modules, func2task, queueable, totask
from ._upload import RetryPolicy
from .errors import (
    BackendError,
    ConfigurationError,
    DeserializationError,
    LeaseLostError,
    PayloadError,
    PayloadTooLargeError,
    QueueEmptyError,
    QueueNotFoundError,
    SerializationError,
    TaskExecutionError,
    TaskQueueError,
    UnknownSchemeError,
    UnsafeTaskError,
    UploadError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigurationError",
    "DeserializationError",
    "FunctionTask",
    "LeaseLostError",
    "LocalTaskQueue",
    "MockTaskQueue",
    "PayloadError",
    "PayloadTooLargeError",
    "QueueEmptyError",
    "QueueNotFoundError",
    "RegisteredTask",
    "RetryPolicy",
    "SerializationError",
    "TaskExecutionError",
    "TaskQueue",
    "TaskQueueError",
    "UnknownSchemeError",
    "UnsafeTaskError",
    "UploadError",
    "allow_modules",
    "func2task",
    "queueable",
    "totask",
]
