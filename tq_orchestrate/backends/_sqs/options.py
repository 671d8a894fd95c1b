"""The SQS backend's ``from_url`` options, checked (see :mod:`tq_orchestrate.backends.sqs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError

__all__ = ["DEFAULT_ENGINE", "ENGINES", "SQSOptions", "check_choice", "check_int"]

DEFAULT_ENGINE = "auto"
"""The upload engine used when the ``engine`` option is not given."""
ENGINES = ("auto", "boto3", "fast")


@dataclass(frozen=True)
class SQSOptions:
    """The validated ``from_url`` options (see the module docstring)."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    engine: str = DEFAULT_ENGINE
    max_receives: int | None = None
    allow_insecure_http: bool = False
    create: bool = False
    message_group_id: str | None = None
    deduplication: str = "unique"
    retry_mode: str = "standard"
    max_attempts: int = 5
    max_pool_connections: int = 32

    @classmethod
    def parse(cls, options: dict[str, Any]) -> SQSOptions:
        """Check names and values; raise ConfigurationError naming the bad one."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown SQS option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        parsed = cls(**options)
        parsed._check()
        return parsed

    def _check(self) -> None:
        for name in ("region", "endpoint_url", "profile", "message_group_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"SQS option {name} must be a non-empty string, got {value!r}")
        check_choice("engine", self.engine, ENGINES)
        check_choice("deduplication", self.deduplication, ("unique", "content"))
        check_choice("retry_mode", self.retry_mode, ("standard", "adaptive", "legacy"))
        check_int("max_attempts", self.max_attempts, 1, 100)
        check_int("max_pool_connections", self.max_pool_connections, 1, 10_000)
        if self.max_receives is not None:
            check_int("max_receives", self.max_receives, 1, 1000)
        for name in ("allow_insecure_http", "create"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"SQS option {name} must be True or False")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigurationError(f"SQS option {name}={value!r} must be one of {', '.join(choices)}")


def check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"SQS option {name}={value!r} must be an integer from {low} to {high}")
