"""Payload values to JSON text and back: pure functions with dedicated errors.

The message body is python-task-queue's envelope, so either package's worker
runs the other's tasks::

    {"payload": <task payload>, "queueName": "<queue>"}

where a RegisteredTask payload is ``{"class": "Name", <arg>: <value>, ...}`` and a
queueable function's is ``[["module", "function"], [args], {kwargs}, id]``.

numpy arrays are written in one of two formats:

* ``"list"`` (default): nested lists, as python-task-queue writes them. Any
  worker reads them; dtype and shape are not kept (the task rebuilds the array).
* ``"typed"``: ``{"__ndarray__": <base64 bytes>, "dtype": "<f4", "shape": [..]}``;
  dtype and shape round-trip exactly. Only tq_orchestrate workers read it.

The decoder reads both. Values that JSON cannot carry exactly (sets, bytes,
objects, non-string dict keys, NaN, infinity) are refused with an error naming
the task and the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import orjson

from .errors import DeserializationError, SerializationError

if TYPE_CHECKING:
    import numpy as np

ArrayFormat = Literal["list", "typed"]
ARRAY_FORMATS: tuple[str, ...] = ("list", "typed")
_ND_KEY = "__ndarray__"
_ND_KEYS = frozenset((_ND_KEY, "dtype", "shape"))
_SCALARS = (str, int, float, bool, type(None))


def check_array_format(value: str) -> ArrayFormat:
    """Return ``value`` if it names an array format, else raise SerializationError."""
    if value not in ARRAY_FORMATS:
        raise SerializationError("payload", "array_format", f"{value!r} is not one of {ARRAY_FORMATS}")
    return value  # type: ignore[return-value]


def to_jsonable(value: Any, task: str, field: str, array_format: ArrayFormat = "list") -> Any:
    """Return ``value`` as plain JSON data; raise SerializationError naming ``task.field``."""
    kind = type(value)
    if kind is str:
        return value if value.isascii() else _checked_text(value, task, field)
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise SerializationError(task, field, f"{value!r} is not a finite number (JSON has no NaN/Infinity)")
    if kind is list or kind is tuple:
        return [to_jsonable(v, task, f"{field}[{i}]", array_format) for i, v in enumerate(value)]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise SerializationError(task, field, f"dict key {key!r} is not a string")
            if not key.isascii():
                _checked_text(key, task, f"{field} key")
            out[key] = to_jsonable(item, task, f"{field}[{key!r}]", array_format)
        return out
    return _to_jsonable_other(value, task, field, array_format)


def _checked_text(value: str, task: str, field: str) -> str:
    """``value`` if it is valid Unicode text; a lone surrogate (which neither UTF-8 nor SQS
    can carry) is refused with its position."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SerializationError(
            task, field, f"text holds a lone surrogate {value[e.start]!r} at index {e.start} (not Unicode)"
        ) from None
    return value


def _to_jsonable_other(value: Any, task: str, field: str, array_format: ArrayFormat) -> Any:
    np = sys.modules.get("numpy")  # not imported yet: no value can be a numpy object
    if np is not None and isinstance(value, np.ndarray):
        return _encode_array(value, task, field, array_format)
    if np is not None and isinstance(value, np.generic):
        return to_jsonable(value.item(), task, field, array_format)
    if isinstance(value, _SCALARS):  # subclasses such as IntEnum or str enums
        return to_jsonable(_plain(value), task, field, array_format)
    serialize = getattr(value, "serialize", None)
    if callable(serialize):  # python-task-queue's hook for custom objects
        return to_jsonable(serialize(), task, field, array_format)
    raise SerializationError(
        task, field, f"values of type {type(value).__name__} cannot be sent in a payload"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return str.__str__(value)
    for base in (bool, int, float):
        if isinstance(value, base):
            return base(value)
    return None


def _encode_array(value: np.ndarray, task: str, field: str, array_format: ArrayFormat) -> Any:
    if value.dtype.hasobject or value.dtype.fields is not None:
        raise SerializationError(task, field, f"numpy arrays of dtype {value.dtype} cannot be sent")
    if array_format == "list":
        import numpy as np

        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise SerializationError(task, field, "array holds NaN or infinity (JSON has neither)")
        if value.dtype.kind == "c":
            raise SerializationError(task, field, "complex arrays need array_format='typed'")
        return value.tolist()
    return {
        _ND_KEY: base64.b64encode(value.tobytes(order="C")).decode("ascii"),
        "dtype": value.dtype.str,
        "shape": list(value.shape),
    }


def dumps(data: Any) -> str:
    """JSON text of already-checked plain data (compact, UTF-8 kept as is).

    orjson writes it (about ten times faster than :mod:`json` for a task's
    payload); what orjson refuses and :mod:`json` can write (integers beyond 64
    bits, nesting deeper than 255 levels) or must report (a lone surrogate) goes
    to :mod:`json`. Either text parses to the same data.
    """
    try:
        return orjson.dumps(data).decode()
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def envelope(payload: Any, queue_name: str) -> str:
    """The message body python-task-queue expects around a payload."""
    return dumps({"payload": payload, "queueName": queue_name})


def envelope_writer(queue_name: str) -> Callable[[Any], str]:
    """:func:`envelope` for one queue and many payloads: the same text, its constant end written once."""
    end = ',"queueName":' + dumps(queue_name) + "}"
    return lambda payload: '{"payload":' + dumps(payload) + end


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a payload")


_MAY_OVERFLOW = re.compile(r"[eE]\+?0*[1-9][0-9]{2}|[0-9]{200}")
"""Text that may hold a float literal beyond float range (which json reads as infinity)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 is JSON's way of writing Infinity
        raise ValueError(f"{text} is not a finite number")
    return value


def _object_hook(obj: dict[str, Any]) -> Any:
    if _ND_KEY in obj and obj.keys() == _ND_KEYS:
        return decode_array(obj)
    return obj


def decode_array(obj: dict[str, Any]) -> np.ndarray:
    """Rebuild a typed-format array; raise DeserializationError if it is inconsistent."""
    import numpy as np  # imported only when a message holds a typed array

    spec, dims = obj["dtype"], obj["shape"]
    if not isinstance(spec, str) or not (
        isinstance(dims, list) and all(type(n) is int and n >= 0 for n in dims)
    ):
        raise DeserializationError(f"bad array: dtype {spec!r} shape {dims!r} not allowed")
    try:
        dtype = np.dtype(spec)
        shape = tuple(dims)
        raw = base64.b64decode(obj[_ND_KEY], validate=True)
    except (TypeError, ValueError, binascii.Error) as e:
        raise DeserializationError(f"bad array: {e}") from e
    if dtype.hasobject or dtype.itemsize == 0:
        raise DeserializationError(f"bad array: dtype {dtype} shape {shape} not allowed")
    expected = dtype.itemsize * math.prod(shape)
    if len(raw) != expected:
        raise DeserializationError(
            f"bad array: {len(raw)} bytes do not fill shape {shape} of dtype {dtype} ({expected} bytes)"
        )
    array: np.ndarray[Any, Any] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return array


def loads(text: str | bytes | bytearray) -> Any:
    """Parse a message body; raise DeserializationError with the raw text on failure."""
    if isinstance(text, (bytes, bytearray)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DeserializationError(f"not UTF-8 ({e.reason} at byte {e.start})", raw) from e
    if not isinstance(text, str):
        raise DeserializationError(f"expected JSON text, got {type(text).__name__}")
    try:
        # floats are checked one by one only where one may overflow (fast path otherwise)
        parse_float = _finite_float if _MAY_OVERFLOW.search(text) else None
        return json.loads(
            text, object_hook=_object_hook, parse_constant=_reject_constant, parse_float=parse_float
        )
    except RecursionError as e:
        raise DeserializationError("nested too deeply", text) from e
    except DeserializationError as e:
        raise DeserializationError(e.reason, text) from e
    except ValueError as e:
        raise DeserializationError(f"not valid JSON ({e})", text) from e


def unwrap(data: Any) -> tuple[Any, Any]:
    """Split python-task-queue's envelope; return ``(payload, id or None)``."""
    if isinstance(data, dict) and "payload" in data:
        return data["payload"], data.get("id")
    return data, None
