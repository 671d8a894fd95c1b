"""Task definitions shared by the core tests (importable by child processes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tq_orchestrate import RegisteredTask, queueable

RESULTS: list[Any] = []


class PrintTask(RegisteredTask):
    """The upstream README's example, under our package's names."""

    def __init__(self, txt: Any = "") -> None:
        super().__init__(txt)
        self.txt = str(txt)

    def execute(self) -> None:
        if self.txt:
            print(str(self) + ": " + self.txt)
        else:
            print(self)
        RESULTS.append(self.txt)


class RecordTask(RegisteredTask):
    """Appends its number to a file (works across processes)."""

    def __init__(self, path: str, n: int) -> None:
        super().__init__(path, n)

    def execute(self) -> None:
        with open(self.path, "a") as f:
            f.write(f"{self.n}\n")


class ArrayTask(RegisteredTask):
    """Holds arrays; keeps their dtype with the typed format."""

    array_format = "typed"

    def __init__(self, data: Any, offset: Any = 0) -> None:
        super().__init__(data, offset)

    def execute(self) -> None:
        RESULTS.append(np.asarray(self.data) + self.offset)


class FailTask(RegisteredTask):
    def __init__(self, reason: str = "boom") -> None:
        super().__init__(reason)

    def execute(self) -> None:
        raise ValueError(self.reason)


class DieTask(RegisteredTask):
    def __init__(self) -> None:
        super().__init__()

    def execute(self) -> None:
        os._exit(3)


class KwTask(RegisteredTask):
    """A task taking only keyword arguments, like upstream's MockTask."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def execute(self) -> None:
        RESULTS.append(dict(self._args))


class BadInit(RegisteredTask):
    """A task whose constructor always raises."""

    def __init__(self) -> None:
        raise ValueError("BadInit cannot start")


@queueable
def record(path: str, n: int, suffix: str = "") -> None:
    with open(path, "a") as f:
        f.write(f"{n}{suffix}\n")


@queueable
def remember(*values: Any, **named: Any) -> None:
    RESULTS.append((values, named))


def not_queueable(x: int) -> int:
    return x


def read_numbers(path: str | Path) -> list[int]:
    """The numbers RecordTask/record wrote, in file order."""
    p = Path(path)
    return [int(line.rstrip("x")) for line in p.read_text().split()] if p.exists() else []
