"""The worker process: import task modules, open a queue by URL, work until told to stop.

This is what ``tqo work`` and ``python -m tq_orchestrate.worker`` run; it is the
only part of the worker that opens a :class:`~tq_orchestrate.TaskQueue`.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from typing import Any

from ._loop import Worker
from ._options import WorkerOptions
from ._report import WorkerStats
from ._signals import StopFlag, handle_signals

__all__ = ["import_task_modules", "run_worker"]

log = logging.getLogger("tq_orchestrate.worker")


def import_task_modules(modules: Iterable[str]) -> None:
    """Import task modules and allow their tasks (see :func:`tq_orchestrate.import_task_modules`)."""
    from .._task import import_task_modules as load

    load(modules)


def run_worker(
    url: str,
    options: WorkerOptions,
    *,
    imports: Iterable[str] = (),
    backend_options: dict[str, Any] | None = None,
) -> WorkerStats:
    """The worker process: import task modules, open ``url``, work until told to stop.

    ``backend_options`` go to the queue's backend (as ``TaskQueue``'s keywords).
    SIGTERM and SIGINT stop after the task in hand (a second one exits now); they
    are handled from the start, so a stop that comes while task modules are
    imported ends the worker cleanly before it leases anything.
    """
    stop = StopFlag()
    with handle_signals(stop, (signal.SIGINT, signal.SIGTERM)):
        from .._queue import TaskQueue

        import_task_modules(imports)
        tq = TaskQueue(url, progress=False, **(backend_options or {}))
        try:
            worker = Worker(tq, options, stop=stop)
            log.info("worker %d polling %s", os.getpid(), url)
            return worker.run()
        finally:
            tq.close()
