"""Fuzz the payload decoder: it returns a task or raises DeserializationError, nothing else.

Inputs are arbitrary bytes and text, and JSON built to look like payloads
(envelopes, class payloads, function payloads, typed arrays) with names drawn
from registered, unknown and forbidden ones, then sometimes damaged. Nothing
may run: the canary module stays unimported. Examples are bounded (CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.sample_tasks  # registers PrintTask, ArrayTask, KwTask, record, remember
import tests.tasks_fixture  # noqa: F401 - registers WorkerAppendTask, append_fn
from tests.reliability._harness import CANARY_MODULE
from tq_orchestrate import FunctionTask, RegisteredTask, totask
from tq_orchestrate._payload import loads
from tq_orchestrate.errors import DeserializationError

EXAMPLES = int(os.environ.get("TQO_FUZZ_EXAMPLES", "300"))
"""Examples per test: 300 in CI; ``TQO_FUZZ_EXAMPLES=20000`` for a longer hunt."""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Classes whose constructors only store their arguments: any other error would be the decoder's.
CLASSES = ["WorkerAppendTask", "PrintTask", "ArrayTask", "KwTask", "NoSuchTask", "Canary", "RegisteredTask"]
FUNCTIONS = [
    ["tests.tasks_fixture", "append_fn"],
    ["tests.sample_tasks", "record"],
    ["tests.sample_tasks", "remember"],
    ["tests.tasks_fixture", "append_line"],
    ["os", "system"],
    ["builtins", "eval"],
    [CANARY_MODULE, "touch"],
    ["tests.tasks_fixture", "os.system"],
]
FIELDS = ["path", "text", "txt", "data", "offset", "n", "execute", "_args", "id", "class", "payload", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=20,
)
typed_arrays = st.fixed_dictionaries(
    {
        "__ndarray__": st.binary(max_size=24).map(lambda b: __import__("base64").b64encode(b).decode())
        | st.text(max_size=8),
        "dtype": st.sampled_from(["<f4", "<i8", "|u1", "|O", "V0", "<U2", "i4,i4", "(2,)i4", "M8[D]", "S3"])
        | st.text(max_size=8)
        | json_values,
        "shape": st.lists(st.integers(-2, 8), max_size=3) | json_values,
    }
)
values = st.one_of(json_values, typed_arrays)
class_payloads = st.builds(
    lambda name, fields: {"class": name, **fields},
    st.sampled_from(CLASSES) | st.text(max_size=12),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), values, max_size=4),
)
function_payloads = st.builds(
    lambda key, args, kwargs, ident: [key, args, kwargs, ident],
    st.sampled_from(FUNCTIONS) | st.lists(st.text(max_size=8), max_size=3) | json_values,
    st.lists(values, max_size=4) | json_values,
    st.dictionaries(st.text(max_size=6), values, max_size=3) | json_values,
    json_values,
)
payloads = st.one_of(class_payloads, function_payloads, json_values)
envelopes = st.one_of(payloads, st.builds(lambda p: {"payload": p, "queueName": "fuzz"}, payloads))


def damaged(text: str, data: st.DataObject) -> str | bytes:
    how = data.draw(st.sampled_from(["none", "truncate", "insert", "bytes"]))
    if how == "none" or not text:
        return text
    at = data.draw(st.integers(0, len(text)))
    if how == "truncate":
        return text[:at]
    if how == "insert":
        return text[:at] + data.draw(st.text(min_size=1, max_size=3)) + text[at:]
    raw = text.encode()
    return raw[:at] + data.draw(st.binary(min_size=1, max_size=3)) + raw[at:]


def check(body: Any) -> None:
    try:
        task = totask(body)
    except DeserializationError:
        pass
    else:
        assert isinstance(task, (RegisteredTask, FunctionTask))
    assert CANARY_MODULE not in sys.modules


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_or_text(body: bytes | str) -> None:
    with contextlib.suppress(DeserializationError):
        loads(body)
    check(body)


@FUZZ
@given(envelopes, st.data())
def test_payload_shaped_json(payload: Any, data: st.DataObject) -> None:
    text = json.dumps(payload, allow_nan=True)
    body = damaged(text, data)
    with contextlib.suppress(DeserializationError):
        loads(body)
    check(body)
    if body == text:
        check(json.loads(text))  # decoded objects go through the same checks
