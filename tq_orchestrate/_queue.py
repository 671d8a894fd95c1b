"""TaskQueue: one front for every backend, with python-task-queue's method names."""

from __future__ import annotations

import builtins
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from . import _task
from ._payload import ArrayFormat, check_array_format
from ._progress import progress_bar
from ._task import Task, as_tasks, totask
from ._upload import Progress, RetryPolicy, Uploader, default_start_method, split_ranges, upload_sharded
from .backends import known_schemes, open_backend, split_scheme
from .backends.base import Backend, Counts, DeadLetter, Message
from .errors import (
    ConfigurationError,
    DeserializationError,
    QueueEmptyError,
    TaskQueueError,
    UnknownSchemeError,
)
from .ledger.identity import identifying

log = logging.getLogger(__name__)

_MAX_LEASE_BATCH = 10


def _queue_url(url: str | None, qurl: str | None) -> str:
    """The queue URL from ``url`` or python-task-queue's keyword ``qurl`` (not both)."""
    if url is not None and qurl is not None:
        raise ConfigurationError(f"give the queue URL once: url={url!r} and qurl={qurl!r}")
    chosen = url if url is not None else qurl
    if not isinstance(chosen, str) or not chosen:
        raise ConfigurationError(f"queue URL must be a non-empty string, got {chosen!r}")
    return chosen


class TaskQueue:
    """A queue of tasks named by URL: ``sqs://name``, ``sqlite://path``, ``mem://name``...

    Backend options (region, endpoint_url, max_receives, engine...) pass through
    to the backend. The queue is picklable: a child process rebuilds it from the
    URL and options, so settings reach every upload process.

    python-task-queue's ``TaskQueue(qurl, n_threads, green, progress, region_name=...)``
    works: ``n_threads`` is the upload ``concurrency``; ``green`` is accepted and
    changes nothing (the upload engine is concurrent without gevent and needs no
    monkey patching); ``region_name`` is the backend's ``region``. An unknown URL
    scheme fails here, not at first use.
    """

    def __init__(
        self,
        url: str | None = None,
        n_threads: int | None = None,
        green: bool = False,
        progress: bool = True,
        *,
        qurl: str | None = None,
        array_format: ArrayFormat = "list",
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        start_method: str | None = None,
        region_name: str | None = None,
        **backend_options: Any,
    ) -> None:
        url = _queue_url(url, qurl)
        check_scheme(url)
        concurrency = _concurrency(n_threads, concurrency)
        if region_name is not None:
            if backend_options.get("region", region_name) != region_name:
                raise ConfigurationError(
                    f"region_name={region_name!r} and region={backend_options['region']!r} disagree"
                )
            backend_options["region"] = region_name
        self.green = bool(green)
        """Accepted for python-task-queue; uploads are concurrent without gevent."""
        self.url = url
        self.name = _short_name(url)
        """The queue's short name (the ``queueName`` written into each message)."""
        self.progress = progress
        self.array_format = check_array_format(array_format)
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.start_method = start_method or default_start_method()
        self.backend_options = backend_options
        self._backend: Backend | None = None
        self._pid = os.getpid()

    # -- construction ---------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use (and again in a forked child)."""
        if self._backend is None or self._pid != os.getpid():
            self._backend = open_backend(self.url, **self.backend_options)
            self._pid = os.getpid()
        return self._backend

    def _options(self) -> dict[str, Any]:
        return {
            "progress": self.progress,
            "green": self.green,
            "array_format": self.array_format,
            "concurrency": self.concurrency,
            "retry": self.retry,
            "start_method": self.start_method,
            **self.backend_options,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.url, self._options()))

    def __repr__(self) -> str:
        return f"TaskQueue({self.url!r})"

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the backend's connections (the queue reopens them if used again)."""
        if self._backend is not None and self._pid == os.getpid():
            self._backend.close()
        self._backend = None

    # -- inserting ------------------------------------------------------------

    def encode(self, task: Any) -> str:
        """The message body for ``task`` (a task, payload, or queueable call)."""
        return _task.encode(totask(task), self.name, self.array_format)

    def insert(
        self,
        tasks: Any,
        delay_seconds: float = 0,
        total: int | None = None,
        parallel: int = 1,
        skip_insert_counter: bool = False,
        *,
        progress: bool | None = None,
    ) -> int:
        """Insert one task, an iterable of tasks, or every task of another queue.

        Return how many were inserted. ``skip_insert_counter`` is accepted for
        python-task-queue: our backends count each insert once, as it lands.
        Another ``TaskQueue`` is copied without leasing (where its backend can
        list its messages, see :meth:`tasks`); it stays as it was.
        """
        del skip_insert_counter
        if isinstance(tasks, TaskQueue):
            if tasks.url == self.url:
                raise ConfigurationError(f"inserting {self.url} into itself would duplicate every task")
            tasks = tasks.tasks()
        return self.insert_all(as_tasks(tasks), total, parallel, delay_seconds, progress)

    def insert_all(
        self,
        tasks: Iterable[Any],
        total: int | None = None,
        parallel: int = 1,
        delay_seconds: float = 0,
        progress: bool | None = None,
    ) -> int:
        """Insert tasks from a list, generator or sliceable iterable; return the count.

        Memory stays constant for generators. ``parallel=N`` splits a sliceable,
        sized iterable (``len`` and ``[start:stop]``) across N processes, each
        generating its own share. ``total`` sizes the progress bar when ``len``
        is not available.
        """
        self._check_delay(delay_seconds)
        if total is None and hasattr(tasks, "__len__"):
            total = len(tasks)  # type: ignore[arg-type]
        show = self.progress if progress is None else progress
        with progress_bar(total=total, desc="Inserting", unit="task", show=bool(show)) as bar:
            if parallel is True:
                parallel = os.cpu_count() or 1
            if parallel > 1 and _sliceable(tasks) and total and _slices_ok(tasks, total, parallel):
                opts = {**self._options(), "progress": False}
                return upload_sharded(
                    TaskQueue(self.url, **opts),
                    tasks,
                    total,
                    parallel,
                    start_method=self.start_method,
                    delay_seconds=delay_seconds,
                    progress=bar.update,
                )
            if parallel > 1:
                log.warning(
                    "parallel=%s needs a sized, sliceable iterable; uploading %s in one process",
                    parallel,
                    type(tasks).__name__,
                )
            return self._insert_here(tasks, delay_seconds, bar.update)

    def _insert_here(self, tasks: Iterable[Any], delay_seconds: float, progress: Progress | None) -> int:
        uploader = Uploader(
            self.backend,
            identifying(_task.encoder(self.name, self.array_format)),
            concurrency=self.concurrency,
            retry=self.retry,
            delay_seconds=delay_seconds,
            progress=progress,
        )
        return uploader.run(tasks)

    def _check_delay(self, delay_seconds: float) -> None:
        limit = self.backend.capabilities.max_delay_seconds
        if not 0 <= delay_seconds <= limit:
            raise ConfigurationError(f"delay_seconds={delay_seconds} is outside 0..{limit} for {self.url}")

    # -- leasing --------------------------------------------------------------

    def receive(self, max_messages: int, lease_seconds: float, wait_seconds: float = 0) -> list[Message]:
        """Lease raw messages (for workers that decode and dead-letter themselves)."""
        return self.backend.receive(max_messages, lease_seconds, wait_seconds)

    def decode(self, message: Message) -> Task:
        """Rebuild the task of a leased message; ``task.id`` is its lease handle."""
        task = totask(message.body)
        _set_id(task, message.handle)
        return task

    def lease(self, seconds: float = 600, num_tasks: int = 1, wait_sec: float | None = 0) -> Any:
        """Lease tasks; one task when ``num_tasks == 1``, else a list.

        Raises QueueEmptyError when nothing is available. A message that does not
        decode is moved to the dead letters where the backend has them (and
        logged with its text), never handed out or silently dropped.
        """
        if num_tasks <= 0:
            raise ConfigurationError(f"num_tasks must be > 0, got {num_tasks}")
        tasks: list[Task] = []
        messages = self.receive(min(num_tasks, _MAX_LEASE_BATCH), seconds, wait_sec or 0)
        for message in messages:
            try:
                tasks.append(self.decode(message))
            except DeserializationError as e:
                self._quarantine(message, e)
            except Exception:  # a task's constructor raised: hand the whole receive back
                self._release_quietly(messages)
                raise
        if not tasks:
            raise QueueEmptyError(f"no task available in {self.url}")
        return tasks[0] if num_tasks == 1 else tasks

    def _release_quietly(self, messages: list[Message]) -> None:
        for message in messages:
            try:
                self.backend.change_lease(message.handle, 0)
            except TaskQueueError as e:  # already dead-lettered, or the lease is gone
                log.debug("could not release %s: %s", message.message_id, e)

    def _quarantine(self, message: Message, error: DeserializationError) -> None:
        log.error("corrupt message %s in %s: %s", message.message_id, self.url, error)
        try:
            self.backend.dead_letter(message.handle, str(error))
        except ConfigurationError:  # no dead-letter queue: it comes back, then expires to a redrive
            log.warning("%s has no dead-letter queue; message %s stays leased", self.url, message.message_id)

    def delete(self, tasks: Any, total: int | None = None, tally: bool = False) -> int:
        """Delete leased tasks (task objects, handles, or an iterable of either)."""
        return self.backend.delete([_handle(t) for t in as_tasks(tasks)])

    def renew(self, task: Any, seconds: float) -> None:
        """Extend a leased task's lease to ``seconds`` from now."""
        self.backend.change_lease(_handle(task), seconds)

    def release(self, task: Any, delay_seconds: float = 0) -> None:
        """Give a leased task back: visible again after ``delay_seconds``."""
        self.backend.change_lease(_handle(task), delay_seconds)

    cancel = release
    renew_lease = renew

    def release_all(self) -> int:
        """Make every leased task visible now; return how many."""
        return self.backend.release_all()

    def purge(self, native: bool = False) -> None:
        """Delete every task in the queue, leased or not.

        ``native`` is accepted for python-task-queue: every backend purges natively.
        """
        del native
        self.backend.purge()

    def rezero(self) -> None:
        """Set the inserted and completed totals to zero (tasks stay)."""
        self.backend.rezero()

    def tasks(self) -> Iterator[Task]:
        """Every task not yet deleted, leased or not, without leasing any.

        Backends that cannot list their messages (SQS) raise ConfigurationError
        at once; copy such a queue with ``tqo copy``, which leases.
        """
        try:
            bodies = self.backend.bodies()
        except ConfigurationError as e:
            raise ConfigurationError(f"{e}; use tqo copy, which leases each task instead") from e
        return (totask(body) for body in bodies)

    # -- counting -------------------------------------------------------------

    def counts(self) -> Counts:
        """Visible, leased and delayed tasks, plus totals where the backend keeps them."""
        return self.backend.counts()

    @property
    def enqueued(self) -> int:
        """Tasks not yet deleted: visible + leased + delayed (approximate on SQS)."""
        return self.counts().pending

    @property
    def inserted(self) -> int | None:
        """Tasks ever inserted, where the backend counts them (else None)."""
        return self.counts().inserted

    @property
    def completed(self) -> int | None:
        """Tasks deleted after execution, where the backend counts them (else None)."""
        return self.counts().completed

    @property
    def leased(self) -> int:
        """Tasks currently leased."""
        return self.counts().leased

    def is_empty(self) -> bool:
        """True when no task is visible, leased or delayed."""
        return self.enqueued == 0

    def block_until_empty(self, interval_sec: float = 2) -> None:
        """Sleep until :meth:`is_empty` (an exact answer only where counts are exact)."""
        while not self.is_empty():
            time.sleep(interval_sec)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Tasks moved aside after too many failed receives."""
        return self.backend.dead_letters(limit)

    def redrive(self) -> int:
        """Put every dead-lettered task back in the queue; return how many."""
        return self.backend.redrive()

    # -- working --------------------------------------------------------------

    def poll(self, *args: Any, **kwargs: Any) -> int:
        """Lease, execute and delete tasks until a stop condition; see worker.poll."""
        from .worker._poll import poll

        return poll(self, *args, **kwargs)

    def list(self) -> builtins.list[Task]:
        """Every task not yet deleted, as a list (see :meth:`tasks`)."""
        return builtins.list(self.tasks())


def check_scheme(url: str) -> None:
    """Raise UnknownSchemeError now if no backend serves ``url``'s scheme."""
    scheme = split_scheme(url)[0]
    if scheme not in known_schemes():
        raise UnknownSchemeError(url, scheme, known_schemes())


def _short_name(url: str) -> str:
    """The last part of a queue URL, without a database file suffix."""
    rest = split_scheme(url)[1].split("?", 1)[0].rstrip("/")
    base = rest.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if base.endswith((".db", ".sqlite3", ".tqdb")) else base


def _rebuild(url: str, options: dict[str, Any]) -> TaskQueue:
    return TaskQueue(url, **options)


def _sliceable(tasks: Any) -> bool:
    return hasattr(tasks, "__len__") and hasattr(tasks, "__getitem__")


def _slices_ok(tasks: Any, total: int, parallel: int) -> bool:
    """Whether each shard ``tasks[a:b]`` has ``b - a`` items; else warn (one process uploads).

    A ``__getitem__`` that ignores the slice would make every process upload
    everything: duplicates that nothing reports.
    """
    for start, stop in split_ranges(total, parallel):
        part = tasks[start:stop]
        got = len(part) if hasattr(part, "__len__") else None
        if got != stop - start:
            log.warning(
                "parallel upload: %s[%d:%d] has %s items, expected %d (its __getitem__ does not "
                "slice); uploading in one process so that no task is inserted twice",
                type(tasks).__name__,
                start,
                stop,
                "unknown" if got is None else got,
                stop - start,
            )
            return False
    return True


def _concurrency(n_threads: int | None, concurrency: int | None) -> int | None:
    """The upload concurrency from python-task-queue's ``n_threads`` or ours."""
    if n_threads is None:
        return concurrency
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ConfigurationError(f"n_threads must be an integer >= 1, got {n_threads!r}")
    if concurrency is not None and concurrency != n_threads:
        raise ConfigurationError(f"n_threads={n_threads} and concurrency={concurrency} disagree")
    return n_threads


def _handle(task: Any) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, Message):
        return task.handle
    handle = getattr(task, "id", None)
    if not isinstance(handle, str):
        raise ConfigurationError(f"{task!r} is not a leased task (it has no lease handle)")
    return handle


def _set_id(task: Task, handle: str) -> None:
    _task.set_id(task, handle)
