"""Completion-ledger stores side by side (issue 14): write cost per worker flush, merge cost per tick.

Over HTTP against moto's server on loopback (S3 and DynamoDB), and on local
files (SQLite, fq://). Per store: seconds per flush of ``--flush`` identities,
seconds to merge ``--parts`` flushes into block figures, and requests per
million tasks (the price basis). Not a test.

Run: ``python bench/ledger_store.py [--parts 300] [--flush 100]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.dagster_overhead import isolate_aws, moto_endpoint  # noqa: E402
from tq_orchestrate.ledger import DONE, Identity, LedgerStore, open_ledger  # noqa: E402


def measure(store: LedgerStore, parts: int, flush: int) -> tuple[float, float]:
    """(median-ish seconds per flush, seconds for one merge of every part)."""
    began = time.perf_counter()
    for p in range(parts):
        store.record([(Identity("b", p * flush + i), DONE) for i in range(flush)])
    per_flush = (time.perf_counter() - began) / parts
    store.set_total("b", parts * flush)
    began = time.perf_counter()
    figures = store.figures("b")
    merge = time.perf_counter() - began
    assert figures.complete, figures.summary()
    return per_flush, merge


def dynamodb(endpoint: str, parts: int, flush: int) -> tuple[float, float]:
    """The DynamoDB candidate: one item per identity, BatchWriteItem (25 items a request)."""
    import boto3

    db = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    db.create_table(
        TableName="ledger",
        KeySchema=[
            {"AttributeName": "block", "KeyType": "HASH"},
            {"AttributeName": "idx", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "block", "AttributeType": "S"},
            {"AttributeName": "idx", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    began = time.perf_counter()
    for p in range(parts):
        items = [{"block": {"S": "b"}, "idx": {"N": str(p * flush + i)}} for i in range(flush)]
        for start in range(0, flush, 25):
            batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            db.batch_write_item(RequestItems={"ledger": batch})
    per_flush = (time.perf_counter() - began) / parts
    began = time.perf_counter()
    count, kwargs = 0, {}
    while True:  # the sensor's read: a paginated COUNT query of the block
        reply = db.query(
            TableName="ledger",
            KeyConditionExpression="block = :b",
            ExpressionAttributeValues={":b": {"S": "b"}},
            Select="COUNT",
            **kwargs,
        )
        count += reply["Count"]
        if "LastEvaluatedKey" not in reply:
            break
        kwargs = {"ExclusiveStartKey": reply["LastEvaluatedKey"]}
    assert count == parts * flush
    return per_flush, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=300, help="worker flushes (default 300)")
    parser.add_argument("--flush", type=int, default=100, help="identities per flush (default 100)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tqo-bench-ledger-"))
    isolate_aws(str(work))
    n = args.parts * args.flush
    rows = []
    rows.append(
        ("sqlite (queue's db)", *measure(open_ledger(f"sqlite://{work}/q.db"), args.parts, args.flush))
    )
    rows.append(("fq:// files", *measure(open_ledger(f"fq://{work}/fq"), args.parts, args.flush)))
    with moto_endpoint() as endpoint:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="ledger")
        s3 = open_ledger(f"s3://ledger/l?endpoint_url={endpoint}")
        rows.append(("S3 objects (moto, HTTP)", *measure(s3, args.parts, args.flush)))
        rows.append(("DynamoDB items (moto, HTTP)", *dynamodb(endpoint, args.parts, args.flush)))
    print(f"# bench/ledger_store.py: {args.parts} flushes of {args.flush} identities ({n:,} tasks)\n")
    print("| store | ms per flush | merge/read of the block s | requests per 1M tasks (writes) |")
    print("|---|---|---|---|")
    writes = {"S3": 1_000_000 // args.flush, "DynamoDB": 1_000_000 // 25}
    for name, per_flush, merge in rows:
        kind = next((k for k in writes if name.startswith(k)), None)
        shown = f"{writes[kind]:,}" if kind else "-"
        print(f"| {name} | {1000 * per_flush:.1f} | {merge:.2f} | {shown} |")


if __name__ == "__main__":
    main()
