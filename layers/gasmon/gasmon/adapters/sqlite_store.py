"""SQLite reading store: the embedded default, with the same idempotency as OpenSearch.

It answers the query API too (`ReadingQueries`): buckets are integer divisions of `created_ms`,
so they start on the same epoch-aligned boundaries as OpenSearch's fixed_interval histogram.

A reading's primary key is its deterministic `reading_id`, so storing the same POST twice keeps
one row; the check and the insert run in one IMMEDIATE transaction, so two processes posting the
same reading at once still report it created exactly once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from gasmon.errors import StoreUnavailableError
from gasmon.models import BucketStats, DeviceLatest, GasValue, Reading, SeriesQuery, StoreOutcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    reading_id  TEXT NOT NULL UNIQUE,
    groupid     TEXT NOT NULL,
    gps         TEXT,
    lat         REAL,
    lon         REAL,
    gas         TEXT NOT NULL,
    sensorid    TEXT NOT NULL,
    sensortype  TEXT NOT NULL,
    value       REAL NOT NULL,
    createdtime TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    deviceid    TEXT,
    device      TEXT NOT NULL DEFAULT ''
);
"""
# Columns added after the first release, for files created before them: (name, definition).
_ADDED_COLUMNS = (("deviceid", "TEXT"), ("device", "TEXT NOT NULL DEFAULT ''"))
INDEXES = """
CREATE INDEX IF NOT EXISTS readings_by_gas_time ON readings (gas, created_ms);
DROP INDEX IF EXISTS readings_by_sensor_time;
CREATE INDEX IF NOT EXISTS readings_by_device_gas_time ON readings (device, gas, created_ms);
"""
_COLUMNS = (
    "reading_id, groupid, gps, lat, lon, gas, sensorid, sensortype, value, createdtime, created_ms, received_ms, "
    "deviceid, device"
)
# SQLite allows 32,766 host parameters; stay well below it per statement.
_CHUNK = 900


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class SqliteReadingStore:
    """A `ReadingStore` in one SQLite file (WAL mode, safe across threads and processes)."""

    def __init__(self, path: str | Path, busy_timeout_seconds: float = 5.0) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(path), timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA cache_size=-32000")
        self._conn.executescript(SCHEMA)
        self._migrate()
        self._conn.executescript(INDEXES)
        self.requests = 0  # store round trips, for `make bench`

    def _migrate(self) -> None:
        """Add the columns a file from an older gasmon lacks, and fill `device` for its rows."""
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(readings)")}
        missing = [(name, definition) for name, definition in _ADDED_COLUMNS if name not in have]
        if not missing:
            return
        with self._transaction() as conn:
            for name, definition in missing:
                conn.execute(f"ALTER TABLE readings ADD COLUMN {name} {definition}")
            conn.execute("UPDATE readings SET device = groupid WHERE device = ''")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past the busy timeout
                raise StoreUnavailableError(f"the reading store is busy: {exc}", retry_after_seconds=2) from exc
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        """Insert readings that are not stored yet; report which ids were new, which were stored
        with the same value and which with a different one (a conflict: the stored row stays)."""
        ids = [r.reading_id for r in readings]
        self.requests += 1
        try:
            with self._transaction() as conn:
                stored: dict[str, float] = {}
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(f"SELECT reading_id, value FROM readings WHERE reading_id IN ({marks})", chunk)
                    stored.update((row[0], row[1]) for row in rows)
                existing = set(stored)
                conflicts = {
                    r.reading_id for r in readings if r.reading_id in stored and stored[r.reading_id] != r.value
                }
                new: dict[str, Reading] = {}
                for r in readings:
                    if r.reading_id not in existing:
                        new.setdefault(r.reading_id, r)  # a batch may repeat a reading: the first copy counts
                conn.executemany(
                    f"INSERT INTO readings ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            r.reading_id,
                            r.groupid,
                            r.gps,
                            r.lat,
                            r.lon,
                            r.gas,
                            r.sensorid,
                            r.sensortype,
                            r.value,
                            r.createdtime,
                            _ms(r.created_at),
                            _ms(r.received_at),
                            r.deviceid,
                            r.device,
                        )
                        for r in new.values()
                    ],
                )
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"the reading store failed: {exc}", retry_after_seconds=2) from exc
        return StoreOutcome(created=frozenset(new), existing=frozenset(existing), conflicts=frozenset(conflicts))

    def latest_reading(self, devices: Sequence[str]) -> Reading | None:
        """The newest stored reading (by the device's `createdtime`) of any of these device keys
        (a reading's `deviceid`, else its `groupid`: see `gasmon.models.device_key`)."""
        wanted = list(dict.fromkeys(d for d in devices if d))
        if not wanted:
            return None
        marks = ",".join("?" * len(wanted))
        with self._lock:
            row = self._conn.execute(
                f"SELECT reading_id, groupid, gps, lat, lon, gas, sensorid, sensortype, value, createdtime,"
                f" created_ms, received_ms FROM readings WHERE device IN ({marks})"
                f" ORDER BY created_ms DESC LIMIT 1",
                wanted,
            ).fetchone()
        if row is None:
            return None
        return Reading(
            reading_id=row[0], groupid=row[1], gps=row[2], lat=row[3], lon=row[4], gas=row[5], sensorid=row[6],
            sensortype=row[7], value=row[8], createdtime=row[9],
            created_at=_from_ms(row[10]), received_at=_from_ms(row[11]),
        )  # fmt: skip

    # ---- ReadingQueries ----

    def _select(self, sql: str, params: Sequence[object]) -> list[sqlite3.Row]:
        self.requests += 1
        try:
            with self._lock:
                cursor = self._conn.execute(sql, params)
                cursor.row_factory = sqlite3.Row
                return cursor.fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"the reading store failed: {exc}", retry_after_seconds=2) from exc

    def bucket_stats(self, query: SeriesQuery) -> list[BucketStats]:
        """Per-bucket count/avg/min/max by integer division of `created_ms` (epoch-aligned)."""
        step = query.interval_seconds * 1000
        where = ["gas = ?", "created_ms >= ?", "created_ms < ?"]
        params: list[object] = [query.gas, _ms(query.start), _ms(query.end)]
        for column in ("groupid", "sensorid", "deviceid"):
            value = getattr(query, column)
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = self._select(
            f"SELECT (created_ms / {step}) * {step} AS bucket, count(*) AS n, avg(value) AS avg_value,"
            f" min(value) AS min_value, max(value) AS max_value"
            f" FROM readings WHERE {' AND '.join(where)} GROUP BY bucket ORDER BY bucket",
            params,
        )
        return [
            BucketStats(
                start=_from_ms(row["bucket"]),
                count=row["n"],
                avg=row["avg_value"],
                min=row["min_value"],
                max=row["max_value"],
            )
            for row in rows
        ]

    def latest_by_device(self, after: str | None, limit: int, groupid: str | None = None) -> list[DeviceLatest]:
        """Latest value per (device, gas) for one page of device keys, in one statement."""
        page_where = ["device > ?"]
        params: list[object] = [after or ""]
        if groupid is not None:
            page_where.append("groupid = ?")
            params.append(groupid)
        params.append(limit)
        # SQLite fills the bare columns of a max() aggregate from the row holding the maximum.
        rows = self._select(
            "WITH page AS (SELECT DISTINCT device FROM readings"
            f" WHERE {' AND '.join(page_where)} ORDER BY device LIMIT ?)"
            " SELECT device, gas, max(created_ms) AS created_ms, value, sensorid, createdtime,"
            " deviceid, groupid, gps, lat, lon"
            " FROM readings WHERE device IN (SELECT device FROM page)"
            " GROUP BY device, gas ORDER BY device, gas",
            params,
        )
        by_device: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            by_device.setdefault(row["device"], []).append(row)
        devices = []
        for device, gas_rows in by_device.items():
            newest = max(gas_rows, key=lambda row: row["created_ms"])
            devices.append(
                DeviceLatest(
                    device=device,
                    deviceid=newest["deviceid"],
                    groupid=newest["groupid"],
                    gps=newest["gps"],
                    lat=newest["lat"],
                    lon=newest["lon"],
                    last_seen=_from_ms(newest["created_ms"]),
                    values={
                        row["gas"]: GasValue(
                            value=row["value"],
                            at=_from_ms(row["created_ms"]),
                            sensorid=row["sensorid"],
                            createdtime=row["createdtime"],
                        )
                        for row in gas_rows
                    },
                )
            )
        return devices

    def readings_at_or_above(
        self,
        thresholds: Mapping[str, float],
        since: datetime,
        limit: int,
        before: tuple[datetime, str] | None = None,
        groupid: str | None = None,
    ) -> list[Reading]:
        """Readings over their gas's threshold, newest first, keyset-paged on (created_ms, reading_id)."""
        if not thresholds:
            return []
        crossing = " OR ".join("(gas = ? AND value >= ?)" for _ in thresholds)
        where = [f"({crossing})", "created_ms >= ?"]
        params: list[object] = [item for pair in thresholds.items() for item in pair]
        params.append(_ms(since))
        if before is not None:
            where.append("(created_ms < ? OR (created_ms = ? AND reading_id < ?))")
            params.extend([_ms(before[0]), _ms(before[0]), before[1]])
        if groupid is not None:
            where.append("groupid = ?")
            params.append(groupid)
        params.append(limit)
        rows = self._select(
            f"SELECT {_COLUMNS} FROM readings WHERE {' AND '.join(where)}"
            " ORDER BY created_ms DESC, reading_id DESC LIMIT ?",
            params,
        )
        return [
            Reading(
                reading_id=row["reading_id"],
                groupid=row["groupid"],
                gps=row["gps"],
                lat=row["lat"],
                lon=row["lon"],
                gas=row["gas"],
                sensorid=row["sensorid"],
                sensortype=row["sensortype"],
                value=row["value"],
                createdtime=row["createdtime"],
                created_at=_from_ms(row["created_ms"]),
                received_at=_from_ms(row["received_ms"]),
                deviceid=row["deviceid"],
            )
            for row in rows
        ]

    def count(self) -> int:
        """How many readings are stored (for tests and the local stack's log)."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM readings").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
