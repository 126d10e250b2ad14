"""Retention on the real stores: the hourly sweep on SQLite (through its Lambda handler), and
what the OpenSearch adapter sends for retention, replicas and a refused index template, through
the real opensearch-py client to an HTTP server on 127.0.0.1 that records each request."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from gasmon.adapters.opensearch_store import OpenSearchReadingStore
from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.models import Reading, SeriesQuery
from gasmon_local.functions import load_function_module

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


class Recorder:
    """An OpenSearch stand-in: records every request, answers from `answers[(method, path prefix)]`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]], str]] = []
        self.answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}

    def answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        for (m, prefix), reply in self.answers.items():
            if m == method and path.startswith(prefix):
                return reply
        return 200, {"acknowledged": True}


@pytest.fixture
def cluster() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            url = urlparse(self.path)
            recorder.requests.append((self.command, url.path, parse_qs(url.query), body))
            status, reply = recorder.answer(self.command, url.path)
            if self.command == "POST" and url.path.endswith("/_bulk") and status == 200:
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                items = [{"create": {"_index": a["create"]["_index"], "_id": a["create"]["_id"], "status": 201}}
                         for a in lines[::2]]  # fmt: skip
                reply = {"took": 1, "errors": False, "items": items}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_opensearch_sweep_is_one_bounded_delete_by_query_on_gasmons_indices(cluster: tuple[Recorder, str]) -> None:
    recorder, url = cluster
    recorder.answers[("POST", "/gasdetect*/_delete_by_query")] = (200, {"took": 3, "deleted": 42, "failures": []})
    store = OpenSearchReadingStore(url, sign_requests=False)
    outcome = store.delete_older_than(NOW - timedelta(days=90), batch_size=1000, max_batches=10)
    assert (outcome.deleted, outcome.complete) == (42, True)
    ((method, path, params, body),) = recorder.requests
    assert (method, path) == ("POST", "/gasdetect*/_delete_by_query")
    assert params["conflicts"] == ["proceed"] and params["max_docs"] == ["10000"]
    cutoff = int((NOW - timedelta(days=90)).timestamp() * 1000)
    assert json.loads(body) == {"query": {"range": {"date": {"lt": cutoff, "format": "epoch_millis"}}}}


@pytest.mark.parametrize("replicas", [0, 1])
def test_the_index_template_carries_the_domains_replica_count(cluster: tuple[Recorder, str], replicas: int) -> None:
    recorder, url = cluster
    store = OpenSearchReadingStore(url, sign_requests=False, replicas=replicas)
    store.put_readings(readings_days_ago([1]))
    method, path, _, body = recorder.requests[0]
    assert (method, path) == ("PUT", "/_index_template/gasdetect")
    assert json.loads(body)["template"]["settings"]["number_of_replicas"] == replicas


def test_a_403_on_the_template_is_one_clear_error_and_writes_go_on(
    cluster: tuple[Recorder, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given fine-grained access control refusing the template PUT to the ingest role
    recorder, url = cluster
    reason = "no permissions for [indices:admin/index_template/put]"
    refusal = {"error": {"type": "security_exception", "reason": reason}}
    recorder.answers[("PUT", "/_index_template/")] = (403, {**refusal, "status": 403})
    store = OpenSearchReadingStore(url, sign_requests=False)
    # When two POSTs' readings are written
    with caplog.at_level(logging.ERROR, logger="gasmon.adapters.opensearch_store"):
        first = store.put_readings(readings_days_ago([1]))
        second = store.put_readings(readings_days_ago([2]))
    # Then both are stored, the template was asked for once, and one error names the fix
    assert len(first.created) == len(second.created) == 1
    assert [r[0] for r in recorder.requests] == ["PUT", "POST", "POST"]
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "403" in errors[0].getMessage() and "README" in errors[0].getMessage()
