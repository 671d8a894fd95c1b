"""RegisteredTask, queueable functions, totask, and what a payload may not build."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from tests import sample_tasks as st
from tq_orchestrate import (
    DeserializationError,
    FunctionTask,
    SerializationError,
    UnsafeTaskError,
    allow_modules,
    func2task,
    totask,
)
from tq_orchestrate._task import encode, encoder


def test_constructor_arguments_become_attributes_and_payload() -> None:
    task = st.PrintTask(5)
    assert task.txt == "5"  # changed in __init__ after super().__init__
    assert task.payload() == {"txt": "5", "class": "PrintTask"}
    assert repr(task) == "PrintTask(txt='5')"
    assert task.id is None


def test_keyword_only_tasks_like_upstream_mocktask() -> None:
    task = st.KwTask(a=1, b=[2, 3])
    assert task.payload() == {"a": 1, "b": [2, 3], "class": "KwTask"}
    rebuilt = totask(json.dumps(task.payload()))
    rebuilt.execute()
    assert st.RESULTS[-1] == {"a": 1, "b": [2, 3]}


def test_too_many_positional_arguments_is_a_clear_error() -> None:
    class Two(st.RegisteredTask):
        def __init__(self, a: int) -> None:
            super().__init__(a, 2)

    with pytest.raises(TypeError, match="Two passed 2 positional arguments"):
        Two(1)


def test_round_trip_through_the_envelope() -> None:
    body = encode(st.RecordTask("/tmp/x", 3), "q")
    assert json.loads(body) == {
        "payload": {"path": "/tmp/x", "n": 3, "class": "RecordTask"},
        "queueName": "q",
    }
    task = totask(body)
    assert isinstance(task, st.RecordTask) and task.n == 3 and task == st.RecordTask("/tmp/x", 3)


@pytest.mark.parametrize("queue", ["q", 'blöck "7"', "a" * 80])
@pytest.mark.parametrize("fmt", ["list", "typed"])
def test_bulk_encoder_writes_the_same_text_as_encode(queue: str, fmt: str) -> None:
    objects = [
        st.RecordTask("/tmp/ü", 2**70),
        st.PrintTask("x"),
        st.KwTask(a=np.arange(3, dtype="<i2"), b=[1.5, None]),
        {"class": "PrintTask", "txt": "from a dict"},
        functools.partial(st.remember, 1, b=2),
    ]
    one = encoder(queue, fmt)  # type: ignore[arg-type]
    for obj in objects:
        assert one(obj) == encode(totask(obj), queue, fmt)  # type: ignore[arg-type]


def test_arrays_keep_dtype_for_a_class_that_asks_for_typed() -> None:
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    task = totask(encode(st.ArrayTask(data, np.float32(0.5)), "q"))
    assert isinstance(task.data, np.ndarray) and task.data.dtype == np.int16
    np.testing.assert_array_equal(task.data, data)


def test_unencodable_attribute_names_class_and_field() -> None:
    with pytest.raises(SerializationError, match=r"RecordTask.path.*set"):
        encode(st.RecordTask({1}, 2), "q")  # type: ignore[arg-type]


def test_queueable_functions_and_partials(tmp_path: object) -> None:
    task = func2task(functools.partial(functools.partial(st.record, "p"), 1, suffix="s"))
    assert task.key == ("tests.sample_tasks", "record")
    payload = task.payload()
    assert payload[:3] == [["tests.sample_tasks", "record"], ["p", 1], {"suffix": "s"}]
    body = encode(totask(functools.partial(st.remember, 1, 2, k="v")), "q")
    totask(body).execute()
    assert st.RESULTS[-1] == ((1, 2), {"k": "v"})


def test_function_arguments_are_checked_at_insert_time() -> None:
    with pytest.raises(SerializationError, match="arguments"):
        func2task(functools.partial(st.record, 1, 2, 3, 4))
    with pytest.raises(SerializationError, match="not decorated with @queueable"):
        func2task(st.not_queueable)


@pytest.mark.parametrize(
    "payload",
    [
        [["os", "system"], ["echo pwned"], {}, None],
        [["subprocess", "run"], [["true"]], {}, None],
        [["builtins", "eval"], ["1+1"], {}, None],
        [["builtins", "__import__"], ["os"], {}, None],
        [["tests.sample_tasks", "not_queueable"], [1], {}, None],
        {"class": "Popen", "args": ["true"]},
        {"class": "object"},
        {"class": "RegisteredTask"},
    ],
)
def test_payloads_cannot_build_anything_unregistered(payload: object) -> None:
    with pytest.raises(UnsafeTaskError):
        totask(json.dumps({"payload": payload, "queueName": "q"}))


def test_allowed_module_is_imported_on_demand_for_registered_functions() -> None:
    import sys

    name = "tests.lazy_fns"
    sys.modules.pop(name, None)
    body = json.dumps([[name, "double"], [21], {}, None])
    with pytest.raises(UnsafeTaskError, match="not allowed"):
        totask(body)
    allow_modules(name)
    task = totask(body)
    assert isinstance(task, FunctionTask) and task.execute() == 42


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('"just a string"', "got str"),
        ("[1, 2]", "got list"),
        ('{"payload": {"n": 1}}', "no 'class'"),
        ('{"class": "RecordTask", "nope": 1}', "cannot construct RecordTask"),
        ('[["tests.sample_tasks", "record"], [], {}, null]', "wrong arguments"),
        ('[["tests.sample_tasks"], [], {}, null]', "must be"),
    ],
)
def test_wrong_shapes_are_clear_errors_with_the_text(body: str, reason: str) -> None:
    with pytest.raises(DeserializationError) as info:
        totask(body)
    assert reason in str(info.value)
    assert info.value.raw == body
