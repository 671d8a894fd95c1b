"""Tasks: RegisteredTask classes, queueable functions, and rebuilding them safely.

Only two kinds of thing can ever be built from a message:

* a subclass of :class:`RegisteredTask` (registered by being defined), looked
  up by class name as python-task-queue does;
* a function decorated with :func:`queueable`, looked up by ``(module, name)``,
  whose module is allowed: every module that declared a queueable function is
  allowed once imported, and :func:`allow_modules` names modules a worker may
  import on demand to find one. Nothing else is imported or called.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from . import _payload
from ._payload import ArrayFormat
from .errors import DeserializationError, SerializationError, UnsafeTaskError

_CLASSES: dict[str, type[RegisteredTask]] = {}
_FUNCTIONS: dict[tuple[str, str], Callable[..., Any]] = {}
_ALLOWED_MODULES: set[str] = set()
_IMPORT_LOCK = threading.Lock()


class RegisteredTask:
    """Base class of tasks whose constructor arguments become their payload.

    Subclasses pass their constructor's arguments to ``super().__init__`` in the
    same order; each is stored as an attribute named after the parameter.
    ``payload()`` reads those attributes back, so changes made in ``__init__``
    (``self.txt = str(txt)``) are what is sent. Override :meth:`execute`.
    """

    array_format: ClassVar[ArrayFormat | None] = None
    """Array format for this class's payloads; None uses the queue's setting."""

    _arg_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        cls._arg_names = tuple(
            p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        )
        _CLASSES[cls.__name__] = cls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self._arg_names
        if len(args) > len(names):
            raise TypeError(
                f"{type(self).__name__} passed {len(args)} positional arguments to "
                f"RegisteredTask.__init__ but its constructor names only {len(names)}"
            )
        values = dict(zip(names, args))  # noqa: B905 - fewer args than names is fine (and faster)
        if kwargs:
            values.update(kwargs)
        self._args = values
        self._id: Any = None
        self.__dict__.update(values)

    @property
    def id(self) -> Any:
        """The lease handle of a leased task (None before it is leased)."""
        return self._id

    def payload(self) -> dict[str, Any]:
        """The JSON-ready payload: current values of the constructor's arguments."""
        return self._payload_with("list")

    def _payload_with(self, array_format: ArrayFormat) -> dict[str, Any]:
        fmt = self.array_format or array_format
        name = type(self).__name__
        attrs = self.__dict__
        out = {}
        for key, default in self._args.items():
            value = attrs.get(key, default)
            kind = type(value)
            if kind is int or (kind is str and value.isascii()) or value is None or kind is bool:
                out[key] = value  # the common case, without a call per field
            else:
                out[key] = _payload.to_jsonable(value, name, key, fmt)
        out["class"] = name
        return out

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work. Subclasses override this."""
        raise NotImplementedError(f"{type(self).__name__} does not define execute()")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={self.__dict__.get(k, v)!r}" for k, v in self._args.items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self.payload() == other.payload())

    __hash__ = None  # type: ignore[assignment]


class FunctionTask:
    """A call of a :func:`queueable` function, as python-task-queue encodes it."""

    __slots__ = ("args", "id", "key", "kwargs")

    def __init__(
        self, key: Iterable[str], args: Iterable[Any], kwargs: dict[str, Any], id: Any = None
    ) -> None:
        self.key: tuple[str, str] = tuple(key)  # type: ignore[assignment]
        self.args = list(args)
        self.kwargs = dict(kwargs)
        self.id = id

    def payload(self) -> list[Any]:
        """``[[module, name], args, kwargs, id]``, JSON-ready."""
        return self._payload_with("list")

    def _payload_with(self, array_format: ArrayFormat) -> list[Any]:
        name = f"{self.key[0]}:{self.key[1]}"
        return [
            list(self.key),
            _payload.to_jsonable(self.args, name, "args", array_format),
            _payload.to_jsonable(self.kwargs, name, "kwargs", array_format),
            self.id if isinstance(self.id, (int, str)) or self.id is None else None,
        ]

    def tofunc(self) -> Callable[..., Any]:
        """The registered function with this task's arguments bound."""
        return functools.partial(lookup_function(self.key), *self.args, **self.kwargs)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (extra arguments are appended)."""
        return self.tofunc()(*args, **kwargs)

    __call__ = execute

    def __repr__(self) -> str:
        return f"FunctionTask({self.key!r}, {self.args!r}, {self.kwargs!r}, id={self.id!r})"


Task = RegisteredTask | FunctionTask


def queueable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` so that calls of it (or partials of it) can be queued."""
    module, name = fn.__module__, fn.__qualname__
    if "<" in name:
        raise SerializationError(name, "queueable", "only module-level functions can be queued")
    _FUNCTIONS[(module, name)] = fn
    _ALLOWED_MODULES.add(module)
    return fn


def allow_modules(*modules: str) -> None:
    """Let payloads name queueable functions of ``modules`` (imported on first use)."""
    _ALLOWED_MODULES.update(modules)


def lookup_function(key: tuple[str, str]) -> Callable[..., Any]:
    """The queueable function for ``(module, name)``; UnsafeTaskError if not allowed."""
    fn = _FUNCTIONS.get(key)
    if fn is None and key[0] in _ALLOWED_MODULES:
        with _IMPORT_LOCK:
            importlib.import_module(key[0])  # may register the function
        fn = _FUNCTIONS.get(key)
    if fn is None:
        raise UnsafeTaskError(
            f"function {key[0]}:{key[1]} is not a registered @queueable function"
            + ("" if key[0] in _ALLOWED_MODULES else f" and module {key[0]!r} is not allowed")
        )
    return fn


def lookup_class(name: str) -> type[RegisteredTask]:
    """The RegisteredTask subclass called ``name``; UnsafeTaskError if none is."""
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UnsafeTaskError(f"class {name!r} is not a registered RegisteredTask subclass")
    return cls


def func2task(fn: Callable[..., Any], ident: Any = None) -> FunctionTask:
    """A FunctionTask from a queueable function or a ``functools.partial`` of one."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    raw = fn
    while isinstance(raw, functools.partial):
        args = list(raw.args) + args
        kwargs = {**raw.keywords, **kwargs}
        raw = raw.func
    key = (getattr(raw, "__module__", ""), getattr(raw, "__qualname__", ""))
    if _FUNCTIONS.get(key) is not raw:
        raise SerializationError(f"{key[0]}:{key[1]}", "function", "is not decorated with @queueable")
    try:
        inspect.signature(raw).bind(*args, **kwargs)
    except TypeError as e:
        raise SerializationError(f"{key[0]}:{key[1]}", "arguments", str(e)) from e
    return FunctionTask(key, args, kwargs, ident)


def totask(obj: Any, ident: Any = None) -> Task:
    """Rebuild a task from a payload (JSON text, dict, list) or wrap a callable.

    Accepts task objects as they are, queueable functions and partials, a
    RegisteredTask payload dict, a FunctionTask payload list, and
    python-task-queue's ``{"payload": ..., "queueName": ...}`` envelope.
    """
    if isinstance(obj, (RegisteredTask, FunctionTask)):
        return obj
    if callable(obj):
        return func2task(obj, ident)
    raw = obj
    if isinstance(obj, (str, bytes, bytearray)):
        obj = _payload.loads(obj)
    payload, envelope_id = _payload.unwrap(obj)
    ident = ident if ident is not None else envelope_id
    try:
        return _build(payload, ident)
    except DeserializationError as e:
        if e.raw is None and isinstance(raw, (str, bytes)):
            raise type(e)(e.reason, raw) from e
        raise


def _build(payload: Any, ident: Any) -> Task:
    if isinstance(payload, dict):
        return _build_registered(payload, ident)
    if isinstance(payload, list) and len(payload) == 4:
        return _build_function(payload, ident)
    raise DeserializationError(
        "expected a RegisteredTask payload (object with 'class') or a function payload "
        f"([[module, name], args, kwargs, id]), got {type(payload).__name__}"
    )


def _build_registered(payload: dict[str, Any], ident: Any) -> RegisteredTask:
    data = dict(payload)
    name = data.pop("class", None)
    if name is None:
        raise DeserializationError("payload object has no 'class' field")
    data.pop("id", None)
    cls = lookup_class(name)
    for key in data:  # a **kwargs constructor would let a field shadow execute, _args...
        if key not in cls._arg_names and (key.startswith("_") or hasattr(cls, key)):
            raise DeserializationError(f"cannot construct {name}: field {key!r} would replace {name}.{key}")
    try:
        task = cls(**data)
    except TypeError as e:
        raise DeserializationError(f"cannot construct {name}: {e}") from e
    task._id = ident
    return task


def _build_function(payload: list[Any], ident: Any) -> FunctionTask:
    key, args, kwargs, _ = payload
    if (
        not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key))
        or not isinstance(args, list)
        or not isinstance(kwargs, dict)
    ):
        raise DeserializationError("function payload must be [[module, name], [args], {kwargs}, id]")
    fn = lookup_function((key[0], key[1]))
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise DeserializationError(f"wrong arguments for {key[0]}:{key[1]}: {e}") from e
    return FunctionTask(key, args, kwargs, ident)


def encode(task: Task, queue_name: str, array_format: ArrayFormat = "list") -> str:
    """The message body for ``task`` (python-task-queue's envelope)."""
    return _payload.envelope(task._payload_with(array_format), queue_name)


def encoder(queue_name: str, array_format: ArrayFormat = "list") -> Callable[[Any], str]:
    """A function giving ``encode(totask(obj), queue_name, array_format)``, cheaper per call
    (for uploads of many tasks)."""
    write = _payload.envelope_writer(queue_name)
    kinds = (RegisteredTask, FunctionTask)

    def encode_one(obj: Any) -> str:
        task = obj if isinstance(obj, kinds) else totask(obj)
        return write(task._payload_with(array_format))

    return encode_one


def as_tasks(obj: Any) -> Iterable[Any]:
    """``obj`` as an iterable of tasks: a single task, payload or callable becomes one item."""
    if isinstance(obj, (str, bytes, dict, RegisteredTask, FunctionTask)) or not isinstance(obj, Iterable):
        return [obj]
    return obj
