"""The SQLite store's read side (`ReadingQueries`) on a real SQLite file."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.models import Reading, SeriesQuery

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def reading(minutes: float, gas: str = "no2", value: float = 50.0, sensorid: str = "0006", **extra: str) -> Reading:
    at = T0 + timedelta(minutes=minutes)
    groupid = extra.get("groupid", "2")
    return Reading(
        reading_id=f"{groupid}-{sensorid}-{gas}-{minutes}",
        groupid=groupid,
        gps="37.61, 126.99",
        lat=37.61,
        lon=126.99,
        gas=gas,
        sensorid=sensorid,
        sensortype="9",
        value=value,
        createdtime=at.isoformat(),
        created_at=at,
        received_at=at,
        deviceid=extra.get("deviceid"),
    )


def test_buckets_are_epoch_aligned_with_avg_min_max(tmp_path: Path) -> None:
    # Given NO2 readings at 0, 2 and 7 minutes, one CO reading and one NO2 reading in another group
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    store.put_readings(
        [
            reading(0, value=40),
            reading(2, value=60),
            reading(7, value=90),
            reading(1, gas="co", value=5),
            reading(3, value=1000, groupid="9"),
        ]
    )
    # When group 2's NO2 is bucketed by 5 minutes over 15 minutes
    query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(minutes=15), interval_seconds=300, groupid="2")
    buckets = store.bucket_stats(query)
    # Then only the two non-empty buckets come back, with their statistics
    assert [(b.start, b.count, b.avg, b.min, b.max) for b in buckets] == [
        (T0, 2, 50.0, 40.0, 60.0),
        (T0 + timedelta(minutes=5), 1, 90.0, 90.0, 90.0),
    ]


def test_the_device_filter_takes_a_devices_readings_as_get_devices_names_it(tmp_path: Path) -> None:
    # Given NO2 from pi-1 and pi-2 (both group 2) and a seed document without a device id (group 7)
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    store.put_readings(
        [
            reading(0, value=40, deviceid="pi-1"),
            reading(0.5, value=60, deviceid="pi-1"),
            reading(1, value=99, deviceid="pi-2"),
            reading(1.5, value=20, groupid="7"),
        ]
    )

    def buckets(device: str, seconds: int) -> list[tuple[int, float]]:
        query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(minutes=5), interval_seconds=seconds, device=device)
        return [(b.count, b.avg) for b in store.bucket_stats(query)]

    # When each device's series is asked for, from the minute rollups (60 s) and from the readings (30 s)
    # Then each holds its own readings only; the seed document is the device "7"
    assert buckets("pi-1", 60) == [(2, 50.0)]
    assert buckets("pi-2", 60) == [(1, 99.0)]
    assert buckets("7", 60) == [(1, 20.0)]
    assert buckets("pi-1", 30) == [(1, 40.0), (1, 60.0)]
    assert buckets("2", 60) == []  # a group is not a device once its readings carry device ids


def test_latest_value_per_device_and_gas_pages_by_device(tmp_path: Path) -> None:
    # Given pi-1 (two sensors, several readings), pi-2, and a seed document (group 7) without a device id
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    store.put_readings(
        [
            reading(0, value=40, deviceid="pi-1"),
            reading(5, value=45, deviceid="pi-1"),
            reading(3, gas="co", value=7, sensorid="0005", deviceid="pi-1"),
            reading(1, value=30, deviceid="pi-2", groupid="3"),
            reading(2, value=20, groupid="7"),
        ]
    )
    # When the first two devices are read, then the rest
    first = store.latest_by_device(None, 2)
    rest = store.latest_by_device(first[-1].device, 2)
    # Then devices come in key order, each with its newest value per gas
    assert [d.device for d in first] == ["7", "pi-1"]
    assert [d.device for d in rest] == ["pi-2"]
    pi1 = first[1]
    assert pi1.deviceid == "pi-1" and pi1.groupid == "2"
    assert pi1.last_seen == T0 + timedelta(minutes=5)
    assert {gas: v.value for gas, v in pi1.values.items()} == {"no2": 45, "co": 7}
    assert (pi1.lat, pi1.lon) == (37.61, 126.99)
    # ... and a group filter keeps to that group
    assert [d.device for d in store.latest_by_device(None, 10, groupid="3")] == ["pi-2"]


def test_crossings_are_newest_first_and_keyset_paged(tmp_path: Path) -> None:
    # Given NO2 at 87, 88, 89, 120 and CO at 40 (thresholds NO2 88, CO 35)
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    store.put_readings(
        [
            reading(1, value=87),
            reading(2, value=88),
            reading(3, value=89),
            reading(4, value=120),
            reading(5, gas="co", value=40, sensorid="0005"),
        ]
    )
    thresholds = {"no2": 88.0, "co": 35.0}
    # When they are read two at a time
    first = store.readings_at_or_above(thresholds, T0, 2)
    second = store.readings_at_or_above(thresholds, T0, 2, before=(first[-1].created_at, first[-1].reading_id))
    # Then each crossing appears once, newest first, and 87 never
    assert [(r.gas, r.value) for r in first + second] == [("co", 40), ("no2", 120), ("no2", 89), ("no2", 88)]
    assert store.readings_at_or_above(thresholds, T0 + timedelta(minutes=4), 10)[-1].value == 120


def test_a_file_from_before_device_ids_is_migrated(tmp_path: Path) -> None:
    # Given a readings file written by the first release (no deviceid/device columns)
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE readings (reading_id TEXT PRIMARY KEY, groupid TEXT NOT NULL, gps TEXT, lat REAL,"
            " lon REAL, gas TEXT NOT NULL, sensorid TEXT NOT NULL, sensortype TEXT NOT NULL, value REAL NOT NULL,"
            " createdtime TEXT NOT NULL, created_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL) WITHOUT ROWID"
        )
        ms = int(T0.timestamp() * 1000)
        conn.execute("INSERT INTO readings VALUES ('a','2',NULL,NULL,NULL,'no2','0006','9',50,'x',?,?)", (ms, ms))
    # When the store opens it
    store = SqliteReadingStore(path)
    # Then the old reading is a device of its own and new readings still go in
    assert [d.device for d in store.latest_by_device(None, 10)] == ["2"]
    store.put_readings([reading(1, deviceid="pi-1")])
    assert [d.device for d in store.latest_by_device(None, 10)] == ["2", "pi-1"]
