"""The ledger as S3 objects: one PUT per worker flush, merged by the chain sensor.

URL: ``s3://bucket/prefix``; ``?endpoint_url=http://127.0.0.1:PORT`` (or
``AWS_ENDPOINT_URL_S3``) points it at an emulator such as moto. botocore is imported
only when this store is first used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import LedgerError
from .parts import PartsLedger

__all__ = ["S3Ledger"]

_GET_THREADS = 16
"""Parts fetched at once while merging."""


class S3Ledger(PartsLedger):
    """Parts, merged sets and totals as objects under ``s3://bucket/prefix/``."""

    read_interval_seconds = 1.0
    """One LIST (and a merge) a second at most: about $0.02 an hour of block (see docs/ledger.md)."""

    def __init__(self, url: str, bucket: str, prefix: str, *, endpoint_url: str | None = None) -> None:
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=_GET_THREADS
            )
            session = botocore.session.get_session()
            self._client = session.create_client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise LedgerError(f"ledger {what} failed: {e}", queue=self.url, retryable=True) from e
        except BotoCoreError as e:
            raise LedgerError(f"ledger {what} failed: {e}", queue=self.url, retryable=True) from e

    def _put(self, key: str, data: bytes) -> None:
        self._call("write", self._s3().put_object, Key=self.prefix + key, Body=data)

    def _get(self, key: str) -> bytes | None:
        reply = self._call("read", self._s3().get_object, Key=self.prefix + key)
        return None if reply is None else bytes(reply["Body"].read())

    def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if len(keys) <= 1:
            return [self._get(k) for k in keys]
        with ThreadPoolExecutor(_GET_THREADS) as pool:
            return list(pool.map(self._get, keys))

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:
            reply = self._call("list", self._s3().list_objects_v2, Prefix=self.prefix + prefix, **token)
            keys += [o["Key"][len(self.prefix) :] for o in (reply or {}).get("Contents", [])]
            if not reply or not reply.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": reply["NextContinuationToken"]}

    def _delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            objects = [{"Key": self.prefix + k} for k in keys[start : start + 1000]]
            self._call("delete", self._s3().delete_objects, Delete={"Objects": objects, "Quiet": True})

    def close(self) -> None:
        self._client = None
