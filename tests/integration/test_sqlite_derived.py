"""The SQLite store's derived tables: latest per device and per-minute rollups, on a real file.

They exist so that GET /devices and GET /series do work that follows the number of devices and
buckets rather than of readings; these tests pin that they always say what the readings say.
"""

import random
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.models import BucketStats, Reading, SeriesQuery
from tests.integration.test_sqlite_queries import T0, reading


def brute_force(readings: list[Reading], query: SeriesQuery) -> list[tuple[int, int, float, float, float]]:
    """Per-bucket statistics straight from the readings: what the rollups must agree with."""
    step = query.interval_seconds * 1000
    buckets: dict[int, list[float]] = {}
    for r in readings:
        ms = int(r.created_at.timestamp() * 1000)
        if r.gas != query.gas or not query.start <= r.created_at < query.end:
            continue
        if any(getattr(query, f) not in (None, getattr(r, f)) for f in ("groupid", "sensorid", "deviceid")):
            continue
        buckets.setdefault(ms // step * step, []).append(r.value)
    return [
        (start, len(values), round(sum(values) / len(values), 6), min(values), max(values))
        for start, values in sorted(buckets.items())
    ]


def shown(buckets: list[BucketStats]) -> list[tuple[int, int, float, float, float]]:
    return [(int(b.start.timestamp() * 1000), b.count, round(b.avg, 6), b.min, b.max) for b in buckets]


def test_a_late_reading_never_replaces_the_latest_value(tmp_path: Path) -> None:
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    # Given pi-1's NO2 at minute 5 was stored first
    store.put_readings([reading(5, value=45, deviceid="pi-1")])
    # When a reading from minute 1 arrives late, from another group
    store.put_readings([reading(1, value=99, deviceid="pi-1", groupid="8")])
    # Then the device still shows minute 5's value and group
    [pi1] = store.latest_by_device(None, 10)
    assert (pi1.values["no2"].value, pi1.groupid, pi1.last_seen) == (45, "2", T0 + timedelta(minutes=5))


def test_a_retried_post_is_counted_once_in_the_rollups(tmp_path: Path) -> None:
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    batch = [reading(0, value=40), reading(0.5, value=60)]
    # Given the same POST stored twice
    store.put_readings(batch)
    store.put_readings(batch)
    # Then the minute holds two readings, not four
    query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(minutes=1), interval_seconds=60)
    assert shown(store.bucket_stats(query)) == brute_force(batch, query)
    assert store.bucket_stats(query)[0].count == 2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("interval", "filters"),
    [(60, {}), (300, {"groupid": "3"}), (3600, {"deviceid": "pi-2"}), (30, {}), (90, {"sensorid": "0006"}), (300, {})],
)
def test_series_from_rollups_equals_the_readings(
    tmp_path: Path, seed: int, interval: int, filters: dict[str, str]
) -> None:
    # Given readings at random seconds over three hours from three devices (one a seed Pi)
    rng = random.Random(seed)
    readings = []
    for n in range(400):
        deviceid, groupid = rng.choice([("pi-1", "2"), ("pi-2", "3"), (None, "3")])
        extra = {"groupid": groupid, **({"deviceid": deviceid} if deviceid else {})}
        sensorid = rng.choice(["0006", "0016"])
        readings.append(reading(rng.uniform(0, 180), value=rng.uniform(0, 200), sensorid=sensorid, **extra))
        readings[-1] = readings[-1].model_copy(update={"reading_id": f"r{n}"})
    store = SqliteReadingStore(tmp_path / f"r{seed}.sqlite3")
    store.put_readings(readings)
    # When a range ending mid-minute is bucketed (whole minutes from rollups, the rest from readings)
    end = T0 + timedelta(minutes=170, seconds=rng.randint(1, 59))
    query = SeriesQuery(gas="no2", start=T0, end=end, interval_seconds=interval, **filters)
    # Then every bucket agrees with the readings themselves
    assert shown(store.bucket_stats(query)) == brute_force(readings, query)


def test_a_file_from_before_the_derived_tables_is_backfilled_once(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    readings = [reading(m, value=10 + m, deviceid="pi-1") for m in range(5)]
    SqliteReadingStore(path).put_readings(readings)
    # Given a file whose derived tables were lost (as in a file written before they existed)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "DROP TABLE devices; DROP TABLE device_latest; DROP TABLE reading_minutes; DROP TABLE gas_minutes;"
        )
        conn.execute("PRAGMA user_version = 0")
    # When the store opens it
    store = SqliteReadingStore(path)
    # Then devices and series are what the readings say
    [pi1] = store.latest_by_device(None, 10)
    assert pi1.values["no2"].value == 14
    query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(minutes=10), interval_seconds=300)
    assert shown(store.bucket_stats(query)) == brute_force(readings, query)


def test_deleting_old_readings_takes_their_rollups_and_latest_rows_along(tmp_path: Path) -> None:
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    # Given pi-1 posted at minutes 0-9 and pi-2 only at minute 2
    readings = [reading(m, value=10 + m, deviceid="pi-1") for m in range(10)]
    readings.append(reading(2, value=99, deviceid="pi-2", groupid="3"))
    store.put_readings(readings)
    # When everything before minute 5 is swept
    assert store.delete_before(T0 + timedelta(minutes=5, seconds=30)) == 6
    # Then pi-2 (all its readings gone) leaves the device table, pi-1 keeps its newest value
    assert [(d.device, d.values["no2"].value) for d in store.latest_by_device(None, 10)] == [("pi-1", 19)]
    # And series from rollups agree with the readings that are left
    left = [r for r in readings if r.created_at >= T0 + timedelta(minutes=5)]
    for filters in ({}, {"deviceid": "pi-1"}):
        query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(minutes=10), interval_seconds=60, **filters)
        assert shown(store.bucket_stats(query)) == brute_force(left, query)


def test_one_batch_out_of_order_shows_its_newest_reading_and_adds_to_existing_minutes(tmp_path: Path) -> None:
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    # Given minute 3 already holds one stored reading
    earlier = [reading(3.1, value=30, deviceid="pi-1")]
    store.put_readings(earlier)
    # When one batch brings, newest first, more readings in minute 3 and minute 4 from the same device
    batch = [reading(4.5, value=70, deviceid="pi-1"), reading(3.5, value=5, deviceid="pi-1")]
    batch += [reading(4.2, value=90, deviceid="pi-1"), reading(3.9, value=60, deviceid="pi-1")]
    store.put_readings(batch)
    # Then the device shows the newest reading of all, wherever it sat in the batch
    [pi1] = store.latest_by_device(None, 10)
    assert (pi1.values["no2"].value, pi1.last_seen) == (70, T0 + timedelta(minutes=4.5))
    # And each minute counts, sums and bounds the stored and the batched readings together
    for filters in ({}, {"deviceid": "pi-1"}):
        query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(minutes=5), interval_seconds=60, **filters)
        assert shown(store.bucket_stats(query)) == brute_force(earlier + batch, query)
        assert [b.count for b in store.bucket_stats(query)] == [3, 2]
