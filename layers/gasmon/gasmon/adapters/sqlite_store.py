"""SQLite reading store: the embedded default, with the same idempotency as OpenSearch.

A reading's primary key is its deterministic `reading_id`, so storing the same POST twice keeps
one row; the check and the insert run in one IMMEDIATE transaction, so two processes posting the
same reading at once still report it created exactly once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from gasmon.errors import StoreUnavailableError
from gasmon.models import Reading, StoreOutcome

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    reading_id  TEXT PRIMARY KEY,
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
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_gas_time ON readings (gas, created_ms);
CREATE INDEX IF NOT EXISTS readings_by_sensor_time ON readings (groupid, sensorid, created_ms);
"""
# SQLite allows 32,766 host parameters; stay well below it per statement.
_CHUNK = 900


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


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
        self._conn.executescript(SCHEMA)
        self.requests = 0  # store round trips, for `make bench`

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
        """Insert readings that are not stored yet; report which ids were new."""
        ids = [r.reading_id for r in readings]
        self.requests += 1
        try:
            with self._transaction() as conn:
                existing: set[str] = set()
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(f"SELECT reading_id FROM readings WHERE reading_id IN ({marks})", chunk)
                    existing.update(row[0] for row in rows)
                new = {}
                for r in readings:
                    if r.reading_id not in existing:
                        new[r.reading_id] = r  # a batch may repeat a reading: keep one
                conn.executemany(
                    "INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
                        )
                        for r in new.values()
                    ],
                )
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"the reading store failed: {exc}", retry_after_seconds=2) from exc
        return StoreOutcome(created=frozenset(new), existing=frozenset(existing))

    def count(self) -> int:
        """How many readings are stored (for tests and the local stack's log)."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM readings").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
