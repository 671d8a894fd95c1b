"""tq_orchestrate: fan out small independent tasks to a queue and keep workers fed.

Public API only; the implementation lives in private modules. Importing this
package has no side effects and does not import boto3, Dagster or taskqueue.
"""

from ._local import LocalTaskQueue, MockTaskQueue
from ._queue import TaskQueue
from ._task import (
    FunctionTask,
    MockTask,
    PrintTask,
    RegisteredTask,
    allow_modules,
    func2task,
    import_task_modules,
    queueable,
    tofunc,
    totask,
)
from ._upload import RetryPolicy
from .errors import (
    BackendError,
    ConfigurationError,
    DeserializationError,
    LeaseLostError,
    LedgerError,
    PayloadError,
    PayloadTooLargeError,
    QueueEmptyError,
    QueueNotFoundError,
    SerializationError,
    TaskArgumentError,
    TaskExecutionError,
    TaskQueueError,
    UnknownSchemeError,
    UnregisteredFunctionError,
    UnsafeTaskError,
    UnsupportedProtocolError,
    UploadError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigurationError",
    "DeserializationError",
    "FunctionTask",
    "LeaseLostError",
    "LedgerError",
    "LocalTaskQueue",
    "MockTask",
    "MockTaskQueue",
    "PayloadError",
    "PayloadTooLargeError",
    "PrintTask",
    "QueueEmptyError",
    "QueueNotFoundError",
    "RegisteredTask",
    "RetryPolicy",
    "SerializationError",
    "TaskArgumentError",
    "TaskExecutionError",
    "TaskQueue",
    "TaskQueueError",
    "UnknownSchemeError",
    "UnregisteredFunctionError",
    "UnsafeTaskError",
    "UnsupportedProtocolError",
    "UploadError",
    "allow_modules",
    "func2task",
    "import_task_modules",
    "queueable",
    "tofunc",
    "totask",
]
