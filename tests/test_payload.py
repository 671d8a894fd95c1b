"""Payload encoding and decoding: round trips, refusals naming the field, hostile input."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tq_orchestrate import DeserializationError, SerializationError
from tq_orchestrate._payload import dumps, loads, to_jsonable

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_plain_values_round_trip(value: Any) -> None:
    assert loads(dumps(to_jsonable(value, "T", "f"))) == value


array_dtypes = st.sampled_from(["u1", "u2", "<i4", ">i8", "<f4", "<f8", "?", "<c8"])


@settings(max_examples=100, deadline=None)
@given(array_dtypes.flatmap(lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3))))
def test_typed_arrays_keep_dtype_shape_and_bits(arr: np.ndarray) -> None:
    out = loads(dumps(to_jsonable({"a": arr}, "T", "f", "typed")))["a"]
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.tobytes() == np.ascontiguousarray(arr).tobytes()


def test_list_format_writes_nested_lists_like_upstream() -> None:
    arr = np.arange(6, dtype=np.uint16).reshape(2, 3)
    assert to_jsonable(arr, "T", "a") == [[0, 1, 2], [3, 4, 5]]
    assert to_jsonable(np.float32(1.5), "T", "s") == 1.5
    assert type(to_jsonable(np.int64(7), "T", "s")) is int


def test_tuples_become_lists_and_str_enum_becomes_str() -> None:
    import enum

    class Color(str, enum.Enum):
        RED = "red"

    assert to_jsonable((1, (2, 3)), "T", "f") == [1, [2, 3]]
    assert to_jsonable(Color.RED, "T", "f") == "red"


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ({1, 2}, "f", "set"),
        (b"raw", "f", "bytes"),
        (object(), "f", "object"),
        ({"a": {1: "x"}}, "f['a']", "key 1"),
        ([1, float("nan")], "f[1]", "finite"),
        (float("inf"), "f", "finite"),
        (np.array([1.0, np.nan]), "f", "NaN"),
        (np.array([object()]), "f", "dtype object"),
    ],
)
def test_unencodable_values_name_task_and_field(value: Any, field: str, reason: str) -> None:
    with pytest.raises(SerializationError) as info:
        to_jsonable(value, "MyTask", "f")
    assert info.value.task == "MyTask"
    assert info.value.field == field
    assert reason in str(info.value)


def test_serialize_hook_is_honoured() -> None:
    class Box:
        def serialize(self) -> dict[str, int]:
            return {"w": 2}

    assert to_jsonable([Box()], "T", "f") == [{"w": 2}]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"a": NaN}', "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"__ndarray__": "AAAA", "dtype": "<f8", "shape": [3]}', "do not fill shape"),
        ('{"__ndarray__": "AAAA", "dtype": "O", "shape": [1]}', "not allowed"),
        ('{"__ndarray__": "!!", "dtype": "<f8", "shape": [1]}', "bad array"),
        ('{"__ndarray__": "", "dtype": "no-such-type", "shape": [1]}', "bad array"),
    ],
)
def test_bad_bodies_raise_deserialization_error_with_raw_text(raw: str | bytes, reason: str) -> None:
    with pytest.raises(DeserializationError) as info:
        loads(raw)
    assert reason in str(info.value)
    assert info.value.raw is not None


def test_dumps_is_compact_and_keeps_unicode() -> None:
    text = dumps({"k": "ü", "n": [1, 2]})
    assert text == '{"k":"ü","n":[1,2]}'
    assert json.loads(text) == {"k": "ü", "n": [1, 2]}
    assert not math.isnan(json.loads(dumps(1.0)))


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**70, "negative": -(2**64)},  # beyond orjson's 64-bit integers
        {"deep": json.loads("[" * 300 + "]" * 300)},  # beyond orjson's 255 levels
        {"floats": [0.1, 1e16, -0.0, 5e-324, 1.7976931348623157e308]},
    ],
)
def test_dumps_writes_what_the_fast_encoder_refuses_and_keeps_floats_exact(value: Any) -> None:
    text = dumps(value)
    assert json.loads(text) == value
    assert loads(text) == value


@pytest.mark.parametrize(
    ("value", "field"),
    [("a\ud800b", "f"), (["ok", "\udfff"], "f[1]"), ({"k\ud800": 1}, "f key"), ({"k": "x\ud83d"}, "f['k']")],
)
def test_lone_surrogates_are_refused_naming_the_field(value: Any, field: str) -> None:
    with pytest.raises(SerializationError) as info:
        to_jsonable(value, "T", "f")
    assert info.value.field == field
    assert "lone surrogate" in str(info.value)
