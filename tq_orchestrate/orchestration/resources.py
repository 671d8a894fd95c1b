"""TaskQueueResource: the queue as a Dagster resource, configured per deployment.

Every field accepts ``dg.EnvVar("NAME")`` (``dg.EnvVar.int`` for numbers), so one
set of definitions runs against the embedded queue or SQS by changing the URL::

    TaskQueueResource(queue_url=dg.EnvVar("TQO_QUEUE_URL"))
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from .._queue import TaskQueue
from ..backends import split_scheme
from ..backends.base import Counts, DeadLetter
from ..errors import ConfigurationError
from ..ledger import LedgerStore, open_ledger
from .drain import DrainPolicy

_SQS_SCHEMES = frozenset({"sqs", "http", "https"})


class TaskQueueResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A tq_orchestrate queue named by URL, with its AWS, upload and dead-letter settings."""

    queue_url: str = Field(
        description=(
            "The queue: 'sqlite://path/to/queue.db' (embedded, no server), 'sqs://name', or a full "
            "SQS queue URL 'https://sqs.<region>.amazonaws.com/<account>/<name>'."
        )
    )
    region: str | None = Field(
        default=None,
        description="AWS region of an SQS queue; None uses the queue URL, AWS_REGION or the profile.",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="SQS endpoint to call instead of AWS's (an emulator such as moto); None for AWS.",
    )
    aws_profile: str | None = Field(
        default=None,
        description="Named AWS profile for credentials and region; None uses the default chain.",
    )
    lease_seconds: float = Field(
        default=600.0,
        description="How long a worker holds a task before it becomes visible again (SQS visibility).",
    )
    upload_engine: str | None = Field(
        default=None,
        description="SQS upload engine: 'auto', 'fast' or 'boto3'; None: the backend's default (SQS only).",
    )
    upload_concurrency: int | None = Field(
        default=None,
        description="Batch sends in flight per upload process; None uses the backend's default.",
    )
    upload_processes: int = Field(
        default=1,
        description="Processes that each generate and upload a share of a shard (1: threads only).",
    )
    max_receives: int | None = Field(
        default=None,
        description=(
            "Receives after which a task is dead-lettered (the redrive policy's maxReceiveCount on SQS); "
            "None keeps the backend's default (5)."
        ),
    )
    dead_letter_sample: int = Field(
        default=3,
        description="Dead letters quoted when a block is reported failed.",
    )
    drain_lag_seconds: float | None = Field(
        default=None,
        description=(
            "Span the all-zero queue readings must exceed before a block counts as drained; None picks "
            "from the backend (short for exact counts, 60 s for SQS's approximate counts)."
        ),
    )
    drain_zero_readings: int | None = Field(
        default=None,
        description="Consecutive all-zero readings required; None picks from the backend (2 exact, 3 SQS).",
    )

    ledger_url: str | None = Field(
        default=None,
        description=(
            "Completion ledger for exact block completion: 'sqlite://<the queue's db>', 'fq://<the queue's "
            "dir>' or 's3://bucket/prefix'. Workers need the same --ledger-url. None: count-based drain only."
        ),
    )

    def open_ledger(self) -> LedgerStore | None:
        """The completion ledger's store (None without ``ledger_url``); close it after use."""
        return open_ledger(self.ledger_url) if self.ledger_url else None

    def check(self) -> None:
        """Raise ConfigurationError naming the first out-of-range number.

        (Checked here rather than by pydantic so every field can be a ``dg.EnvVar``.)
        """
        minimums: dict[str, tuple[float | None, float]] = {
            "lease_seconds": (self.lease_seconds, 1e-9),
            "upload_concurrency": (self.upload_concurrency, 1),
            "upload_processes": (self.upload_processes, 1),
            "max_receives": (self.max_receives, 1),
            "dead_letter_sample": (self.dead_letter_sample, 1),
            "drain_lag_seconds": (self.drain_lag_seconds, 0),
            "drain_zero_readings": (self.drain_zero_readings, 1),
        }
        for name, (value, least) in minimums.items():
            if value is not None and value < least:
                bound = "> 0" if least == 1e-9 else f">= {least:g}"
                raise ConfigurationError(f"TaskQueueResource.{name} must be {bound}, got {value}")

    def backend_options(self) -> dict[str, Any]:
        """The options passed to the backend: only those set, only those its scheme knows."""
        self.check()
        options: dict[str, Any] = {}
        if self.max_receives is not None:
            options["max_receives"] = self.max_receives
        if split_scheme(self.queue_url)[0] in _SQS_SCHEMES:
            sqs = {
                "region": self.region,
                "endpoint_url": self.endpoint_url,
                "profile": self.aws_profile,
                "engine": self.upload_engine,
            }
            options.update({k: v for k, v in sqs.items() if v is not None})
        return options

    _run_queue: TaskQueue | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Called by Dagster before a run uses the resource: the shared queue opens on first use."""
        self._run_queue = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Called by Dagster after the run: close the shared queue's connections."""
        if self._run_queue is not None:
            self._run_queue.close()
            self._run_queue = None

    def run_queue(self) -> TaskQueue:
        """One TaskQueue shared by every op of a run (its client and connections are reused).

        Dagster closes it after the run; do not close it yourself.
        """
        if self._run_queue is None:
            self._run_queue = self.get_queue()
        return self._run_queue

    def get_queue(self) -> TaskQueue:
        """A new TaskQueue for this configuration (close it, or use it as a context manager)."""
        return TaskQueue(
            self.queue_url,
            progress=False,
            concurrency=self.upload_concurrency,
            **self.backend_options(),
        )

    def counts(self) -> Counts:
        """Read the queue's counts once."""
        with self.get_queue() as queue:
            return queue.counts()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters (oldest first)."""
        with self.get_queue() as queue:
            return queue.dead_letters(limit)

    def drain_policy(self) -> DrainPolicy:
        """The drain policy: the configured figures, else the backend's sensible default."""
        with self.get_queue() as queue:
            exact = queue.backend.capabilities.exact_counts
        default = DrainPolicy.for_counts(exact)
        return DrainPolicy(
            lag_seconds=default.lag_seconds if self.drain_lag_seconds is None else self.drain_lag_seconds,
            min_zero_readings=self.drain_zero_readings or default.min_zero_readings,
        )
