"""SQLite reading store: the embedded default, with the same idempotency as OpenSearch.

It answers the query API too (`ReadingQueries`): buckets are integer divisions of `created_ms`,
so they start on the same epoch-aligned boundaries as OpenSearch's fixed_interval histogram.

Two derived tables keep every query's work independent of how many readings are stored; both are
written in the same transaction as the readings they come from, so they never disagree:
- `devices` + `device_latest`: each device's newest reading and its newest value per gas, so
  GET /devices reads one row per device and gas (a late reading never replaces a newer one);
- `reading_minutes`: count, sum, min and max per (gas, minute, device, group, sensor), and
  `gas_minutes` the same per (gas, minute) alone, so a series in whole minutes reads rollups (the
  coarse ones when it names no group, sensor or device), and only the last partial minute from the
  readings.

A reading's primary key is its deterministic `reading_id`, so storing the same POST twice keeps
one row; the check and the insert run in one IMMEDIATE transaction, so two processes posting the
same reading at once still report it created exactly once.

WAL checkpoints run off the request path (`_Checkpointer`): the writing connection never
checkpoints on its own (SQLite's auto-checkpoint fsyncs inside whichever commit crosses 1,000
pages, about one request in a hundred); a daemon thread with its own connection runs a PASSIVE
checkpoint every second, or sooner once the WAL passes `checkpoint_pages`, and a commit that finds
the WAL past ten times that checkpoints inline, so the WAL stays bounded even if background
checkpoints keep failing. Commits stay durable as before (WAL semantics), across processes too.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gasmon.errors import StoreUnavailableError
from gasmon.models import BucketStats, DeviceLatest, GasValue, Reading, SeriesQuery, StoreOutcome
from gasmon.ports import SweepOutcome

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
DERIVED = """
CREATE TABLE IF NOT EXISTS devices (
    device      TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    reading_id  TEXT NOT NULL,
    deviceid    TEXT,
    groupid     TEXT NOT NULL,
    gps         TEXT,
    lat         REAL,
    lon         REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS devices_by_group ON devices (groupid, device);
CREATE TABLE IF NOT EXISTS device_latest (
    device      TEXT NOT NULL,
    gas         TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    reading_id  TEXT NOT NULL,
    value       REAL NOT NULL,
    sensorid    TEXT NOT NULL,
    createdtime TEXT NOT NULL,
    PRIMARY KEY (device, gas)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reading_minutes (
    gas         TEXT NOT NULL,
    minute_ms   INTEGER NOT NULL,
    device      TEXT NOT NULL,
    groupid     TEXT NOT NULL,
    sensorid    TEXT NOT NULL,
    deviceid    TEXT NOT NULL,  -- '' for a reading without one
    n           INTEGER NOT NULL,
    total       REAL NOT NULL,
    low         REAL NOT NULL,
    high        REAL NOT NULL,
    PRIMARY KEY (gas, minute_ms, device, groupid, sensorid, deviceid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gas_minutes (
    gas         TEXT NOT NULL,
    minute_ms   INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    total       REAL NOT NULL,
    low         REAL NOT NULL,
    high        REAL NOT NULL,
    PRIMARY KEY (gas, minute_ms)
) WITHOUT ROWID;
"""
# The derived tables' layout version (PRAGMA user_version): a file below it is backfilled once.
DERIVED_VERSION = 3
INDEXES = """
DROP INDEX IF EXISTS readings_by_gas_time;
CREATE INDEX IF NOT EXISTS readings_by_gas_time_id ON readings (gas, created_ms, reading_id, value);
DROP INDEX IF EXISTS readings_by_sensor_time;
CREATE INDEX IF NOT EXISTS readings_by_device_gas_time ON readings (device, gas, created_ms);
"""
MINUTE_MS = 60_000
# Keep a newer row: (created_ms, reading_id) orders readings the same way everywhere.
_UPSERT_DEVICE = """
INSERT INTO devices (device, created_ms, reading_id, deviceid, groupid, gps, lat, lon) VALUES (?,?,?,?,?,?,?,?)
ON CONFLICT (device) DO UPDATE SET created_ms = excluded.created_ms, reading_id = excluded.reading_id,
    deviceid = excluded.deviceid, groupid = excluded.groupid, gps = excluded.gps, lat = excluded.lat,
    lon = excluded.lon
WHERE (excluded.created_ms, excluded.reading_id) > (devices.created_ms, devices.reading_id)
"""
_UPSERT_LATEST = """
INSERT INTO device_latest (device, gas, created_ms, reading_id, value, sensorid, createdtime) VALUES (?,?,?,?,?,?,?)
ON CONFLICT (device, gas) DO UPDATE SET created_ms = excluded.created_ms, reading_id = excluded.reading_id,
    value = excluded.value, sensorid = excluded.sensorid, createdtime = excluded.createdtime
WHERE (excluded.created_ms, excluded.reading_id) > (device_latest.created_ms, device_latest.reading_id)
"""
_UPSERT_MINUTE = """
INSERT INTO reading_minutes (gas, minute_ms, device, groupid, sensorid, deviceid, n, total, low, high)
VALUES (?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (gas, minute_ms, device, groupid, sensorid, deviceid) DO UPDATE SET n = n + excluded.n,
    total = total + excluded.total, low = min(low, excluded.low), high = max(high, excluded.high)
"""
_UPSERT_GAS_MINUTE = """
INSERT INTO gas_minutes (gas, minute_ms, n, total, low, high) VALUES (?,?,?,?,?,?)
ON CONFLICT (gas, minute_ms) DO UPDATE SET n = n + excluded.n,
    total = total + excluded.total, low = min(low, excluded.low), high = max(high, excluded.high)
"""
# Rebuilds the derived tables from the readings (a file from before them, or a bulk load).
_BACKFILL = """
DELETE FROM devices;
DELETE FROM device_latest;
DELETE FROM reading_minutes;
DELETE FROM gas_minutes;
INSERT INTO device_latest (device, gas, created_ms, reading_id, value, sensorid, createdtime)
    SELECT device, gas, max(created_ms), reading_id, value, sensorid, createdtime
    FROM readings GROUP BY device, gas;
INSERT INTO devices (device, created_ms, reading_id, deviceid, groupid, gps, lat, lon)
    SELECT r.device, r.created_ms, r.reading_id, r.deviceid, r.groupid, r.gps, r.lat, r.lon
    FROM (SELECT device, max(created_ms) AS created_ms, reading_id FROM device_latest GROUP BY device) AS newest
    JOIN readings AS r ON r.reading_id = newest.reading_id;
INSERT INTO reading_minutes (gas, minute_ms, device, groupid, sensorid, deviceid, n, total, low, high)
    SELECT gas, (created_ms / 60000) * 60000, device, groupid, sensorid, coalesce(deviceid, ''),
        count(*), sum(value), min(value), max(value)
    FROM readings GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO gas_minutes (gas, minute_ms, n, total, low, high)
    SELECT gas, minute_ms, sum(n), sum(total), min(low), max(high) FROM reading_minutes GROUP BY 1, 2;
"""
_COLUMNS = (
    "reading_id, groupid, gps, lat, lon, gas, sensorid, sensortype, value, createdtime, created_ms, received_ms, "
    "deviceid, device"
)
# SQLite allows 32,766 host parameters; stay well below it per statement.
_CHUNK = 900


# WAL frames a background checkpoint is asked for after (SQLite's own auto-checkpoint default);
# a commit that finds the WAL past CHECKPOINT_BOUND times this checkpoints inline.
CHECKPOINT_PAGES = 1000
CHECKPOINT_BOUND = 10
CHECKPOINT_INTERVAL_SECONDS = 1.0
# Each checkpoint that copies frames syncs the file: a wake waits this long after the last one.
CHECKPOINT_MIN_GAP_SECONDS = 0.1
# A fork (multiprocessing's default start method on Linux) must not copy SQLite's mutexes while a
# checkpoint thread holds them: a fork waits for the checkpoint in progress.
_IN_SQLITE = threading.Lock()
os.register_at_fork(before=_IN_SQLITE.acquire, after_in_parent=_IN_SQLITE.release, after_in_child=_IN_SQLITE.release)


class _Checkpointer:
    """A daemon thread that checkpoints one SQLite file's WAL through its own connection.

    A PASSIVE checkpoint copies the frames there were when it began; under a busy writer more
    follow, and the WAL starts over only after a checkpoint that reached its end: so while the WAL
    is past `wake_bytes`, a second pass copies the few frames appended meanwhile while holding the
    store's `writer_lock` (this process's commits wait for that tail only, not the whole copy).

    It holds no reference to the store (a store dropped without `close()` stops it through a
    finalizer), opens the file read-write without creating it, and never raises: a failed or
    busy checkpoint is retried on the next tick, and the store's inline bound covers the rest.
    """

    def __init__(self, path: str, interval_seconds: float, writer_lock: threading.Lock, wake_bytes: int) -> None:
        self._path = str(Path(path).resolve())  # a relative path keeps meaning the same file
        self._writer_lock = writer_lock
        self._wake_bytes = wake_bytes
        self._interval = interval_seconds
        self._min_gap = min(CHECKPOINT_MIN_GAP_SECONDS, interval_seconds)
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.completed = 0  # checkpoints that ran (busy or not), for tests and `make bench`
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, frames checkpointed)
        self._thread = threading.Thread(target=self._run, name=f"sqlite-checkpoint:{path}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait(self._interval)
                self._wake.clear()
                if self._stopped.is_set():
                    return
                try:
                    with _IN_SQLITE:
                        if conn is None:
                            uri = Path(self._path).as_uri() + "?mode=rw"
                            conn = sqlite3.connect(uri, uri=True, timeout=0.1, isolation_level=None)
                        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if _size(f"{self._path}-wal") > self._wake_bytes:
                        with self._writer_lock, _IN_SQLITE:
                            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    continue  # busy, or the file is gone: try again on the next tick
                self.last = (int(row[0]), int(row[1]), int(row[2]))
                self.completed += 1
                if self._stopped.wait(self._min_gap):
                    return
        finally:
            if conn is not None:
                with _IN_SQLITE:
                    conn.close()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class SqliteReadingStore:
    """A `ReadingStore` in one SQLite file (WAL mode, safe across threads and processes)."""

    def __init__(
        self,
        path: str | Path,
        busy_timeout_seconds: float = 5.0,
        checkpoint_pages: int = CHECKPOINT_PAGES,
        checkpoint_interval_seconds: float | None = CHECKPOINT_INTERVAL_SECONDS,
    ) -> None:
        """Open (or create) the file. `checkpoint_interval_seconds=None` runs no background
        checkpointer: then only the inline bound (`CHECKPOINT_BOUND` x `checkpoint_pages`) does."""
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
        self._checkpointer: _Checkpointer | None = None
        self._wal_path = ""
        self.inline_checkpoints = 0  # commits that found the WAL past its bound and checkpointed
        if str(path) != ":memory:":
            # Checkpoints are this store's job (see the module docstring), not a commit's.
            page_bytes = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            # A WAL that grew while checkpoints could not finish is cut back when it restarts.
            self._conn.execute(f"PRAGMA journal_size_limit={checkpoint_pages * page_bytes}")
            self._wal_path = f"{self.path}-wal"
            self._wake_bytes = checkpoint_pages * (page_bytes + 24) + 32  # frames carry a 24-byte header
            self._bound_bytes = CHECKPOINT_BOUND * self._wake_bytes
        self._conn.executescript(SCHEMA)
        self._migrate()
        self._conn.executescript(INDEXES)
        self._conn.executescript(DERIVED)
        if self._conn.execute("PRAGMA user_version").fetchone()[0] < DERIVED_VERSION:
            self.rebuild_derived()
        self.requests = 0  # store round trips, for `make bench`
        if self._wal_path and checkpoint_interval_seconds is not None:
            self._checkpointer = _Checkpointer(
                str(self.path), checkpoint_interval_seconds, self._lock, self._wake_bytes
            )
            weakref.finalize(self, self._checkpointer.stop, 0.0)

    @property
    def background_checkpoints(self) -> int:
        """How many checkpoints the background thread has run (0 without one)."""
        return self._checkpointer.completed if self._checkpointer else 0

    def _after_commit(self) -> None:
        """Wake the checkpointer once the WAL passes its size; past the bound, checkpoint here."""
        size = _size(self._wal_path)
        if size <= self._wake_bytes:
            return
        if self._checkpointer is not None:
            self._checkpointer.wake()
        if size > self._bound_bytes:
            # Rare by design: background checkpoints failed for ten times their interval's worth of
            # writes. TRUNCATE waits (busy timeout) for readers so the WAL can start over.
            self.inline_checkpoints += 1
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error:
                pass  # the next commit tries again; the readings are committed either way

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

    def rebuild_derived(self) -> None:
        """Recompute the latest-per-device and per-minute tables from the readings, in one transaction.

        Runs once when a file from before them is opened (O(readings), once); the bench calls it
        after loading readings in bulk.
        """
        with self._transaction() as conn:
            for statement in _BACKFILL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {DERIVED_VERSION}")

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
                if self._wal_path:
                    self._after_commit()

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
                rows_new = _rows(new.values())
                _write_derived(conn, rows_new)
                conn.executemany(f"INSERT INTO readings ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows_new)
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
        """Per-bucket count/avg/min/max, buckets epoch-aligned by integer division of `created_ms`.

        With whole-minute buckets (the query's start is then minute-aligned) the whole minutes come
        from `reading_minutes` and only the last partial minute from the readings, both in one
        statement: the work follows the number of buckets and devices, not of readings.
        """
        step = query.interval_seconds * 1000
        start_ms, end_ms = _ms(query.start), _ms(query.end)
        filters, params = [], []
        for column in ("groupid", "sensorid", "deviceid", "device"):
            value = getattr(query, column)
            if value is not None:
                filters.append(f" AND {column} = ?")
                params.append(value)
        where = "".join(filters)
        raw = (
            f"SELECT (created_ms / {step}) * {step} AS bucket, count(*) AS n, sum(value) AS total,"
            " min(value) AS low, max(value) AS high FROM readings"
            f" WHERE gas = ? AND created_ms >= ? AND created_ms < ?{where} GROUP BY bucket"
        )
        if step % MINUTE_MS or start_ms % MINUTE_MS:
            sql, args = raw, [query.gas, start_ms, end_ms, *params]
        else:
            whole_end = end_ms - end_ms % MINUTE_MS
            rollups = "reading_minutes" if filters else "gas_minutes"
            rolled = (
                f"SELECT (minute_ms / {step}) * {step} AS bucket, sum(n) AS n, sum(total) AS total,"
                f" min(low) AS low, max(high) AS high FROM {rollups}"
                f" WHERE gas = ? AND minute_ms >= ? AND minute_ms < ?{where} GROUP BY bucket"
            )
            sql = (
                "SELECT bucket, sum(n) AS n, sum(total) AS total, min(low) AS low, max(high) AS high"
                f" FROM ({rolled} UNION ALL {raw}) GROUP BY bucket"
            )
            args = [query.gas, start_ms, whole_end, *params, query.gas, whole_end, end_ms, *params]
        rows = self._select(f"{sql} ORDER BY bucket", args)
        return [
            BucketStats(
                start=_from_ms(row["bucket"]),
                count=row["n"],
                avg=row["total"] / row["n"],
                min=row["low"],
                max=row["high"],
            )
            for row in rows
            if row["n"]
        ]

    def latest_by_device(self, after: str | None, limit: int, groupid: str | None = None) -> list[DeviceLatest]:
        """One page of devices from `devices` with their values from `device_latest`: one statement,
        reading one row per device and gas on the page (a device's group is its newest reading's)."""
        page_where = ["device > ?"]
        params: list[object] = [after or ""]
        if groupid is not None:
            page_where.append("groupid = ?")
            params.append(groupid)
        params.append(limit)
        rows = self._select(
            "WITH page AS (SELECT device, created_ms AS last_ms, deviceid, groupid, gps, lat, lon FROM devices"
            f" WHERE {' AND '.join(page_where)} ORDER BY device LIMIT ?)"
            " SELECT page.*, g.gas, g.value, g.created_ms, g.sensorid, g.createdtime"
            " FROM page JOIN device_latest AS g ON g.device = page.device ORDER BY page.device, g.gas",
            params,
        )
        by_device: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            by_device.setdefault(row["device"], []).append(row)
        devices = []
        for device, gas_rows in by_device.items():
            first = gas_rows[0]
            devices.append(
                DeviceLatest(
                    device=device,
                    deviceid=first["deviceid"],
                    groupid=first["groupid"],
                    gps=first["gps"],
                    lat=first["lat"],
                    lon=first["lon"],
                    last_seen=_from_ms(first["last_ms"]),
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
        # One sub-select per gas, each walking the (gas, created_ms, reading_id, value) index
        # newest first and stopping after `limit` crossings; the union keeps the newest `limit`.
        where = "gas = ? AND value >= ? AND created_ms >= ?"
        if before is not None:
            where += " AND (created_ms, reading_id) < (?, ?)"
        if groupid is not None:
            where += " AND groupid = ?"
        parts, params = [], []
        for gas, level in thresholds.items():
            parts.append(
                f"SELECT * FROM (SELECT {_COLUMNS} FROM readings WHERE {where}"
                " ORDER BY created_ms DESC, reading_id DESC LIMIT ?)"
            )
            params += [gas, level, _ms(since)]
            if before is not None:
                params += [_ms(before[0]), before[1]]
            if groupid is not None:
                params.append(groupid)
            params.append(limit)
        params.append(limit)
        rows = self._select(
            " UNION ALL ".join(parts) + " ORDER BY created_ms DESC, reading_id DESC LIMIT ?",
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

    def delete_before(self, before: datetime) -> int:
        """Delete readings taken before `before` (aligned down to a whole minute) and what the derived
        tables hold of them, in one transaction; return how many readings went. For the retention
        sweep: devices whose newest reading went leave the device table, as they would from a
        query over the readings."""
        cutoff = _ms(before) // MINUTE_MS * MINUTE_MS
        self.requests += 1
        try:
            with self._transaction() as conn:
                gone = conn.execute("DELETE FROM readings WHERE created_ms < ?", (cutoff,)).rowcount
                conn.execute("DELETE FROM reading_minutes WHERE minute_ms < ?", (cutoff,))
                conn.execute("DELETE FROM gas_minutes WHERE minute_ms < ?", (cutoff,))
                conn.execute("DELETE FROM device_latest WHERE created_ms < ?", (cutoff,))
                conn.execute("DELETE FROM devices WHERE created_ms < ?", (cutoff,))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"the reading store failed: {exc}", retry_after_seconds=2) from exc
        return int(gone)

    # ---- RetentionSweeper ----

    def delete_older_than(self, cutoff: datetime, batch_size: int, max_batches: int) -> SweepOutcome:
        """Delete readings taken before `cutoff` (aligned down to a whole minute, as the rollups are),
        `batch_size` rows per transaction (writers wait at most one batch), at most `max_batches`
        batches; once the readings are done, what the derived tables hold of them goes in one more
        transaction, so `/series` and `/devices` never show what the readings no longer have."""
        deleted = 0
        cutoff_ms = _ms(cutoff) // MINUTE_MS * MINUTE_MS
        for _ in range(max_batches):
            self.requests += 1
            try:
                with self._transaction() as conn:
                    removed = conn.execute(
                        "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings WHERE created_ms < ? LIMIT ?)",
                        (cutoff_ms, batch_size),
                    ).rowcount
            except sqlite3.OperationalError as exc:
                raise StoreUnavailableError(f"the reading store failed: {exc}", retry_after_seconds=2) from exc
            deleted += removed
            if removed < batch_size:
                self.delete_before(datetime.fromtimestamp(cutoff_ms / 1000, UTC))  # the derived rows
                return SweepOutcome(deleted=deleted, complete=True)
        return SweepOutcome(deleted=deleted, complete=False)

    def count(self) -> int:
        """How many readings are stored (for tests and the local stack's log)."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM readings").fetchone()[0])

    def close(self) -> None:
        """Stop the background checkpointer, checkpoint what the WAL holds, close the file."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self._wal_path:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    pass  # another process is checkpointing or writing: it, or SQLite, finishes it
            self._conn.close()


def _rows(readings: Iterable[Reading]) -> list[tuple[Any, ...]]:
    """Readings as rows of `readings`, in `_COLUMNS` order (each time converted once)."""
    millis: dict[datetime, int] = {}  # a request's readings share `received_at` and often `created_at`
    rows = []
    for r in readings:
        created, received = r.created_at, r.received_at
        created_ms = millis.get(created)
        if created_ms is None:
            created_ms = millis[created] = _ms(created)
        received_ms = millis.get(received)
        if received_ms is None:
            received_ms = millis[received] = _ms(received)
        rows.append(
            (r.reading_id, r.groupid, r.gps, r.lat, r.lon, r.gas, r.sensorid, r.sensortype, r.value, r.createdtime,
             created_ms, received_ms, r.deviceid, r.deviceid or r.groupid)
        )  # fmt: skip
    return rows


def _write_derived(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Fold newly stored readings (rows in `_COLUMNS` order) into `devices`, `device_latest`,
    `reading_minutes` and `gas_minutes`.

    The batch is folded in Python first, one row per key (a request's readings share a device and
    a few minutes), and each key is upserted once with the same rules the upserts apply row by row:
    the newest (created_ms, reading_id) wins the latest tables, counts, sums, minima and maxima add
    up in the rollups.
    """
    devices: dict[str, tuple[Any, ...]] = {}
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    minutes: dict[tuple[Any, ...], list[Any]] = {}
    gas_minutes: dict[tuple[str, int], list[Any]] = {}
    for row in rows:
        (reading_id, groupid, gps, lat, lon, gas, sensorid, _type, value, createdtime,
         created_ms, _received, deviceid, device) = row  # fmt: skip
        position = (created_ms, reading_id)
        newest = devices.get(device)
        if newest is None or position > (newest[1], newest[2]):
            devices[device] = (device, created_ms, reading_id, deviceid, groupid, gps, lat, lon)
        newest = latest.get((device, gas))
        if newest is None or position > (newest[2], newest[3]):
            latest[device, gas] = (device, gas, created_ms, reading_id, value, sensorid, createdtime)
        minute = created_ms // MINUTE_MS * MINUTE_MS
        _fold(minutes, (gas, minute, device, groupid, sensorid, deviceid or ""), value)
        _fold(gas_minutes, (gas, minute), value)
    conn.executemany(_UPSERT_DEVICE, list(devices.values()))
    conn.executemany(_UPSERT_LATEST, list(latest.values()))
    conn.executemany(_UPSERT_GAS_MINUTE, [(*key, *stats) for key, stats in gas_minutes.items()])
    conn.executemany(_UPSERT_MINUTE, [(*key, *stats) for key, stats in minutes.items()])


def _fold(rollups: dict[Any, list[Any]], key: Any, value: float) -> None:
    """Add one value to a rollup row [count, total, low, high]."""
    stats = rollups.get(key)
    if stats is None:
        rollups[key] = [1, value, value, value]
    else:
        stats[0] += 1
        stats[1] += value
        stats[2] = min(stats[2], value)
        stats[3] = max(stats[3], value)
