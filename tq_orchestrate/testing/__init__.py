"""Test helpers: an in-memory SQS server with fault injection (no AWS needed).

An optional part of the package: nothing in the runtime core imports it (a
test checks), it needs nothing beyond the package's own dependencies, and it
is imported lazily, so ``python -m tq_orchestrate.testing.sqs_server`` runs
cleanly. It is a test double, not a product: its speed is frozen where it is
(fast enough to benchmark the clients against), and changes here are for
fidelity to SQS only.

Modules, one job each:

* :mod:`.sqs_server`: :class:`SqsStandIn` (the server, its thread and its
  command line) serving the AWS JSON 1.0 SQS protocol on 127.0.0.1;
* :mod:`.faults`: :class:`Faults` (what to break, how often), :class:`FaultStats`;
* :mod:`._http`: HTTP/1.1 framing of requests and replies;
* :mod:`.sqs_state`: :class:`~.sqs_state.SqsState`, the SQS operations on
  in-memory queues (no I/O);
* :mod:`.sqs_messages`: messages, queues, replies, SQS errors, limits;
* :mod:`._batches`: reading ``SendMessageBatch`` entries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import Faults, FaultStats
    from .sqs_server import SqsStandIn

__all__ = ["FaultStats", "Faults", "SqsStandIn"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = ".sqs_server" if name == "SqsStandIn" else ".faults"
        return getattr(importlib.import_module(module, __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
