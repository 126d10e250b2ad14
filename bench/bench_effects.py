"""Issue 11: the cost of idempotent effects (every accepted reading evaluated, watermark, outbox).

One-reading POSTs (NO2 only, below the level: the steady state of a quiet device) through the
ingest handler in-process with the SQLite reading store. Figures, all from this run:

- warm p50 with alarm state (in memory: gasmon's own cost, no SDK) beside plain threshold mode;
- the same POST re-sent (a device retrying a lost answer: every reading a duplicate, evaluated
  again) beside its first send;
- DynamoDB requests per POST through moto: reads per POST, writes per quiet POST, writes per POST
  while an alarm is open (the watermark), writes per announced transition (state + outbox);
  baseline: the obvious per-reading alarm store (read the state, write it back, per gas reading)
  over the same POSTs on moto, in the same run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.bench_alarms import _Context, _MemoryAlarmStore, _per_reading_requests, _Publisher

T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
POSTS = 600


def _event(value: float, at: datetime) -> dict[str, Any]:
    doc = {
        "groupid": "7",
        "no2": {"sensorid": "0006", "sensortype": "9", "value": value, "createdtime": at.isoformat()},
    }
    return {
        "resource": "/readings",
        "path": "/readings",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "requestContext": {
            "resourcePath": "/readings",
            "httpMethod": "POST",
            "stage": "Prod",
            "requestId": "bench",
            # What the REQUEST authorizer hands ingest for the device that owns group 7's key.
            "authorizer": {"role": "device", "name": "7", "groupid": "7", "principalId": "device:7"},
        },
        "body": json.dumps(doc),
        "isBase64Encoded": False,
    }


def _post_all(handler: Any, events: list[tuple[datetime, dict[str, Any]]], store: Any, alarm_store: Any) -> list[float]:
    publisher = _Publisher()
    latencies = []
    for at, event in events:
        started = time.perf_counter()
        response = handler(
            event, _Context(), store=store, publisher=publisher, clock=lambda at=at: at + timedelta(seconds=1),
            alarm_store=alarm_store,
        )  # fmt: skip
        latencies.append((time.perf_counter() - started) * 1000)
        if response["statusCode"] != 200:
            raise RuntimeError(response["body"])
    return latencies[50:]


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def run() -> list[dict[str, Any]]:
    os.environ.pop("ALARM_TABLE", None)
    from moto import mock_aws

    from bench.in_process import load_function
    from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
    from gasmon.adapters.sqlite_store import SqliteReadingStore

    handler = load_function("functions/ingest_readings")
    quiet = [(T0 + timedelta(seconds=5 * i), _event(20.0, T0 + timedelta(seconds=5 * i))) for i in range(POSTS)]
    open_hour = [(T0 + timedelta(seconds=5 * i), _event(90.0, T0 + timedelta(seconds=5 * i))) for i in range(120)]
    with tempfile.TemporaryDirectory() as tmp, mock_aws(), contextlib.redirect_stdout(io.StringIO()):
        work = Path(tmp)
        plain = _post_all(handler, quiet, SqliteReadingStore(work / "plain.sqlite3"), None)
        memory_store = SqliteReadingStore(work / "memory.sqlite3")
        with_alarms = _post_all(handler, quiet, memory_store, _MemoryAlarmStore())
        retried = _post_all(handler, quiet, memory_store, _MemoryAlarmStore())  # all duplicates now
        dynamo = DynamoDbAlarmStore("bench-effects", region="ap-northeast-2")
        dynamo.create_table()
        _post_all(handler, quiet, SqliteReadingStore(work / "dynamo.sqlite3"), dynamo)
        quiet_reads, quiet_writes = dynamo.reads, dynamo.writes
        open_store = SqliteReadingStore(work / "open.sqlite3")
        _post_all(handler, open_hour, open_store, dynamo)
        open_reads, open_writes = dynamo.reads - quiet_reads, dynamo.writes - quiet_writes
        # The request rows' baseline: the obvious alarm store over the same POSTs, on moto too.
        naive_quiet = _per_reading_requests(quiet, table="bench-effects-naive-quiet")
        naive_open = _per_reading_requests(open_hour, table="bench-effects-naive-open")
    label = "plain threshold mode, same run"
    naive = "per-reading alarm store (GetItem + PutItem per gas reading), same POSTs on moto, same run"
    return [
        {
            "metric": "effects: warm one-reading POST p50, alarm bookkeeping (state in memory)",
            "value": round(_p50(with_alarms), 3),
            "unit": "ms",
            "baseline": round(_p50(plain), 3),
            "baseline_label": label,
            "target": "<= plain + 0.3 ms",
        },
        {
            "metric": "effects: warm retried POST p50 (every reading a duplicate, evaluated again)",
            "value": round(_p50(retried), 3),
            "unit": "ms",
            "baseline": round(_p50(with_alarms), 3),
            "baseline_label": "its first send, same run",
            "target": "<= first send + 0.3 ms",
        },
        {
            "metric": "effects: DynamoDB reads per quiet POST",
            "value": round(quiet_reads / POSTS, 3),
            "unit": "requests",
            "baseline": round(naive_quiet[0] / POSTS, 3),
            "baseline_label": naive,
            "target": "<= 1",
        },
        {
            "metric": "effects: DynamoDB writes per quiet POST",
            "value": round(quiet_writes / POSTS, 3),
            "unit": "requests",
            "baseline": round(naive_quiet[1] / POSTS, 3),
            "baseline_label": naive,
            "target": "0 (a write only when something changed)",
        },
        {
            "metric": "effects: DynamoDB requests per POST while an alarm is open (reads + writes)",
            "value": round((open_reads + open_writes) / len(open_hour), 3),
            "unit": "requests",
            "baseline": round(sum(naive_open) / len(open_hour), 3),
            "baseline_label": naive,
            "target": "report only: <= 2 + 2 per announced message (state + outbox)",
        },
    ]


def main() -> None:
    for row in run():
        print(row)


if __name__ == "__main__":
    main()
