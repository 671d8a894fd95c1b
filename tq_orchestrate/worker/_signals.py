"""Stopping a worker: the stop flag the loop checks, and the signal handlers that set it."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterable, Iterator
from types import FrameType

__all__ = ["StopFlag", "handle_signals"]

log = logging.getLogger("tq_orchestrate.worker")


class StopFlag:
    """Set once to ask the loop to stop after the task in hand; also its sleep."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; return early when the flag is set."""
        self._event.wait(max(0.0, seconds))


@contextlib.contextmanager
def handle_signals(stop: StopFlag, signums: Iterable[int] = (signal.SIGINT,)) -> Iterator[None]:
    """Route ``signums`` to ``stop`` while the block runs, then restore the old handlers.

    The first signal sets the flag; the second raises KeyboardInterrupt (SIGINT)
    or ``SystemExit(128 + signum)`` and restores the system's default action, so
    a third one kills the process even while it is stuck in C code. Outside the
    main thread this does nothing (Python delivers signals only there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            stop.set(name)
            log.warning("%s received: finishing the task in hand, then exiting (again to exit now)", name)
            return
        log.warning("%s received again: exiting now", name)
        signal.signal(signum, signal.SIG_DFL)  # a third one ends the process even inside C code
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {s: signal.getsignal(s) for s in signums}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
