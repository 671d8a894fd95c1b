"""Run tasks without a queue: in this process or in a pool of processes.

Tasks still go through the payload format (encode, then decode in the executor),
so a task that could not cross a real queue fails here too, at insert time.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

from . import _task
from ._payload import ArrayFormat, check_array_format
from ._task import as_tasks, totask
from ._upload import reset_signals
from .errors import TaskExecutionError, TaskQueueError

_CHUNK = 512


class LocalTaskQueue:
    """Executes inserted tasks locally with ``parallel`` processes (1: in this process).

    ``insert`` collects tasks; ``insert_all`` and leaving a ``with`` block execute
    them. The first task that raises stops the run with a TaskExecutionError
    carrying its payload; a child process that dies raises instead of hanging.
    """

    def __init__(
        self,
        parallel: int | bool = 1,
        queue_name: str = "",
        queue_server: str = "",
        progress: bool = True,
        array_format: ArrayFormat = "list",
        start_method: str | None = None,
    ) -> None:
        if parallel is True:
            parallel = os.cpu_count() or 1
        if int(parallel) < 1:
            raise TaskQueueError(f"parallel must be >= 1, got {parallel}")
        self.parallel = int(parallel)
        self.progress = progress
        self.array_format = check_array_format(array_format)
        self.start_method = start_method or (
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        )
        self.queue_name = queue_name or "local"
        self._pending: list[str] = []

    def insert(
        self,
        tasks: Any,
        delay_seconds: float = 0,
        total: int | None = None,
        parallel: int | None = None,
        progress: bool = True,
    ) -> int:
        """Encode each task and keep it for :meth:`execute`; return how many."""
        count = 0
        for task in as_tasks(tasks):
            self._accept(_task.encode(totask(task), self.queue_name, self.array_format))
            count += 1
        return count

    def _accept(self, body: str) -> None:
        self._pending.append(body)

    def insert_all(
        self,
        tasks: Any,
        total: int | None = None,
        parallel: int | None = None,
        delay_seconds: float = 0,
        progress: bool | None = None,
    ) -> int:
        """Insert and execute now; return how many ran."""
        count = self.insert(tasks)
        self.execute(self.progress if progress is None else progress, parallel, total)
        return count

    def execute(self, progress: bool = True, parallel: int | None = None, total: int | None = None) -> int:
        """Run every pending task; return how many ran."""
        bodies, self._pending = self._pending, []
        workers = self.parallel if parallel is None else max(1, int(parallel))
        with tqdm(total=len(bodies), desc="Tasks", unit="task", disable=not progress) as bar:
            if workers == 1 or len(bodies) <= 1:
                for body in bodies:
                    _run_one(body)
                    bar.update()
            else:
                self._run_pool(bodies, workers, bar)
        return len(bodies)

    def _run_pool(self, bodies: list[str], workers: int, bar: tqdm[Any]) -> None:
        chunks = [bodies[i : i + _CHUNK] for i in range(0, len(bodies), _CHUNK)]
        ctx = multiprocessing.get_context(self.start_method)
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=reset_signals) as pool:
                for done in pool.map(_run_chunk, chunks):
                    bar.update(done)
        except BrokenProcessPool as e:
            raise TaskQueueError(
                f"a worker process died while executing {len(bodies)} local tasks "
                "(killed, out of memory, or os._exit in a task); some may not have run"
            ) from e

    def poll(self, *args: Any, **kwargs: Any) -> int:
        """Nothing to poll: local tasks run on insert."""
        return 0

    def __enter__(self) -> LocalTaskQueue:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.execute(self.progress)


class MockTaskQueue(LocalTaskQueue):
    """Executes each task inline the moment it is inserted (for tests)."""

    def _accept(self, body: str) -> None:
        _run_one(body)


def _run_one(body: str) -> None:
    try:
        totask(body).execute()
    except Exception as e:
        raise TaskExecutionError(body, e) from e


def _run_chunk(bodies: list[str]) -> int:
    for body in bodies:
        _run_one(body)
    return len(bodies)
