"""What the worker needs of a queue: the :class:`WorkQueue` protocol (``TaskQueue`` provides it)."""

from __future__ import annotations

from typing import Any, Protocol

from ..backends.base import Backend, Message

__all__ = ["WorkQueue"]


class WorkQueue(Protocol):
    """What the loop needs of a queue (``TaskQueue`` provides it)."""

    @property
    def backend(self) -> Backend: ...

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]: ...

    def decode(self, message: Message) -> Any: ...

    def delete(self, tasks: Any) -> int: ...

    def renew(self, task: Any, seconds: float) -> Any: ...

    def release(self, task: Any, delay_seconds: float = 0) -> Any: ...
