"""A module no payload may reach: importing it, calling ``touch`` or building ``Canary`` leaves a trace.

The hostile-input tests point payloads at it. It is never decorated with
``@queueable`` nor allowed, and ``Canary`` is not a RegisteredTask, so a worker
that honours its allow-lists never imports or runs anything here. The trace
goes to the file named by the ``TQO_CANARY`` environment variable.
"""

from __future__ import annotations

import os


def _trace(what: str) -> None:
    path = os.environ.get("TQO_CANARY")
    if path:
        with open(path, "a") as f:
            f.write(what + "\n")


_trace("imported tests.reliability.canary")


def touch(path: str = "") -> None:
    """Leaves a trace (and writes ``path`` if given)."""
    _trace("called touch")
    if path:
        with open(path, "a") as f:
            f.write("touched\n")


class Canary:
    """Not a RegisteredTask: a payload naming it must be refused."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        _trace("constructed Canary")

    def execute(self) -> None:
        _trace("executed Canary")
