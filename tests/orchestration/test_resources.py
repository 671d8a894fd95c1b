"""TaskQueueResource: described fields, EnvVar, per-scheme backend options, drain policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pydantic
import pytest

from tq_orchestrate import TaskQueue
from tq_orchestrate.backends.base import Counts
from tq_orchestrate.errors import ConfigurationError
from tq_orchestrate.orchestration.drain import DrainPolicy
from tq_orchestrate.orchestration.resources import TaskQueueResource

from .block_tasks import BlockMarkTask


def test_every_field_is_described_in_the_dagster_schema() -> None:
    fields = TaskQueueResource.to_config_schema().as_field().config_type.fields
    assert set(fields) == set(TaskQueueResource.model_fields)
    assert len(fields) >= 12
    undescribed = [name for name, field in fields.items() if not (field.description or "").strip()]
    assert undescribed == []
    assert fields["queue_url"].is_required
    assert not fields["region"].is_required


def test_queue_url_from_an_env_var_inside_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite://{tmp_path / 'env.db'}"
    monkeypatch.setenv("TQO_TEST_QUEUE_URL", url)
    monkeypatch.setenv("TQO_TEST_MAX_RECEIVES", "7")
    seen: dict[str, object] = {}

    @dg.op
    def look(task_queue: TaskQueueResource) -> None:
        seen["url"] = task_queue.queue_url
        seen["options"] = task_queue.backend_options()
        seen["counts"] = task_queue.counts()

    @dg.job
    def probe() -> None:
        look()

    resource = TaskQueueResource(
        queue_url=dg.EnvVar("TQO_TEST_QUEUE_URL"), max_receives=dg.EnvVar.int("TQO_TEST_MAX_RECEIVES")
    )
    result = probe.execute_in_process(resources={"task_queue": resource})
    assert result.success
    assert seen["url"] == url
    assert seen["options"] == {"max_receives": 7}
    assert seen["counts"] == Counts(0, 0, 0, 0, 0, 0, exact=True)


def test_aws_settings_reach_only_sqs_backends() -> None:
    aws = {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:5000", "aws_profile": "p"}
    local = TaskQueueResource(queue_url="sqlite:///tmp/x.db", max_receives=3, **aws)
    assert local.backend_options() == {"max_receives": 3}
    sqs = TaskQueueResource(queue_url="sqs://jobs", upload_engine="boto3", **aws)
    assert sqs.backend_options() == {
        "region": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:5000",
        "profile": "p",
        "engine": "boto3",
    }
    queue = sqs.get_queue()
    assert queue.url == "sqs://jobs" and queue.backend_options == sqs.backend_options()


def test_get_queue_round_trips_tasks(tmp_path: Path) -> None:
    resource = TaskQueueResource(queue_url=f"sqlite://{tmp_path / 'q.db'}", upload_concurrency=2)
    with resource.get_queue() as queue:
        assert queue.concurrency == 2
        assert queue.insert_all(BlockMarkTask("unused", "b", i) for i in range(3)) == 3
    assert resource.counts().visible == 3
    assert resource.dead_letters() == []


def test_drain_policy_follows_the_backend_unless_configured(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'q.db'}"
    assert TaskQueueResource(queue_url=url).drain_policy() == DrainPolicy.for_counts(exact=True)
    tuned = TaskQueueResource(queue_url=url, drain_lag_seconds=0, drain_zero_readings=4)
    assert tuned.drain_policy() == DrainPolicy(lag_seconds=0, min_zero_readings=4)
    sqs = TaskQueueResource(queue_url="sqs://jobs", region="us-east-1")
    assert sqs.drain_policy() == DrainPolicy.for_counts(exact=False)
    assert sqs.drain_policy().lag_seconds >= 60


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"lease_seconds": 0}, "lease_seconds must be > 0"),
        ({"upload_concurrency": 0}, "upload_concurrency must be >= 1"),
        ({"upload_processes": 0}, "upload_processes must be >= 1"),
        ({"drain_lag_seconds": -1}, "drain_lag_seconds must be >= 0"),
    ],
)
def test_bad_values_are_refused_on_use(bad: dict[str, float], message: str) -> None:
    resource = TaskQueueResource(queue_url="sqlite:///tmp/x.db", **bad)
    with pytest.raises(ConfigurationError, match=message):
        resource.get_queue()


def test_wrong_types_are_refused_at_once() -> None:
    with pytest.raises(pydantic.ValidationError):
        TaskQueueResource(queue_url="sqlite:///tmp/x.db", upload_processes="many")


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="known schemes"):
        TaskQueueResource(queue_url="nosuch://q").counts()


def test_importing_the_package_does_not_import_dagster() -> None:
    code = (
        "import sys, tq_orchestrate, tq_orchestrate.orchestration, tq_orchestrate.orchestration.drain;"
        "assert 'dagster' not in sys.modules, 'dagster was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_ops_of_a_run_share_one_queue_closed_after_the_run(tmp_path: Path) -> None:
    seen: list[object] = []

    @dg.op
    def first(task_queue: TaskQueueResource) -> int:
        seen.append(task_queue.run_queue())
        return task_queue.run_queue().counts().visible

    @dg.op
    def second(task_queue: TaskQueueResource, visible: int) -> None:
        seen.append(task_queue.run_queue())

    @dg.job
    def two_steps() -> None:
        second(first())

    closed: list[object] = []
    resource = TaskQueueResource(queue_url=f"sqlite://{tmp_path / 'q.db'}")
    original_close = TaskQueue.close

    def spy_close(queue: TaskQueue) -> None:
        closed.append(queue)
        original_close(queue)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TaskQueue, "close", spy_close)
        assert two_steps.execute_in_process(resources={"task_queue": resource}).success
    assert len(seen) == 2 and seen[0] is seen[1]
    assert closed == [seen[0]]
