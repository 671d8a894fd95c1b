"""The completion ledger: identity stamping, the index-set codec, and every store (issue #14)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.sqs_fixtures import (
    fixture_aws_env,
    fixture_clean_aws_env,
    fixture_moto_server,
    fixture_moto_server_url,
)
from tq_orchestrate import ConfigurationError
from tq_orchestrate.ledger import DEAD, DONE, Identity, IndexSet, LedgerStore, identity_of, open_ledger, stamp
from tq_orchestrate.ledger.parts import decode_part, encode_part

__all__ = ["fixture_aws_env", "fixture_clean_aws_env", "fixture_moto_server", "fixture_moto_server_url"]


def test_stamp_round_trips_and_upstream_ignores_it() -> None:
    from taskqueue.queueables import totask as upstream_totask

    body = stamp('{"payload":{"class":"PrintTask","txt":"hi"},"queueName":"q"}', 'b "7"', 41)
    assert identity_of(body) == Identity('b "7"', 41)
    assert upstream_totask(body).txt == "hi"  # python-task-queue reads only "payload" and "id"
    assert identity_of('{"payload":1,"queueName":"q"}') is None
    assert identity_of('{"payload":1,"tqoId":["b",-1]}') is None


def test_index_set_codec_and_missing() -> None:
    s = IndexSet([0, 1, 5])
    assert len(s) == 3 and 5 in s and 4 not in s
    assert IndexSet.from_bytes(s.to_bytes()) == s
    assert s.missing(7, IndexSet([2])) == [3, 4, 6]
    done, dead = decode_part(encode_part(s, IndexSet([3])))
    assert (len(done), len(dead)) == (3, 1)


def test_a_million_task_merge_stays_fast() -> None:
    """1,000 worker flushes of 1,000 shuffled indices each merge well inside a sensor tick."""
    order = np.random.default_rng(1).permutation(1_000_000)
    parts = [encode_part(IndexSet(order[i : i + 1000]), IndexSet()) for i in range(0, 1_000_000, 1000)]
    began = time.perf_counter()
    done = IndexSet()
    for part in parts:
        done.update(decode_part(part)[0])
    merged = encode_part(done, IndexSet())
    seconds = time.perf_counter() - began
    assert len(done) == 1_000_000 and done.missing(1_000_000) == []
    assert len(merged) < 2_000  # a complete block compresses to almost nothing
    assert seconds < 10, seconds


def _exercise(store: LedgerStore) -> None:
    ids = [Identity("b1", i) for i in range(6)]
    store.record([(i, DONE) for i in ids[:4]] + [(ids[1], DONE)])  # a duplicate counts once
    assert store.figures("b1").total is None and not store.figures("b1").complete
    store.set_total("b1", 6)
    figures = store.figures("b1")
    assert (figures.recorded, figures.missing, figures.missing_sample()) == (4, 2, ["b1#4", "b1#5"])
    store.record([(ids[4], DEAD), (ids[5], DONE), (ids[0], DONE), (Identity("b2", 0), DONE)])
    figures = store.figures("b1")
    assert figures.complete and figures.summary() == {
        "total": 6,
        "completed": 5,
        "dead": 1,
        "recorded": 6,
        "missing": 0,
    }
    assert len(store.figures("b2").done) == 1
    assert store.figures("b1").complete  # merged state persists across reads
    store.close()


@pytest.fixture(name="fresh_store")
def fixture_fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite://{tmp_path}/q.db"
    elif kind == "fq":
        yield f"fq://{tmp_path}/fq"
    else:
        endpoint = request.getfixturevalue("moto_server")
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="ledger")
        yield f"s3://ledger/runs/a?endpoint_url={endpoint}"


@pytest.mark.parametrize("fresh_store", ["sqlite", "fq", "s3"], indirect=True)
def test_store_contract(fresh_store: str) -> None:
    _exercise(open_ledger(fresh_store))
    _exercise_again = open_ledger(fresh_store)  # a second process sees the same figures
    assert _exercise_again.figures("b1", compact=False).complete


def test_fq_ledger_lives_where_python_task_queue_looks_away(tmp_path: Path) -> None:
    store = open_ledger(f"fq://{tmp_path}")
    store.record([(Identity("b", 0), DONE)])
    assert [p.name for p in tmp_path.iterdir()] == ["tqo"]


def test_unknown_ledger_scheme_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="known schemes"):
        open_ledger("redis://x")


def test_the_queues_own_url_with_options_names_its_ledger(tmp_path: Path) -> None:
    store = open_ledger(f"fq://{tmp_path}?movement_files=lazy")
    store.record([(Identity("b", 0), DONE)])
    assert (tmp_path / "tqo" / "ledger" / "b" / "parts").is_dir()


def test_a_million_task_block_merges_incrementally_through_a_parts_store(tmp_path: Path) -> None:
    """1,000 flushes of 1,000 shuffled identities, merged in two ticks: each tick reads only new parts."""
    store = open_ledger(f"fq://{tmp_path}")
    order = np.random.default_rng(2).permutation(1_000_000)
    flushes = [order[i : i + 1000] for i in range(0, 1_000_000, 1000)]
    store.set_total("big", 1_000_000)
    seconds = []
    for half in (flushes[:500], flushes[500:]):
        for chunk in half:
            store.record([(Identity("big", int(i)), DONE) for i in chunk])
        began = time.perf_counter()
        figures = store.figures("big")
        seconds.append(time.perf_counter() - began)
    assert figures.complete and figures.recorded == 1_000_000
    assert len(list((tmp_path / "tqo" / "ledger" / "big" / "parts").iterdir())) == 0  # compacted
    assert (tmp_path / "tqo" / "ledger" / "big" / "merged.bin").stat().st_size < 2_000
    print(f"merge ticks: {seconds}")
    assert max(seconds) < 10, seconds  # a sensor tick's budget is seconds, Dagster's timeout 60 s
