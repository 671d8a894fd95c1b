"""Run tasks without a queue: in this process or in a pool of processes.

Tasks still go through the payload format (encode, then decode in the executor),
so a task that could not cross a real queue fails here too, at insert time.
python-task-queue's task objects run too: the classes and functions of the
objects inserted into a queue are the upstream ones its executor admits.
"""

from __future__ import annotations

import os
from typing import Any

from . import _task, _upstream
from ._payload import ArrayFormat, check_array_format
from ._progress import Bar, progress_bar
from ._task import as_tasks, totask
from ._upload import default_start_method, reset_signals
from .errors import TaskExecutionError, TaskQueueError

_CHUNK = 512

Pending = tuple[str, tuple[Any, ...], dict[str, Any]]
"""A task's message body, with the extra arguments to ``execute`` it was inserted with."""


class LocalTaskQueue:
    """Executes inserted tasks locally with ``parallel`` processes (1: in this process).

    ``insert`` collects tasks; ``insert_all`` and leaving a ``with`` block execute
    them. As in python-task-queue, an item may be a ``(task, args, kwargs)`` tuple:
    the task runs as ``task.execute(*args, **kwargs)``. ``parallel=True`` uses
    every core; ``queue_name`` and ``queue_server`` are accepted for
    compatibility (the name goes into each payload's envelope).

    The first task that raises stops the run with a TaskExecutionError
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
        self.start_method = start_method or default_start_method()
        self.queue_name = queue_name or "local"
        self.queue_server = queue_server
        self._pending: list[Pending] = []
        self._admit: set[str] = set()

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
        for item in as_tasks(tasks):
            obj, args, kwargs = _split(item)
            task = totask(obj)
            self._trust(task)
            body = _task.encode(task, self.queue_name, self.array_format)
            self._accept((body, args, kwargs))
            count += 1
        return count

    def _trust(self, task: Any) -> None:
        """Admit the upstream class or function of an inserted task (by its full name)."""
        if isinstance(task, _task.MockTask):
            self._admit.add("tq_orchestrate.MockTask")
        if isinstance(task, (_task.RegisteredTask, _task.FunctionTask)):
            return
        if hasattr(type(task), "_arg_names"):  # a python-task-queue RegisteredTask
            self._admit.add(_upstream.qualified(type(task)))
            return
        fn = _upstream.registered_function(tuple(task.key))
        if fn is not None:
            self._admit.add(_upstream.qualified(fn))

    def _accept(self, item: Pending) -> None:
        self._pending.append(item)

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
        admit = frozenset(self._admit)
        with progress_bar(total=len(bodies), desc="Tasks", unit="task", show=bool(progress)) as bar:
            if workers == 1 or len(bodies) <= 1:
                for item in bodies:
                    _run_one(item, admit)
                    bar.update()
            else:
                self._run_pool(bodies, workers, bar, admit)
        return len(bodies)

    def _run_pool(self, bodies: list[Pending], workers: int, bar: Bar, admit: frozenset[str]) -> None:
        chunks = [bodies[i : i + _CHUNK] for i in range(0, len(bodies), _CHUNK)]
        import multiprocessing  # imported only for a pool: ~10 ms of every import otherwise
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context(self.start_method)
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=reset_signals) as pool:
                for done in pool.map(_run_chunk, chunks, [admit] * len(chunks)):
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

    def _accept(self, item: Pending) -> None:
        _run_one(item, frozenset(self._admit))


def _split(item: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """``(task, args, kwargs)`` from an inserted item (a bare task has no extra arguments)."""
    if type(item) is not tuple:
        return item, (), {}
    if len(item) != 3 or not isinstance(item[1], (list, tuple)) or not isinstance(item[2], dict):
        raise TaskQueueError(
            f"a tuple inserted into a local queue must be (task, args, kwargs), got {_clip(item)}"
        )
    return item[0], tuple(item[1]), dict(item[2])


def _clip(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 200 else text[:200] + "..."


def _run_one(item: Pending, admit: frozenset[str]) -> None:
    body, args, kwargs = item
    try:
        _task.decode(body, admit=admit).execute(*args, **kwargs)
    except Exception as e:
        raise TaskExecutionError(body, e) from e


def _run_chunk(items: list[Pending], admit: frozenset[str]) -> int:
    for item in items:
        _run_one(item, admit)
    return len(items)
