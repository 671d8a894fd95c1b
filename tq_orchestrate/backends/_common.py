"""Helpers the embedded and in-memory backends share: options, handles, argument checks."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, ConfigurationError
from .base import Capabilities, EntryFailure

_MiB = 1024 * 1024
_WEEK = 7 * 24 * 3600.0

LOCAL_CAPABILITIES = Capabilities(
    max_batch_count=1000,
    max_batch_bytes=64 * _MiB,
    max_message_bytes=64 * _MiB,
    max_receive_count=100,
    max_lease_seconds=_WEEK,
    max_delay_seconds=_WEEK,
    exact_counts=True,
    counts_completions=True,
    dead_letters=True,
    upload_concurrency=1,
)
"""Limits of the queues this process holds or opens as a file (exact, no network)."""


@dataclass(frozen=True)
class OptionSpec:
    """One backend option: its parser (from a value or URL text) and default."""

    parse: Callable[[Any], Any]
    default: Any


def positive_int(value: Any) -> int:
    """An int >= 1, from an int or its decimal text."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a whole number >= 1, got {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"expected a whole number >= 1, got {value!r}")
    return number


def positive_float(value: Any) -> float:
    """A float > 0, from a number or its text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number > 0, got {value!r}")
    number = float(value)
    if not number > 0:
        raise ValueError(f"expected a number > 0, got {value!r}")
    return number


def resolve_options(url: str, options: Mapping[str, Any], spec: Mapping[str, OptionSpec]) -> dict[str, Any]:
    """Merge the URL query with keyword ``options`` (which win) and parse each.

    Unknown names and bad values raise ConfigurationError naming the option.
    """
    query = url.partition("?")[2]
    merged: dict[str, Any] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    merged.update(options)
    unknown = sorted(set(merged) - set(spec))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ConfigurationError(
            f"unknown option {names} for {url!r}; valid options: {', '.join(sorted(spec))}"
        )
    resolved: dict[str, Any] = {}
    for name, option in spec.items():
        if name not in merged:
            resolved[name] = option.default
            continue
        try:
            resolved[name] = option.parse(merged[name])
        except ValueError as e:
            raise ConfigurationError(f"option {name} for {url!r}: {e}") from e
    return resolved


def encode_handle(message_id: int, token: int) -> str:
    """The handle for message ``message_id`` leased under ``token``."""
    return f"{message_id}:{token:x}"


def decode_handle(handle: str) -> tuple[int, int] | None:
    """``(message_id, token)`` from a handle, or None if it is not one of ours."""
    if not isinstance(handle, str):
        return None
    ident, sep, token = handle.partition(":")
    if not sep:
        return None
    try:
        return int(ident), int(token, 16)
    except ValueError:
        return None


def new_token() -> int:
    """A random 63-bit lease token (fits SQLite's signed INTEGER)."""
    return int.from_bytes(os.urandom(8), "big") >> 1


def utf8_size(body: str) -> int:
    """UTF-8 size of ``body`` (lone surrogates count as 3 bytes, as SQS would see them)."""
    return len(body.encode("utf-8", "surrogatepass"))


def check_batch(
    caps: Capabilities, url: str, bodies: Sequence[str], delay_seconds: float
) -> list[EntryFailure]:
    """Validate a send; raise for a bad call, return the bodies refused one by one.

    Sizes are only computed exactly when the lengths in characters cannot decide.
    """
    if not 0 <= delay_seconds <= caps.max_delay_seconds:
        raise ConfigurationError(
            f"delay_seconds must be between 0 and {caps.max_delay_seconds:g}, got {delay_seconds!r}"
        )
    if len(bodies) > caps.max_batch_count:
        raise BackendError(
            f"a batch of {len(bodies)} messages is over max_batch_count={caps.max_batch_count}", queue=url
        )
    failures: list[EntryFailure] = []
    chars = 0
    for index, body in enumerate(bodies):
        if not isinstance(body, str):
            failures.append(
                EntryFailure(index, "InvalidBody", f"body must be str, not {type(body).__name__}", False)
            )
            continue
        chars += len(body)
        if len(body) * 4 > caps.max_message_bytes and utf8_size(body) > caps.max_message_bytes:
            failures.append(
                EntryFailure(
                    index,
                    "MessageTooLong",
                    f"{utf8_size(body)} bytes, over max_message_bytes={caps.max_message_bytes}",
                    False,
                )
            )
    if chars * 4 > caps.max_batch_bytes:
        total = sum(utf8_size(b) for b in bodies if isinstance(b, str))
        if total > caps.max_batch_bytes:
            raise BackendError(
                f"a batch of {total} bytes is over max_batch_bytes={caps.max_batch_bytes}", queue=url
            )
    return failures


def check_receive(caps: Capabilities, max_messages: int, lease_seconds: float, wait_seconds: float) -> None:
    """Raise ConfigurationError for receive arguments out of range."""
    if isinstance(max_messages, bool) or not 1 <= max_messages <= caps.max_receive_count:
        raise ConfigurationError(
            f"max_messages must be between 1 and {caps.max_receive_count}, got {max_messages!r}"
        )
    check_lease(caps, lease_seconds)
    if not 0 <= wait_seconds <= 3600:
        raise ConfigurationError(f"wait_seconds must be between 0 and 3600, got {wait_seconds!r}")


def check_lease(caps: Capabilities, lease_seconds: float) -> None:
    """Raise ConfigurationError for a lease time out of range."""
    if not 0 <= lease_seconds <= caps.max_lease_seconds:
        raise ConfigurationError(
            f"lease_seconds must be between 0 and {caps.max_lease_seconds:g}, got {lease_seconds!r}"
        )


def exhausted_reason(receive_count: int) -> str:
    """The dead-letter error recorded when no task error was recorded."""
    return f"received {receive_count} times without being deleted"
