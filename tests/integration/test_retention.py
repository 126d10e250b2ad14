"""Retention on the real stores: the hourly sweep on SQLite (through its Lambda handler), and
what the OpenSearch adapter sends for retention, replicas and a refused index template, through
the real opensearch-py client to the spec-checked fake cluster (tests/opensearch_fake.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gasmon.adapters.opensearch_store import OpenSearchReadingStore
from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.models import Reading, SeriesQuery
from gasmon_local.functions import load_function_module
from tests.opensearch_fake import FakeCluster, running_cluster

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def readings_days_ago(days: list[float], gas: str = "co") -> list[Reading]:
    found = []
    for n, age in enumerate(days):
        at = NOW - timedelta(days=age)
        found.append(
            Reading(
                reading_id=f"r-{n}-{age}",
                groupid="pi-1",
                gas=gas,
                sensorid="s1",
                sensortype="MQ7",
                value=float(n),
                createdtime=at.isoformat(),
                created_at=at,
                received_at=at,
            )
        )
    return found


def series_count(store: SqliteReadingStore, days: int) -> int:
    query = SeriesQuery(gas="co", start=NOW - timedelta(days=days), end=NOW, interval_seconds=86400)
    return sum(bucket.count for bucket in store.bucket_stats(query))


def test_the_sweep_removes_readings_older_than_retention_days_and_keeps_the_rest(
    tmp_path: Path, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given readings 1, 5, 8 and 12 days old, and RETENTION_DAYS=7
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    store.put_readings(readings_days_ago([1, 5, 8, 12]))
    monkeypatch.setenv("RETENTION_DAYS", "7")
    handler = load_function_module("functions/sweep_readings").lambda_handler
    # When the hourly sweep runs
    outcome = handler({"detail-type": "Scheduled Event"}, lambda_context, sweeper=store, clock=lambda: NOW)
    # Then the two older than 7 days are gone from the store and the query API's series
    assert outcome == {"deleted": 2, "complete": True}
    assert store.count() == 2
    assert series_count(store, 30) == 2


def test_one_sweep_is_bounded_and_the_next_goes_on(tmp_path: Path) -> None:
    # Given 250 expired readings and a sweep of at most 2 batches of 100
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    store.put_readings(readings_days_ago([100 + n / 1000 for n in range(250)]))
    # When it runs twice
    first = store.delete_older_than(NOW - timedelta(days=90), batch_size=100, max_batches=2)
    second = store.delete_older_than(NOW - timedelta(days=90), batch_size=100, max_batches=2)
    # Then the first stops at its bound and says so; the second finishes
    assert (first.deleted, first.complete) == (200, False)
    assert (second.deleted, second.complete) == (50, True)
    assert store.count() == 0


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    yield from running_cluster()


def test_the_opensearch_sweep_is_one_bounded_delete_by_query_on_gasmons_indices(
    cluster: tuple[FakeCluster, str],
) -> None:
    # Given readings of 100 and 1 days ago in the spec-checked fake cluster
    state, url = cluster
    store = OpenSearchReadingStore(url, sign_requests=False, sleep=lambda _: None)
    old, recent = readings_days_ago([100]), readings_days_ago([1])
    store.put_readings(old + recent)
    # When the sweep runs with a 90-day cutoff
    outcome = store.delete_older_than(NOW - timedelta(days=90), batch_size=1000, max_batches=10)
    # Then one bounded _delete_by_query on gasmon's indices removed the old reading only
    assert (outcome.deleted, outcome.complete) == (1, True)
    [sweep] = [r for r in state.requests if r.path.endswith("/_delete_by_query")]
    assert sweep.method == "POST" and sweep.path == "/gasdetect*/_delete_by_query"
    assert "conflicts=proceed" in sweep.url and "max_docs=10000" in sweep.url
    assert set(state.docs()) == {r.reading_id for r in recent}


@pytest.mark.parametrize("replicas", [0, 1])
def test_the_index_template_carries_the_domains_replica_count(cluster: tuple[FakeCluster, str], replicas: int) -> None:
    state, url = cluster
    store = OpenSearchReadingStore(url, sign_requests=False, replicas=replicas, sleep=lambda _: None)
    store.put_readings(readings_days_ago([1]))
    assert state.templates["gasdetect"]["template"]["settings"]["number_of_replicas"] == replicas


def test_a_403_on_the_template_is_one_clear_error_and_writes_go_on(
    cluster: tuple[FakeCluster, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given fine-grained access control refusing the template and policy PUTs to the ingest role
    state, url = cluster
    state.forbid_setup = True
    store = OpenSearchReadingStore(url, sign_requests=False, sleep=lambda _: None)
    # When two POSTs' readings are written
    with caplog.at_level(logging.ERROR, logger="gasmon.adapters.opensearch_store"):
        first = store.put_readings(readings_days_ago([1]))
        second = store.put_readings(readings_days_ago([2]))
    # Then both are stored, setup was tried once, and one error names the fix
    assert len(first.created) == len(second.created) == 1
    assert sum(r.method == "PUT" for r in state.requests) == 1
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "403" in errors[0].getMessage() and "docs/operating.md" in errors[0].getMessage()
