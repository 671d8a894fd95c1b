"""The bridge to python-task-queue's registries (opt-in; free when it is not loaded).

python-task-queue (``import taskqueue``) registers every ``RegisteredTask``
subclass by class name and every ``@taskqueue.queueable`` function by
``(module, name)``, whatever imported them. A worker must not trust that
wholesale, so a payload may name an upstream class or function only when it
was defined in a module admitted by :func:`admit` (an imported task module
such as ``igneous.tasks``, or one of its submodules). A ``MockTask`` (either
package's) takes any keyword, so it is admitted only by its name
(``taskqueue.MockTask``, ``tq_orchestrate.MockTask``), never by a module prefix.

Nothing here imports taskqueue or a module a message names: the registries
are read from :data:`sys.modules` only when taskqueue was imported already.
Outgoing upstream tasks are written exactly as python-task-queue writes them.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .errors import SerializationError, UnsafeTaskError

_ADMITTED: set[str] = set()
_LOCK = threading.Lock()
_BY_NAME_ONLY: dict[str, tuple[str, ...]] = {
    "taskqueue.registered_task.MockTask": ("taskqueue.MockTask",),
    "tq_orchestrate._task.MockTask": ("tq_orchestrate.MockTask",),
}
"""Classes taking any field: admitted only by one of these names, never by a module prefix."""


def admit(*names: str) -> None:
    """Let payloads name upstream tasks defined in these modules (and submodules),
    or the upstream class with exactly this qualified name."""
    with _LOCK:
        _ADMITTED.update(n for n in names if n)


def admitted() -> frozenset[str]:
    """The module prefixes and qualified class names admitted so far."""
    return frozenset(_ADMITTED)


def qualified(obj: Any) -> str:
    """``module.qualname`` of a class or function."""
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _is_admitted(module: str, full_name: str, extra: Iterable[str]) -> bool:
    names = _ADMITTED.union(extra)
    if full_name in names:
        return True
    if full_name in _BY_NAME_ONLY:
        return any(alias in names for alias in _BY_NAME_ONLY[full_name])
    return any(module == n or module.startswith(n + ".") for n in names)


def _registry(module: str) -> dict[Any, Any] | None:
    found = sys.modules.get(module)
    registry = getattr(found, "REGISTRY", None)
    return registry if isinstance(registry, dict) else None


def registered_class(name: str) -> type | None:
    """The class python-task-queue registered as ``name`` (admitted or not), or None."""
    module = sys.modules.get("taskqueue.registered_task")
    if module is None:  # python-task-queue is not loaded: the common case costs one lookup
        return None
    cls = (_registry("taskqueue.registered_task") or {}).get(name)
    base = getattr(module, "RegisteredTask", None)
    return cls if isinstance(cls, type) and cls is not base else None  # the base is no task


def registered_function(key: tuple[str, str]) -> Callable[..., Any] | None:
    """The function python-task-queue registered as ``(module, name)`` (admitted or not)."""
    fn = (_registry("taskqueue.queueablefns") or {}).get(key)
    return fn if callable(fn) and getattr(fn, "__module__", None) == key[0] else None


def is_admitted(obj: Any, extra: Iterable[str] = ()) -> bool:
    """Whether payloads may name the upstream class or function ``obj``."""
    return _is_admitted(getattr(obj, "__module__", ""), qualified(obj), extra)


def refusal(obj: Any, what: str) -> UnsafeTaskError:
    """The error for a payload naming an upstream ``obj`` that is not admitted."""
    module, full = getattr(obj, "__module__", ""), qualified(obj)
    if full in _BY_NAME_ONLY:
        return UnsafeTaskError(
            f"{what} ({full}) takes any field, so a worker runs it only when allowed by name; "
            f"allow it with --import {_BY_NAME_ONLY[full][0]}"
        )
    return UnsafeTaskError(
        f"{what} ({full}) is registered with python-task-queue but module {module!r} was not "
        f"imported as a task module; allow it with --import {module}"
    )


def _kinds() -> tuple[type, ...]:
    found = []
    for module, name in (
        ("taskqueue.registered_task", "RegisteredTask"),
        ("taskqueue.queueablefns", "FunctionTask"),
    ):
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type):
            found.append(kind)
    return tuple(found)


def is_task(obj: Any) -> bool:
    """Whether ``obj`` is a python-task-queue task object (RegisteredTask or FunctionTask)."""
    kinds = _kinds() if "taskqueue" in sys.modules else ()
    return bool(kinds) and isinstance(obj, kinds)


def unwrap_partial(fn: Any) -> Any:
    """The function inside any number of :func:`functools.partial` layers."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def is_queueable(fn: Any) -> bool:
    """Whether ``fn`` (or the function inside its partials) is a ``@taskqueue.queueable`` one."""
    registry = _registry("taskqueue.queueablefns")
    if not registry:
        return False
    raw = unwrap_partial(fn)
    key = (getattr(raw, "__module__", None), getattr(raw, "__name__", None))
    return registry.get(key) is raw


def function_task(fn: Any, ident: Any = -1) -> Any:
    """python-task-queue's own FunctionTask for a queueable function or partial.

    Raises TypeError when the arguments do not fit the function, as upstream does.
    """
    build = sys.modules["taskqueue.queueablefns"].func2task
    return build(fn, ident)


def _numpy_default(value: Any) -> Any:
    np = sys.modules.get("numpy")  # not imported yet: no value can be a numpy object
    if np is None:
        raise TypeError(f"values of type {type(value).__name__} cannot be sent in a payload")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"values of type {type(value).__name__} cannot be sent in a payload")


def body(task: Any, queue_name: str) -> str:
    """The message body python-task-queue writes for its ``task`` (byte for byte).

    NaN and infinity, which upstream writes as invalid JSON, are refused.
    """
    name = type(task).__name__
    try:
        payload = task.payload()
        return json.dumps(
            {"payload": payload, "queueName": queue_name}, default=_numpy_default, allow_nan=False
        )
    except (TypeError, ValueError) as e:
        raise SerializationError(name, "payload", str(e)) from e


def set_id(task: Any, ident: Any) -> None:
    """Give an upstream task its lease handle (its ``id`` is a read-only property)."""
    if hasattr(type(task), "_arg_names"):
        task._id = ident
    else:
        task.id = ident
