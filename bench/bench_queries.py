"""Query latency at 10^4 and 10^6 stored readings: each route's p50 beside the same at 10^4.

Both stores hold the last 24 h of readings from 50 Pis (four gases each, about 2 % of them over
their threshold), loaded straight into SQLite and then folded into the derived tables by the
store's own `rebuild_derived` (what opening an older file does). The query function runs
in-process on each store, so a figure is what one warm request costs inside the Lambda: parsing,
the store call(s), the response. /alarms never reads the readings: it reads alarm episodes in
DynamoDB (moto, in-process), the same 500 of the last 24 h beside either store; an extra row shows
it with a 20x history, where moto (which filters a partition in Python) grows and DynamoDB (which
reads only the page's items off the index) would not; the number of DynamoDB queries per request
is what the tests pin (at most 3 pages of at most 4 queries).

Rows: p50 of /devices, /alarms, /warnings and /series (24 h, interval auto) at 10^6 beside 10^4
(target: within 1.5x, /series under 100 ms), and /series at 10^6 beside the same buckets computed
from the raw readings (what it cost before the per-minute rollups).

`BENCH_QUERY_LARGE` sets the large store's size (default 1,000,000; loading it takes about a
minute here). `python -m bench.bench_queries` prints the rows.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SMALL = 10_000
LARGE = int(os.environ.get("BENCH_QUERY_LARGE", "1000000"))
DEVICES = 50
GASES = (("no2", "0006", 88.0), ("co", "0005", 35.0), ("c2h5oh", "0007", 1000.0), ("h2", "0008", 4000.0))
NOW = datetime.now(UTC).replace(microsecond=0)
SAMPLES = 60
ALARM_EPISODES = 500
ROUTES = {
    "/devices": {"limit": "100"},
    "/alarms": {"state": "all", "limit": "50"},
    "/warnings": {"limit": "50"},
    "/series": {"gas": "no2"},
}
TARGETS = {"/devices": 1.5, "/alarms": 1.5, "/warnings": 1.5}
SERIES_TARGET_MS = 100.0


class _Context:
    function_name = "gasmon-query"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-query"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def _load(path: Path, count: int) -> Any:
    """A SQLite store holding `count` readings spread over the last 24 h, derived tables rebuilt."""
    from gasmon.adapters.sqlite_store import SqliteReadingStore

    store = SqliteReadingStore(path)
    start_ms = int((NOW - timedelta(hours=24)).timestamp() * 1000)
    step = 86_400_000 / count
    columns = (
        "reading_id, groupid, gps, lat, lon, gas, sensorid, sensortype, value, createdtime, created_ms,"
        " received_ms, deviceid, device"
    )

    def rows(first: int, last: int) -> Any:
        for i in range(first, last):
            at = start_ms + int(i * step)
            device = f"pi-{i % DEVICES:02d}"
            gas, sensorid, threshold = GASES[(i // DEVICES) % len(GASES)]
            over = i % 50 == 7  # 2 % of readings cross their threshold
            value = threshold * (1.1 if over else 0.5) + (i % 13) / 10
            stamp = datetime.fromtimestamp(at / 1000, UTC).isoformat()
            yield (f"b{i:08d}", f"g{i % 5}", None, None, None, gas, sensorid, "9", value, stamp, at, at, device, device)

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    for first in range(0, count, 100_000):
        conn.executemany(
            f"INSERT INTO readings ({columns}) VALUES ({','.join('?' * 14)})", rows(first, min(count, first + 100_000))
        )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    store.rebuild_derived()
    return store


def _alarm_store(table: str, episodes: int) -> Any:
    from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore, episode_item
    from gasmon.models import AlarmEpisode

    store = DynamoDbAlarmStore(table, region="ap-northeast-2")
    store.create_table()
    items = []
    for n in range(episodes):
        started = NOW - timedelta(seconds=86_400 * (n + 0.5) / episodes)
        episode = AlarmEpisode(
            alarm_id=f"{table}-{n:06d}", device=f"pi-{n % DEVICES:02d}", groupid="g1", gas="no2", sensorid="0006",
            level="warning", threshold=88, started_at=started, ended_at=started + timedelta(minutes=3),
            peak=97, peak_at=started,
        )  # fmt: skip
        items.append({"PutRequest": {"Item": episode_item(episode)}})
    for first in range(0, len(items), 25):
        store.client.batch_write_item(RequestItems={table: items[first : first + 25]})
    return store


def _p50_ms(*calls: Callable[[], Any]) -> list[float]:
    """The median milliseconds of each call, sampled in turns so that load on a shared machine
    falls on all of them alike."""
    for call in calls:
        for _ in range(3):
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(SAMPLES):
        for call, taken in zip(calls, times, strict=True):
            started = time.perf_counter()
            call()
            taken.append((time.perf_counter() - started) * 1000)
    return [statistics.median(taken) for taken in times]


def _route(handler: Any, store: Any, alarms: Any, path: str) -> Callable[[], Any]:
    from gasmon.adapters.presence_status import NullDeviceStatusSource
    from tests.conftest import rest_event

    event = rest_event("GET", path, ROUTES[path])

    def call() -> Any:
        reply = handler(event, _Context(), queries=store, presence=NullDeviceStatusSource(), alarm_store=alarms)
        assert reply["statusCode"] == 200, reply["body"]
        return json.loads(reply["body"])

    return call


def _raw_series(store: Any) -> Callable[[], Any]:
    """GET /series' 24 h of buckets computed from the readings: the query before the rollups."""
    from gasmon.policies import query_policy
    from gasmon.query import plan_series
    from gasmon.settings import QuerySettings

    query = plan_series("no2", None, None, "auto", NOW, query_policy(QuerySettings()))
    step = query.interval_seconds * 1000
    sql = (
        f"SELECT (created_ms / {step}) * {step} AS bucket, count(*), avg(value), min(value), max(value)"
        " FROM readings WHERE gas = ? AND created_ms >= ? AND created_ms < ? GROUP BY bucket ORDER BY bucket"
    )
    args = ("no2", int(query.start.timestamp() * 1000), int(query.end.timestamp() * 1000))
    return lambda: store._select(sql, args)


def run() -> list[dict[str, Any]]:
    from moto import mock_aws

    from bench.in_process import load_function

    handler = load_function("functions/query_readings")
    figures: dict[int, dict[str, float]] = {SMALL: {}, LARGE: {}}
    with tempfile.TemporaryDirectory() as tmp, mock_aws(), contextlib.redirect_stdout(io.StringIO()):
        stores = {}
        for size in (SMALL, LARGE):
            started = time.perf_counter()
            stores[size] = _load(Path(tmp) / f"{size}.sqlite3", size)
            print(f"  {size:,} readings loaded in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        alarms = _alarm_store("alarms", ALARM_EPISODES)
        big_history = _alarm_store("alarms-history", ALARM_EPISODES * 20)
        for path in ROUTES:
            small, large = _p50_ms(*(_route(handler, stores[size], alarms, path) for size in (SMALL, LARGE)))
            figures[SMALL][path], figures[LARGE][path] = small, large
        [figures[LARGE]["raw"]] = _p50_ms(_raw_series(stores[LARGE]))
        [figures[SMALL]["history"]] = _p50_ms(_route(handler, stores[SMALL], big_history, "/alarms"))
    rows = []
    for path in ROUTES:
        ratio = figures[LARGE][path] / figures[SMALL][path]
        if path == "/series":
            target = f"< {SERIES_TARGET_MS:.0f} ms at {LARGE:,}"
            met = figures[LARGE][path] < SERIES_TARGET_MS
        else:
            target = f"<= {TARGETS[path]}x of 10^4"
            met = ratio <= TARGETS[path]
        rows.append(
            {
                "metric": f"GET {path} p50 at {LARGE:,} readings",
                "value": figures[LARGE][path],
                "unit": "ms",
                "baseline": figures[SMALL][path],
                "baseline_label": f"same at {SMALL:,}",
                "target": target + (" (met)" if met else " (MISSED)"),
            }
        )
    rows.append(
        {
            "metric": f"GET /alarms p50, {ALARM_EPISODES * 20:,} episodes in 24 h (moto)",
            "value": figures[SMALL]["history"],
            "unit": "ms",
            "baseline": figures[SMALL]["/alarms"],
            "baseline_label": f"same, {ALARM_EPISODES} episodes",
            "target": "informational: moto filters partitions in Python; queries per request are pinned",
        }
    )
    rows.append(
        {
            "metric": f"GET /series 24 h p50 at {LARGE:,} readings, rollups",
            "value": figures[LARGE]["/series"],
            "unit": "ms",
            "baseline": figures[LARGE]["raw"],
            "baseline_label": "same buckets from raw readings, no HTTP/handler",
            "target": f"< {SERIES_TARGET_MS:.0f} ms",
        }
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
