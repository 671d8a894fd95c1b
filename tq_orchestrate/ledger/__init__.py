"""The completion ledger: exact block completion by task identity (issue #14).

:func:`open_ledger` picks a store by URL scheme:

* ``sqlite://path/queue.db``: tables in the embedded queue's own database;
* ``fq:///dir`` (or ``fq://dir``): files in ``dir/tqo/ledger/`` beside the file queue;
* ``s3://bucket/prefix[?endpoint_url=...]``: S3 objects (boto3, imported on use).

A ``?query`` of the queue's URL is ignored, so the queue's URL can be passed as is.
The stores and the index sets (numpy) are imported on first use, so the
uploader's identity stamping costs nothing more than :mod:`.identity`.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigurationError
from .identity import ID_KEY, Identified, Identity, identity_of, stamp

if TYPE_CHECKING:
    from .base import DEAD, DONE, BlockFigures, LedgerStore
    from .indexset import IndexSet

__all__ = [
    "DEAD",
    "DONE",
    "ID_KEY",
    "BlockFigures",
    "Identified",
    "Identity",
    "IndexSet",
    "LedgerStore",
    "identity_of",
    "open_ledger",
    "stamp",
]

SCHEMES = ("fq", "s3", "sqlite")

_LAZY = {
    "DEAD": ".base",
    "DONE": ".base",
    "BlockFigures": ".base",
    "LedgerStore": ".base",
    "IndexSet": ".indexset",
}
"""Names whose modules import numpy: loaded when first asked for."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_ledger(url: str) -> LedgerStore:
    """The ledger store ``url`` names; ConfigurationError for an unknown scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigurationError(f"unknown ledger URL {url!r}; known schemes: {', '.join(SCHEMES)}")
    path = rest.partition("?")[0]  # the queue's own URL may carry backend options
    if scheme == "sqlite":
        from .sqlite import SqliteLedger

        return SqliteLedger(url, path)
    if scheme == "fq":
        from .files import FileLedger

        return FileLedger(url, os.path.join(path, "tqo", "ledger"))
    parts = urlsplit(url)
    if not parts.netloc:
        raise ConfigurationError(f"ledger URL {url!r} names no bucket (s3://bucket/prefix)")
    from .s3 import S3Ledger

    endpoint = parse_qs(parts.query).get("endpoint_url", [None])[0]
    return S3Ledger(url, parts.netloc, parts.path, endpoint_url=endpoint)
