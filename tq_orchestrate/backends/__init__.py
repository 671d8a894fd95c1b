"""Backends by URL scheme, imported lazily so boto3 loads only for SQS."""

from __future__ import annotations

import importlib
import os
from typing import Any

from ..errors import ConfigurationError, UnknownSchemeError
from .base import (
    Backend,
    BatchSender,
    Capabilities,
    Counts,
    DeadLetter,
    EntryFailure,
    Message,
    SendOutcome,
    ThreadSender,
)

__all__ = [
    "Backend",
    "BatchSender",
    "Capabilities",
    "Counts",
    "DeadLetter",
    "EntryFailure",
    "Message",
    "SendOutcome",
    "ThreadSender",
    "known_schemes",
    "open_backend",
    "register_scheme",
    "split_scheme",
]

_EMBEDDED = "tq_orchestrate.backends.sqlite:SQLiteBackend"
_SQS = "tq_orchestrate.backends.sqs:SQSBackend"

_REGISTRY: dict[str, str] = {
    "sqlite": _EMBEDDED,
    "fq": "tq_orchestrate.backends.fq:FileQueueBackend",
    "mem": "tq_orchestrate.backends.memory:MemoryBackend",
    "sqs": _SQS,
    "https": _SQS,
    "http": _SQS,
}

DEFAULT_SCHEME_ENV = "TQO_DEFAULT_SCHEME"
"""Environment variable naming the scheme for URLs without one (default: sqlite)."""


def register_scheme(scheme: str, target: str) -> None:
    """Map ``scheme`` to a backend class given as ``"module:ClassName"``."""
    if ":" not in target:
        raise ConfigurationError(f"backend target {target!r} must look like 'module:ClassName'")
    _REGISTRY[scheme.lower()] = target


def known_schemes() -> list[str]:
    """The schemes ``open_backend`` accepts, sorted."""
    return sorted(_REGISTRY)


def split_scheme(url: str) -> tuple[str, str]:
    """Return ``(scheme, rest)``; a URL without ``scheme://`` gets the default scheme."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        return scheme.lower(), rest
    return os.environ.get(DEFAULT_SCHEME_ENV, "sqlite").lower(), url


def open_backend(url: str, **options: Any) -> Backend:
    """Build the backend for ``url``; unknown schemes raise UnknownSchemeError."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"queue URL must be a non-empty string, got {url!r}")
    scheme, rest = split_scheme(url)
    target = _REGISTRY.get(scheme)
    if target is None:
        raise UnknownSchemeError(url, scheme, known_schemes())
    full = url if "://" in url else f"{scheme}://{rest}"
    module_name, class_name = target.split(":", 1)
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls.from_url(full, **options)
