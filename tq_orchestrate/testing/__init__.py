"""Test helpers: an in-memory SQS server with fault injection (no AWS needed).

``SqsStandIn`` serves the AWS JSON 1.0 SQS protocol on 127.0.0.1 from a
background thread; see :mod:`tq_orchestrate.testing.sqs_server`. Imported
lazily, so ``python -m tq_orchestrate.testing.sqs_server`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sqs_server import Faults, FaultStats, SqsStandIn

__all__ = ["FaultStats", "Faults", "SqsStandIn"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".sqs_server", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
