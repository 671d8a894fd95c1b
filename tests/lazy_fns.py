"""Queueable functions imported only when a worker allows this module."""

from tq_orchestrate import queueable


@queueable
def double(x: int) -> int:
    return 2 * x
