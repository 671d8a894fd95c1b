"""python-task-queue's public names, importable from tq_orchestrate, inside our one error tree."""

from __future__ import annotations

import functools
import re

import pytest
import taskqueue

import tq_orchestrate as tqo
from tq_orchestrate import errors

UPSTREAM_NAMES = [
    "FunctionTask",
    "LocalTaskQueue",
    "MockTask",
    "MockTaskQueue",
    "PrintTask",
    "QueueEmptyError",
    "RegisteredTask",
    "TaskQueue",
    "UnregisteredFunctionError",
    "UnsupportedProtocolError",
    "func2task",
    "queueable",
    "tofunc",
    "totask",
]


class NamesTask(tqo.RegisteredTask):
    def __init__(self, n: int) -> None:
        super().__init__(n)


@pytest.mark.parametrize("name", UPSTREAM_NAMES)
def test_upstream_name_is_exported(name: str) -> None:
    assert name in tqo.__all__
    assert getattr(tqo, name) is not None


def test_upstream_errors_keep_their_upstream_bases_inside_our_tree() -> None:
    assert issubclass(tqo.QueueEmptyError, LookupError)
    assert issubclass(tqo.QueueEmptyError, tqo.TaskQueueError)
    with pytest.raises(LookupError):
        tqo.TaskQueue("mem://empty-compat", progress=False).lease(seconds=5)
    assert issubclass(tqo.UnregisteredFunctionError, tqo.UnsafeTaskError)
    with pytest.raises(tqo.UnregisteredFunctionError, match="no_such_function"):
        tqo.totask([["tests.compat_fns", "no_such_function"], [], {}, None])
    assert tqo.UnsupportedProtocolError is tqo.UnknownSchemeError
    with pytest.raises(tqo.UnsupportedProtocolError, match="nope"):
        tqo.TaskQueue("nope://x", progress=False).is_empty()


def test_wrong_arguments_for_our_queueable_are_a_type_error() -> None:
    from tests import compat_fns

    with pytest.raises(TypeError) as info:
        tqo.func2task(functools.partial(compat_fns.scale, 1, 2, 3, 4))
    assert isinstance(info.value, tqo.TaskArgumentError) and isinstance(info.value, tqo.SerializationError)
    # upstream raises a TypeError here too
    with pytest.raises(TypeError):
        taskqueue.queueablefns.func2task(functools.partial(compat_fns.scale, 1, 2, 3, 4), -1)


def test_tofunc_binds_the_arguments_and_passes_callables_through() -> None:
    from tests import compat_fns

    task = tqo.func2task(functools.partial(compat_fns.scale, [1, 2], factor=3))
    compat_fns.CALLS.clear()
    tqo.tofunc(task.payload())()
    assert compat_fns.CALLS == [[3, 6]]
    assert tqo.tofunc(len) is len
    with pytest.raises(tqo.DeserializationError, match="expected a function task, got a NamesTask"):
        tqo.tofunc(NamesTask(1).payload())


def test_the_tree_drawing_names_every_error_once() -> None:
    drawing = errors.__doc__ or ""
    classes = {v.__name__ for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)}
    drawn = re.findall(r"[├└]── (\w+)", drawing) + re.findall(r"^    (TaskQueueError)$", drawing, re.M)
    assert sorted(drawn) == sorted(classes)
    assert "UnsupportedProtocolError" in drawing, "the alias is named next to its class"
