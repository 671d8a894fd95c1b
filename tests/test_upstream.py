"""The bridge to python-task-queue: its task objects in and out, its registries opt-in.

Upstream registers every task class and queueable function that anything
imports; only those of modules a worker imported as task modules (and their
submodules) may be named by a message.
"""

from __future__ import annotations

import enum
import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import taskqueue
from cloudvolume import Vec

import tq_orchestrate as tqo
from tests.upstream_pkg import other, tasksx, twin_ours
from tests.upstream_pkg._trace import RAN
from tests.upstream_pkg.tasks import ImageTask, TopTask, scale_image
from tq_orchestrate import _task, _upstream
from tq_orchestrate.errors import TaskQueueError, UnsafeTaskError

TASKS = "tests.upstream_pkg.tasks"


class Method(enum.IntEnum):
    AUTO = 6


@pytest.fixture(autouse=True)
def fresh_admission(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_upstream, "_ADMITTED", set())
    monkeypatch.setattr(_task, "_ALLOWED_MODULES", set(_task._ALLOWED_MODULES))
    RAN.clear()
    yield
    RAN.clear()


def upstream_body(task: Any, queue_name: str) -> str:
    """What python-task-queue's own insert writes for ``task`` (its TaskQueue.insert + jsonify)."""
    payload = taskqueue.totask(task).payload()
    return str(taskqueue.lib.jsonify({"payload": payload, "queueName": queue_name}))


SAMPLES = [
    TopTask("a", [1, 2, 3]),
    TopTask("numpy", np.arange(4, dtype=np.uint16)),
    TopTask("nested", {"k": np.array([[1.5, 2.0]]), "v": Vec(1, 2, 3), "t": "é"}),
    ImageTask(Vec(64, 64, 8), Vec(0, 0, 16), mip=np.int64(1)),
    functools.partial(scale_image, Vec(128, 128, 64), factor=np.int32(2), method=Method.AUTO),
    functools.partial(scale_image, np.array([1.25, 3.0]), 3),
    functools.partial(functools.partial(scale_image, [1, 2]), method=Method.AUTO),
]


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_bodies_are_byte_for_byte_upstreams(index: int) -> None:
    task = SAMPLES[index]
    tq = tqo.TaskQueue("mem://bytes", progress=False)
    assert tq.encode(task) == upstream_body(task, "bytes")
    # and what insert() puts on the queue is the same text
    assert tq.insert([task]) == 1
    (message,) = tq.receive(1, lease_seconds=60)
    assert message.body == upstream_body(task, "bytes")


def test_upstream_nan_is_refused_not_written_as_invalid_json() -> None:
    with pytest.raises(tqo.SerializationError, match="TopTask"):
        tqo.TaskQueue("mem://nan", progress=False).encode(TopTask("x", [float("nan")]))


def test_wrong_arguments_are_a_type_error_and_ours() -> None:
    for bad in (functools.partial(scale_image, 1, 2, 3, 4), functools.partial(scale_image, nope=1)):
        with pytest.raises(TypeError) as info:
            tqo.TaskQueue("mem://bad", progress=False).encode(bad)
        assert isinstance(info.value, tqo.TaskArgumentError)
        assert isinstance(info.value, TaskQueueError)
        assert "scale_image" in str(info.value)


def test_nothing_upstream_is_admitted_by_default() -> None:
    body = tqo.TaskQueue("mem://none", progress=False).encode(TopTask("a", [1]))
    with pytest.raises(UnsafeTaskError, match=f"--import {TASKS}"):
        tqo.totask(body)
    assert RAN == []


def test_imported_module_and_its_submodules_run() -> None:
    tqo.import_task_modules([TASKS])
    tq = tqo.TaskQueue("mem://admitted", progress=False)
    tq.insert(
        [TopTask("a", [1, 2]), ImageTask([8, 8, 1], [0, 0, 3]), functools.partial(scale_image, [4, 4], 3)]
    )
    while not tq.is_empty():
        task = tq.lease(seconds=60)
        assert isinstance(task.id, str) and task.id, "the lease handle is set (upstream's id is read-only)"
        task.execute()
        tq.delete(task)
    assert RAN == [
        ("TopTask", "a", 3),
        ("ImageTask", [8, 8, 1], [0, 0, 3], 0),
        ("scale_image", [4, 4], 3, 0),
    ]


@pytest.mark.parametrize(
    "task",
    [
        tasksx.LookalikeTask("x"),
        functools.partial(tasksx.lookalike_fn, "x"),
        other.OtherTask("x"),
        functools.partial(other.other_fn, "x"),
    ],
    ids=["lookalike-class", "lookalike-function", "other-class", "other-function"],
)
def test_registered_elsewhere_is_refused_with_the_module_to_import(task: Any) -> None:
    tqo.import_task_modules([TASKS])
    body = tqo.TaskQueue("mem://elsewhere", progress=False).encode(task)
    with pytest.raises(UnsafeTaskError) as info:
        tqo.totask(body)
    module = task.func.__module__ if isinstance(task, functools.partial) else type(task).__module__
    assert f"--import {module}" in str(info.value)
    assert RAN == []


def test_a_mock_task_runs_only_when_allowed_by_name() -> None:
    body = json.dumps({"payload": {"class": "MockTask", "anything": 1}, "queueName": "q"})
    tqo.allow_modules("taskqueue", "tq_orchestrate")  # prefixes admit no MockTask
    with pytest.raises(UnsafeTaskError, match=r"--import taskqueue\.MockTask"):
        tqo.totask(body)
    tqo.allow_modules("tq_orchestrate.MockTask")
    assert type(tqo.totask(body)) is tqo.MockTask
    tqo.allow_modules("taskqueue.MockTask")
    assert type(tqo.totask(body)) is taskqueue.MockTask, "upstream's, once named, replaces ours"


def test_our_mock_task_refuses_fields_that_replace_its_members() -> None:
    tqo.allow_modules("tq_orchestrate.MockTask")
    for field in ("execute", "_args", "payload"):
        with pytest.raises(tqo.TaskArgumentError, match=field):
            tqo.MockTask(**{field: 1})
        with pytest.raises(tqo.DeserializationError, match=field):
            tqo.totask({"class": "MockTask", field: 1})


class ShapeTask(tqo.RegisteredTask):
    def __init__(self, shape: list[int]) -> None:
        super().__init__(shape)


def test_print_task_prints_as_upstreams_does(capsys: pytest.CaptureFixture[str]) -> None:
    tqo.PrintTask("hello").execute()
    taskqueue.PrintTask("hello").execute()
    ours, theirs = capsys.readouterr().out.splitlines()
    assert ours == theirs == "PrintTask(txt='hello'): hello"


def test_deserialize_gives_a_task_of_the_class_it_is_called_on() -> None:
    text = tqo.TaskQueue("mem://p", progress=False).encode(ShapeTask([1, 2]))
    task = ShapeTask.deserialize(text)
    assert isinstance(task, ShapeTask) and task.shape == [1, 2]
    assert isinstance(tqo.RegisteredTask.deserialize(text), ShapeTask)
    with pytest.raises(tqo.DeserializationError, match="holds a ShapeTask, not a MockTask"):
        tqo.MockTask.deserialize(text)


def test_a_name_registered_in_both_packages_is_refused_naming_both() -> None:
    assert twin_ours.CompatTwin.__name__ == other.CompatTwin.__name__
    body = json.dumps({"payload": {"class": "CompatTwin", "note": "n"}, "queueName": "q"})
    tqo.totask(body).execute()  # upstream's twin is not admitted: ours runs
    assert RAN == [("CompatTwin ours", "n")]
    tqo.allow_modules("tests.upstream_pkg.other")
    with pytest.raises(UnsafeTaskError) as info:
        tqo.totask(body)
    assert "tests.upstream_pkg.twin_ours.CompatTwin" in str(info.value)
    assert "tests.upstream_pkg.other.CompatTwin" in str(info.value)


def test_no_module_is_imported_because_a_message_names_it() -> None:
    tqo.allow_modules("tests.upstream_pkg")  # a prefix only; nothing under it imported yet
    name = "tests.upstream_pkg.never_imported"
    body = json.dumps({"payload": [[name, "f"], [], {}, -1], "queueName": "q"})
    with pytest.raises(UnsafeTaskError):
        tqo.totask(body)
    assert name not in sys.modules


@pytest.mark.parametrize("queue", [tqo.MockTaskQueue, functools.partial(tqo.LocalTaskQueue, parallel=2)])
def test_local_queues_run_upstream_objects_they_are_given(
    queue: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "ran"
    monkeypatch.setenv("TQO_CANARY", str(canary))
    with queue(progress=False) as tq:
        tq.insert([TopTask("l", [2, 2]), functools.partial(other.other_fn, "local"), other.OtherTask("o")])
    assert sorted(canary.read_text().splitlines()) == sorted(
        ["('TopTask', 'l', 4)", "('other_fn', 'local')", "('OtherTask', 'o')"]
    )


def test_local_queue_takes_task_args_kwargs_tuples() -> None:
    tq = tqo.LocalTaskQueue(parallel=1, queue_name="q", queue_server="ignored", progress=False)
    tq.insert([(TopTask("t", [1]), ["extra"], {}), TopTask("u", [2])])
    tq.execute(progress=False)
    assert RAN == [("TopTask", "t", 1, "extra"), ("TopTask", "u", 2)]
    with pytest.raises(TaskQueueError, match=r"\(task, args, kwargs\)"):
        tq.insert([(TopTask("t", [1]), "not-a-list")])


def test_parallel_true_is_every_core() -> None:
    import os

    assert tqo.LocalTaskQueue(parallel=True).parallel == (os.cpu_count() or 1)


def test_importing_tq_orchestrate_does_not_import_taskqueue() -> None:
    code = (
        "import sys, tq_orchestrate\n"
        "tq = tq_orchestrate.TaskQueue('mem://x', progress=False)\n"
        "tq.insert(tq_orchestrate.PrintTask('hi'))\n"
        "tq_orchestrate.LocalTaskQueue(progress=False).insert_all(tq_orchestrate.MockTask(a=1))\n"
        "assert tq.lease(seconds=5).txt == 'hi'\n"
        "assert 'taskqueue' not in sys.modules, sorted(m for m in sys.modules if 'taskqueue' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_local_queue_runs_upstream_function_tasks_and_mock_tasks() -> None:
    tq = tqo.MockTaskQueue(progress=False)
    function_task = taskqueue.totask(functools.partial(other.other_fn, "ft"))
    tq.insert([function_task, taskqueue.MockTask(a=1), tqo.MockTask(b=2)])
    assert RAN == [("other_fn", "ft")]
    assert _upstream.admitted() == frozenset(), "a local queue admits for itself, not for the process"


def test_import_a_class_by_name_admits_that_class_only() -> None:
    tqo.import_task_modules(["taskqueue.MockTask"])
    body = json.dumps({"payload": {"class": "MockTask", "k": 1}, "queueName": "q"})
    assert type(tqo.totask(body)) is taskqueue.MockTask
    assert not _upstream.is_admitted(taskqueue.PrintTask), "not the rest of its module"
    with pytest.raises(tqo.ConfigurationError, match=r"cannot import task module 'taskqueue\.NoSuchTask'"):
        tqo.import_task_modules(["taskqueue.NoSuchTask"])


def test_a_function_key_naming_an_allowed_class_is_refused_not_an_import_error() -> None:
    tqo.allow_modules("tq_orchestrate.MockTask")
    with pytest.raises(UnsafeTaskError, match="cannot be imported"):
        tqo.totask([["tq_orchestrate.MockTask", "f"], [], {}, None])
