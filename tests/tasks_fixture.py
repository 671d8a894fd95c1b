"""Task definitions the worker tests run, in this process and in worker subprocesses.

Worker subprocesses load them with ``--import tests.tasks_fixture``. Every task
records what it did by appending a line to a file, so tests can count
executions across processes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tq_orchestrate import RegisteredTask, queueable


def append_line(path: str, line: str) -> None:
    """Append one line atomically enough for tests (one write with O_APPEND)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_lines(path: str | Path) -> list[str]:
    """The lines a task log holds (empty if it does not exist yet)."""
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


class WorkerAppendTask(RegisteredTask):
    """Appends ``text`` to ``path``."""

    def __init__(self, path: str, text: str) -> None:
        super().__init__(path, text)

    def execute(self) -> None:
        append_line(self.path, self.text)


class WorkerSleepTask(RegisteredTask):
    """Appends ``start <text> <pid>``, sleeps ``seconds``, appends ``done <text> <pid>``."""

    def __init__(self, path: str, text: str, seconds: float) -> None:
        super().__init__(path, text, seconds)

    def execute(self) -> None:
        append_line(self.path, f"start {self.text} {os.getpid()}")
        time.sleep(self.seconds)
        append_line(self.path, f"done {self.text} {os.getpid()}")


class WorkerFailTask(RegisteredTask):
    """Appends ``fail <text>`` and raises RuntimeError."""

    def __init__(self, path: str, text: str) -> None:
        super().__init__(path, text)

    def execute(self) -> None:
        append_line(self.path, f"fail {self.text}")
        raise RuntimeError(f"task {self.text} always fails")


class WorkerNoopTask(RegisteredTask):
    """Does nothing (benchmarks)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)

    def execute(self) -> None:
        pass


@queueable
def append_fn(path: str, text: str) -> None:
    """The queueable-function flavour of WorkerAppendTask."""
    append_line(path, text)


class WorkerEchoArgsTask(RegisteredTask):
    """Appends the JSON of the arguments ``execute`` received."""

    def __init__(self, path: str) -> None:
        super().__init__(path)

    def execute(self, *args: object, **kwargs: object) -> None:
        append_line(self.path, json.dumps({"args": list(args), "kwargs": kwargs}, sort_keys=True))


class Throttled(Exception):
    """A transient error a task raises (for ``backoff_exceptions``)."""


class WorkerThrottledTask(RegisteredTask):
    """Appends ``throttled <text>`` and raises :class:`Throttled`."""

    def __init__(self, path: str, text: str) -> None:
        super().__init__(path, text)

    def execute(self) -> None:
        append_line(self.path, f"throttled {self.text}")
        raise Throttled(self.text)


class WorkerPickyTask(RegisteredTask):
    """Refuses a negative ``n`` in its constructor (a payload it cannot be built from)."""

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        super().__init__(n)

    def execute(self) -> None:
        pass
