"""Tasks: RegisteredTask classes, queueable functions, and rebuilding them safely.

Only two kinds of thing can ever be built from a message:

* a subclass of :class:`RegisteredTask` (registered by being defined), looked
  up by class name as python-task-queue does;
* a function decorated with :func:`queueable`, looked up by ``(module, name)``,
  whose module is allowed: every module that declared a queueable function is
  allowed once imported, and :func:`allow_modules` names modules a worker may
  import on demand to find one;
* a python-task-queue class or ``@taskqueue.queueable`` function defined in a
  module admitted by :func:`allow_modules` / :func:`import_task_modules` (or a
  submodule of one); see :mod:`tq_orchestrate._upstream`. Those are never
  imported on demand.

Nothing else is imported or called.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from . import _payload, _upstream
from ._payload import ArrayFormat
from .errors import (
    ConfigurationError,
    DeserializationError,
    SerializationError,
    TaskArgumentError,
    UnregisteredFunctionError,
    UnsafeTaskError,
)

Admit = frozenset[str]
"""Extra upstream names a local queue admits: those of the objects inserted into it."""

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

    @classmethod
    def deserialize(cls, data: str | bytes | dict[str, Any]) -> Any:
        """The task of this class encoded in ``data`` (JSON text or payload dict)."""
        task = totask(data)
        if not isinstance(task, cls):
            raise DeserializationError(f"payload holds a {type(task).__name__}, not a {cls.__name__}")
        return task

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


class PrintTask(RegisteredTask):
    """Prints its text (python-task-queue's PrintTask)."""

    def __init__(self, txt: str = "") -> None:
        super().__init__(txt)
        self.txt = txt

    def execute(self, *args: Any, **kwargs: Any) -> None:
        print(f"{self!r}: {self.txt}" if self.txt else repr(self))


class MockTask(RegisteredTask):
    """Does nothing; keeps any JSON keyword arguments (python-task-queue's MockTask).

    As it takes any field, a worker builds one from a message only when allowed
    by name (``--import tq_orchestrate.MockTask``; local queues allow the tasks
    inserted into them); a field that would replace a method or a private
    attribute is refused.
    """

    def __init__(self, **kwargs: Any) -> None:
        for key in kwargs:
            if key.startswith("_") or hasattr(MockTask, key):
                raise TaskArgumentError("MockTask", key, f"would replace MockTask.{key}")
        super().__init__(**kwargs)

    def execute(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""


class FunctionTask:
    """A call of a :func:`queueable` function, as python-task-queue encodes it."""

    __slots__ = ("_fn", "args", "id", "key", "kwargs")

    def __init__(
        self, key: Iterable[str], args: Iterable[Any], kwargs: dict[str, Any], id: Any = None
    ) -> None:
        self.key: tuple[str, str] = tuple(key)  # type: ignore[assignment]
        self.args = list(args)
        self.kwargs = dict(kwargs)
        self.id = id
        self._fn: Callable[..., Any] | None = None

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
        fn = self._fn or lookup_function(self.key)
        return functools.partial(fn, *self.args, **self.kwargs)

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
    """Let payloads name tasks of ``modules``: their queueable functions (a module is
    imported on first use), and the python-task-queue classes and functions that
    they and their submodules registered (never imported on demand). A full class
    name such as ``taskqueue.registered_task.MockTask`` admits that class only."""
    _ALLOWED_MODULES.update(modules)
    _upstream.admit(*modules)


def import_task_modules(modules: Iterable[str]) -> None:
    """Import modules holding task definitions and allow their tasks (:func:`allow_modules`).

    The current directory is searched too, as ``python -m`` does. A name may be a
    class (``package.module.Class``): its module is imported and the class alone allowed.
    """
    names = [m for m in modules if m]
    if not names:
        return
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = [name for name in names if _import_module_or_class(name)]
    allow_modules(*modules)
    _upstream.admit(*names)


def _import_module_or_class(name: str) -> bool:
    """Import module ``name`` (True), or the module of class ``name`` (False)."""
    try:
        importlib.import_module(name)
        return True
    except ImportError as e:
        module, _, attr = name.rpartition(".")
        try:
            if module and isinstance(getattr(importlib.import_module(module), attr, None), type):
                return False
        except ImportError:
            pass
        raise ConfigurationError(f"cannot import task module {name!r}: {e}") from e


def lookup_function(key: tuple[str, str], admit: Admit = frozenset()) -> Callable[..., Any]:
    """The queueable function for ``(module, name)``; UnsafeTaskError if not allowed.

    Functions python-task-queue registered count when their module is admitted
    (:func:`allow_modules`); a module is never imported for them.
    """
    ours = _FUNCTIONS.get(key)
    theirs = _upstream.registered_function(key)
    if theirs is not None and theirs is not ours and _upstream.is_admitted(theirs, admit):
        if ours is not None:
            raise UnsafeTaskError(_twice(f"function {key[0]}:{key[1]}", ours, theirs))
        return theirs
    if ours is None and theirs is not None:
        raise _upstream.refusal(theirs, f"function {key[0]}:{key[1]}")
    if ours is None and key[0] in _ALLOWED_MODULES:
        _import_allowed(key[0])  # may register the function
        ours = _FUNCTIONS.get(key)
    if ours is None:
        raise UnregisteredFunctionError(
            f"function {key[0]}:{key[1]} is not a registered @queueable function"
            + ("" if key[0] in _ALLOWED_MODULES else f" and module {key[0]!r} is not allowed")
        )
    return ours


def lookup_class(name: str, admit: Admit = frozenset()) -> type:
    """The task class called ``name``; UnsafeTaskError if none is, or if it is not allowed.

    Our RegisteredTask subclasses always count; python-task-queue's count when
    their module is admitted. A name both packages registered for different
    classes is refused, except that an admitted upstream MockTask or PrintTask
    replaces ours. A MockTask needs to be allowed by name.
    """
    if not isinstance(name, str):
        raise UnsafeTaskError(f"class {name!r} is not a registered RegisteredTask subclass")
    ours = _CLASSES.get(name)
    theirs = _upstream.registered_class(name)
    if theirs is not None and theirs is not ours and _upstream.is_admitted(theirs, admit):
        if ours is not None and ours not in (MockTask, PrintTask):  # ours stand in for theirs
            raise UnsafeTaskError(_twice(f"class {name!r}", ours, theirs))
        return theirs
    if ours is None and theirs is not None:
        raise _upstream.refusal(theirs, f"class {name!r}")
    if ours is None:
        raise UnsafeTaskError(f"class {name!r} is not a registered RegisteredTask subclass")
    if ours is MockTask and not _upstream.is_admitted(ours, admit):  # it takes any field
        raise _upstream.refusal(theirs or ours, f"class {name!r}")
    return ours


def _import_allowed(module: str) -> None:
    try:
        with _IMPORT_LOCK:
            importlib.import_module(module)
    except ImportError as e:
        raise UnsafeTaskError(f"allowed module {module!r} cannot be imported: {e}") from e


def _twice(what: str, ours: object, theirs: object) -> str:
    return (
        f"{what} is registered twice, as {_upstream.qualified(ours)} (tq_orchestrate) and "
        f"{_upstream.qualified(theirs)} (python-task-queue); rename one of them"
    )


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
        raise TaskArgumentError(f"{key[0]}:{key[1]}", "arguments", str(e)) from e
    return FunctionTask(key, args, kwargs, ident)


def _from_callable(fn: Any, ident: Any) -> Any:
    """Our FunctionTask for our queueable functions, python-task-queue's for its own."""
    raw = _upstream.unwrap_partial(fn)
    ours = _FUNCTIONS.get((getattr(raw, "__module__", ""), getattr(raw, "__qualname__", ""))) is raw
    return _upstream_function_task(fn) if not ours and _upstream.is_queueable(fn) else func2task(fn, ident)


def _upstream_function_task(fn: Any) -> Any:
    """python-task-queue's FunctionTask for a partial of one of its queueable functions."""
    try:
        return _upstream.function_task(fn)
    except TypeError as e:
        raw = _upstream.unwrap_partial(fn)
        raise TaskArgumentError(f"{raw.__module__}:{raw.__name__}", "arguments", str(e)) from e


def tofunc(task: Any) -> Callable[..., Any]:
    """A callable running ``task``: callables as they are, function payloads bound to their arguments."""
    if callable(task) and not isinstance(task, FunctionTask):
        return task  # type: ignore[no-any-return]
    built = totask(task)
    if not isinstance(built, FunctionTask):
        raise DeserializationError(f"expected a function task, got a {type(built).__name__}")
    return built.tofunc()


def totask(obj: Any, ident: Any = None) -> Task:
    """Rebuild a task from a payload (JSON text, dict, list) or wrap a callable.

    Accepts task objects as they are, queueable functions and partials, a
    RegisteredTask payload dict, a FunctionTask payload list, and
    python-task-queue's ``{"payload": ..., "queueName": ...}`` envelope.
    python-task-queue's task objects (typed as ours: they have the same
    ``execute``, ``payload`` and ``id``) come back as they are.
    """
    return decode(obj, ident)  # type: ignore[no-any-return]


def decode(obj: Any, ident: Any = None, admit: Admit = frozenset()) -> Any:
    """:func:`totask`, also admitting the upstream classes and functions named in ``admit``.

    python-task-queue's task objects are returned as they are, and partials of
    its queueable functions become its FunctionTask.
    """
    raw = obj
    if isinstance(obj, (str, bytes, bytearray)):  # a message body: the worker's case
        obj = _payload.loads(obj)
    elif isinstance(obj, (RegisteredTask, FunctionTask)) or _upstream.is_task(obj):
        return obj
    elif callable(obj):
        return _from_callable(obj, ident)
    payload, envelope_id = _payload.unwrap(obj)
    ident = ident if ident is not None else envelope_id
    try:
        return _build(payload, ident, admit)
    except DeserializationError as e:
        if e.raw is None and isinstance(raw, (str, bytes)):
            raise type(e)(e.reason, raw) from e
        raise


def _build(payload: Any, ident: Any, admit: Admit) -> Any:
    if isinstance(payload, dict):
        return _build_registered(payload, ident, admit)
    if isinstance(payload, list) and len(payload) == 4:
        return _build_function(payload, ident, admit)
    raise DeserializationError(
        "expected a RegisteredTask payload (object with 'class') or a function payload "
        f"([[module, name], args, kwargs, id]), got {type(payload).__name__}"
    )


def _build_registered(payload: dict[str, Any], ident: Any, admit: Admit) -> Any:
    data = dict(payload)
    name = data.pop("class", None)
    if name is None:
        raise DeserializationError("payload object has no 'class' field")
    data.pop("id", None)
    cls: Any = lookup_class(name, admit)
    for key in data:  # a **kwargs constructor would let a field shadow execute, _args...
        if key not in cls._arg_names and (key.startswith("_") or hasattr(cls, key)):
            raise DeserializationError(f"cannot construct {name}: field {key!r} would replace {name}.{key}")
    try:
        task = cls(**data)
    except TypeError as e:
        raise DeserializationError(f"cannot construct {name}: {e}") from e
    if isinstance(task, RegisteredTask):
        task._id = ident
    else:
        _upstream.set_id(task, ident)
    return task


def set_id(task: Any, ident: Any) -> None:
    """Set a task's ``id`` (a read-only property on RegisteredTask classes of both packages)."""
    if isinstance(task, FunctionTask):
        task.id = ident
    else:
        _upstream.set_id(task, ident)


def _build_function(payload: list[Any], ident: Any, admit: Admit) -> FunctionTask:
    key, args, kwargs, _ = payload
    if (
        not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key))
        or not isinstance(args, list)
        or not isinstance(kwargs, dict)
    ):
        raise DeserializationError("function payload must be [[module, name], [args], {kwargs}, id]")
    fn = lookup_function((key[0], key[1]), admit)
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise DeserializationError(f"wrong arguments for {key[0]}:{key[1]}: {e}") from e
    task = FunctionTask(key, args, kwargs, ident)
    task._fn = fn
    return task


def encode(task: Any, queue_name: str, array_format: ArrayFormat = "list") -> str:
    """The message body for ``task`` (python-task-queue's envelope); python-task-queue's
    own task objects are written exactly as it writes them."""
    if isinstance(task, (RegisteredTask, FunctionTask)):
        return _payload.envelope(task._payload_with(array_format), queue_name)
    return _upstream.body(task, queue_name)


def encoder(queue_name: str, array_format: ArrayFormat = "list") -> Callable[[Any], str]:
    """A function giving ``encode(totask(obj), queue_name, array_format)``, cheaper per call
    (for uploads of many tasks)."""
    write = _payload.envelope_writer(queue_name)
    kinds = (RegisteredTask, FunctionTask)

    def encode_one(obj: Any) -> str:
        task = obj if isinstance(obj, kinds) else totask(obj)
        if not isinstance(task, kinds):
            return _upstream.body(task, queue_name)
        return write(task._payload_with(array_format))

    return encode_one


def as_tasks(obj: Any) -> Iterable[Any]:
    """``obj`` as an iterable of tasks: a single task, payload or callable becomes one item."""
    single = (str, bytes, dict, RegisteredTask, FunctionTask)
    if isinstance(obj, single) or not isinstance(obj, Iterable) or _upstream.is_task(obj):
        return [obj]
    return obj
