"""The on-disk queue: every reading is committed here before it is sent.

One SQLite file (WAL, `synchronous=FULL`, so a committed reading survives power loss) with three
tables: `outbox` (documents waiting to be acknowledged by the server), `dead_letters` (documents
the server rejected as invalid, with its reason) and `meta` (counters and health, read by
`gasmon-device status` from another process).

Disk budget: `max_bytes` bounds the bytes of queued documents. When a new reading would exceed
it, the OLDEST queued readings are dropped to make room, counted in `dropped` and logged at
ERROR: during a long outage the newest readings are the ones that matter for safety, and the
oldest are the ones the server would soon refuse anyway (it accepts readings up to 30 days old).
Dead letters are bounded by count the same way (oldest dropped, counted in `dead_dropped`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    body        TEXT    NOT NULL,
    bytes       INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id   INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    http_status INTEGER,
    enqueued_ms INTEGER NOT NULL,
    dead_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
"""
COUNTERS = (
    "queued_bytes",
    "enqueued",
    "delivered",
    "duplicates",
    "dead",
    "dropped",
    "dropped_bytes",
    "dead_dropped",
    "consecutive_failures",
)


class QueueLockedError(Exception):
    """Another publisher already owns this queue file."""


@dataclass(frozen=True)
class QueuedDocument:
    """One document waiting in the outbox."""

    id: int
    body: str
    bytes: int
    enqueued_ms: int


@dataclass(frozen=True)
class DeadLetter:
    """A document the server refused, kept with the reason instead of being retried forever."""

    id: int
    outbox_id: int
    body: str
    reason: str
    http_status: int | None
    enqueued_ms: int
    dead_ms: int


@dataclass(frozen=True)
class QueueHealth:
    """What `gasmon-device status` prints."""

    path: str
    depth: int
    queued_bytes: int
    max_bytes: int
    oldest_enqueued_ms: int | None
    dead_letters: int
    enqueued: int
    delivered: int
    duplicates: int
    dead: int
    dropped: int
    dead_dropped: int
    last_success_ms: int | None
    last_attempt_ms: int | None
    last_error: str | None
    consecutive_failures: int


class DiskQueue:
    """The durable outbox (safe across threads of one process; other processes may read it).

    `path` may be ":memory:" for simulated devices that need no durability.
    """

    def __init__(self, path: str | Path, max_bytes: int, max_dead_letters: int = 10_000) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = str(path)
        self.max_bytes = max_bytes
        self.max_dead_letters = max_dead_letters
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        # auto_vacuum must be chosen before the first table exists; it lets the file shrink again
        # after a long outage has drained (see `_reclaim`).
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        # Without a limit the -wal file keeps the size of the biggest burst forever.
        self._conn.execute("PRAGMA journal_size_limit=8388608")
        with self._transaction() as conn:
            # executescript() would commit on its own: run the statements inside this transaction.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer gasmon-device (schema {version})")
            for name in COUNTERS:
                conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, 0)", (name,))
            # The running byte total is what the budget checks; recount it once so it can never drift.
            total = conn.execute("SELECT coalesce(sum(bytes), 0) FROM outbox").fetchone()[0]
            self._set(conn, "queued_bytes", int(total))

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _bump(self, conn: sqlite3.Connection, name: str, by: int) -> None:
        if by:
            conn.execute("UPDATE meta SET value = value + ? WHERE name = ?", (by, name))

    def _set(self, conn: sqlite3.Connection, name: str, value: object) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def _meta(self, name: str) -> object:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- writing -------------------------------------------------------------------------------

    def put(self, body: str, now_ms: int) -> int:
        """Commit one document (durably) and return how many old documents were dropped for room.

        A document larger than the whole budget is refused with ValueError: it could never be kept.
        """
        size = len(body.encode())
        if size > self.max_bytes:
            raise ValueError(f"a {size}-byte document does not fit a {self.max_bytes}-byte queue")
        with self._transaction() as conn:
            queued = int(conn.execute("SELECT value FROM meta WHERE name = 'queued_bytes'").fetchone()[0])
            dropped, dropped_bytes, last_id = 0, 0, 0
            if queued + size > self.max_bytes:
                need = queued + size - self.max_bytes
                for row_id, row_bytes in conn.execute("SELECT id, bytes FROM outbox ORDER BY id"):
                    if dropped_bytes >= need:
                        break
                    dropped += 1
                    dropped_bytes += row_bytes
                    last_id = row_id
                if dropped:
                    conn.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))
            conn.execute("INSERT INTO outbox (body, bytes, enqueued_ms) VALUES (?, ?, ?)", (body, size, now_ms))
            self._bump(conn, "queued_bytes", size - dropped_bytes)
            self._bump(conn, "enqueued", 1)
            self._bump(conn, "dropped", dropped)
            self._bump(conn, "dropped_bytes", dropped_bytes)
            total_dropped = int(conn.execute("SELECT value FROM meta WHERE name = 'dropped'").fetchone()[0])
        if dropped:
            logger.error(
                "QUEUE FULL: dropped the %d oldest queued reading(s) (%d bytes) to stay within %d bytes; "
                "%d dropped since the queue was created. The API has been unreachable too long: check the "
                "network, the endpoint and the API key, or raise [queue] max_bytes.",
                dropped,
                dropped_bytes,
                self.max_bytes,
                total_dropped,
            )
            self._reclaim()
        return dropped

    def peek(self, limit: int, max_bytes: int) -> list[QueuedDocument]:
        """The oldest documents, at most `limit` of them and `max_bytes` together (at least one)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, body, bytes, enqueued_ms FROM outbox ORDER BY id LIMIT ?", (max(limit, 1),)
            ).fetchall()
        batch: list[QueuedDocument] = []
        total = 2  # the brackets of the JSON array
        for row_id, body, size, enqueued_ms in rows:
            if batch and total + size + 1 > max_bytes:
                break
            batch.append(QueuedDocument(row_id, body, size, enqueued_ms))
            total += size + 1
        return batch

    def mark_attempt(self, ids: Sequence[int], now_ms: int) -> None:
        """Record that these documents are being sent (for `status` and diagnosis)."""
        with self._transaction() as conn:
            conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])
            self._set(conn, "last_attempt_ms", now_ms)

    def acknowledge(self, ids: Sequence[int], duplicates: int, now_ms: int) -> None:
        """Delete documents the server acknowledged (accepted or duplicate) and record the success."""
        with self._transaction() as conn:
            removed = self._delete(conn, ids)
            self._bump(conn, "delivered", len(ids) - duplicates)
            self._bump(conn, "duplicates", duplicates)
            self._bump(conn, "queued_bytes", -removed)
            self._set(conn, "last_success_ms", now_ms)
            self._set(conn, "last_error", None)
            self._set(conn, "consecutive_failures", 0)
        if removed and self._is_empty():
            self._reclaim()

    def dead_letter(self, reasons: dict[int, str], http_status: int | None, now_ms: int) -> None:
        """Move documents the server refused as invalid to `dead_letters`, keeping the reason."""
        if not reasons:
            return
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT id, body, bytes, enqueued_ms FROM outbox WHERE id IN ({','.join('?' * len(reasons))})",
                list(reasons),
            ).fetchall()
            conn.executemany(
                "INSERT INTO dead_letters (outbox_id, body, reason, http_status, enqueued_ms, dead_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(row[0], row[1], reasons[row[0]], http_status, row[3], now_ms) for row in rows],
            )
            removed = self._delete(conn, [row[0] for row in rows])
            self._bump(conn, "queued_bytes", -removed)
            self._bump(conn, "dead", len(rows))
            count = int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
            overflow = count - self.max_dead_letters
            if overflow > 0:
                conn.execute(
                    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?)",
                    (overflow,),
                )
                self._bump(conn, "dead_dropped", overflow)
        for row in rows:
            logger.error("dead letter: queued document %d refused by the server: %s", row[0], reasons[row[0]])
        if overflow > 0:
            logger.error("dead letters over %d: dropped the %d oldest", self.max_dead_letters, overflow)

    def record_failure(self, error: str, now_ms: int) -> int:
        """Remember a failed send for `status`; return the number of failures in a row."""
        with self._transaction() as conn:
            self._set(conn, "last_error", error[:500])
            self._set(conn, "last_failure_ms", now_ms)
            self._bump(conn, "consecutive_failures", 1)
            return int(conn.execute("SELECT value FROM meta WHERE name = 'consecutive_failures'").fetchone()[0])

    def requeue_dead_letters(self, ids: Sequence[int] | None, now_ms: int) -> int:
        """Put dead letters back in the outbox (after fixing what made the server refuse them)."""
        with self._transaction() as conn:
            if ids is None:
                rows = conn.execute("SELECT id, body FROM dead_letters ORDER BY id").fetchall()
            else:
                marks = ",".join("?" * len(ids))
                rows = conn.execute(
                    f"SELECT id, body FROM dead_letters WHERE id IN ({marks}) ORDER BY id", list(ids)
                ).fetchall()
            for _, body in rows:
                size = len(body.encode())
                conn.execute("INSERT INTO outbox (body, bytes, enqueued_ms) VALUES (?, ?, ?)", (body, size, now_ms))
                self._bump(conn, "queued_bytes", size)
            conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(row[0],) for row in rows])
        return len(rows)

    def _delete(self, conn: sqlite3.Connection, ids: Sequence[int]) -> int:
        removed = 0
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            row = conn.execute(f"SELECT coalesce(sum(bytes), 0) FROM outbox WHERE id IN ({marks})", chunk).fetchone()
            removed += int(row[0])
            conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
        return removed

    def _is_empty(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is None

    def _reclaim(self) -> None:
        """Give freed pages back to the file system so the file tracks the budget."""
        with self._lock:
            # The pragma frees one page per step; `execute` on Python 3.11 steps it only once, while
            # `executescript` runs every statement to completion.
            self._conn.executescript("PRAGMA incremental_vacuum;")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- reading -------------------------------------------------------------------------------

    def depth(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def documents(self) -> list[QueuedDocument]:
        """Every queued document, oldest first (tests and `status --verbose`)."""
        with self._lock:
            rows = self._conn.execute("SELECT id, body, bytes, enqueued_ms FROM outbox ORDER BY id").fetchall()
        return [QueuedDocument(*row) for row in rows]

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, outbox_id, body, reason, http_status, enqueued_ms, dead_ms FROM dead_letters "
                "ORDER BY id LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def health(self) -> QueueHealth:
        with self._lock:
            return _health(self._conn, self.path, self.max_bytes)


def _health(conn: sqlite3.Connection, path: str, max_bytes: int) -> QueueHealth:
    depth, oldest = conn.execute("SELECT count(*), min(enqueued_ms) FROM outbox").fetchone()
    dead = int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
    meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    return QueueHealth(
        path=path,
        depth=int(depth),
        queued_bytes=int(meta.get("queued_bytes") or 0),
        max_bytes=max_bytes,
        oldest_enqueued_ms=oldest,
        dead_letters=dead,
        enqueued=int(meta.get("enqueued") or 0),
        delivered=int(meta.get("delivered") or 0),
        duplicates=int(meta.get("duplicates") or 0),
        dead=int(meta.get("dead") or 0),
        dropped=int(meta.get("dropped") or 0),
        dead_dropped=int(meta.get("dead_dropped") or 0),
        last_success_ms=_int_or_none(meta.get("last_success_ms")),
        last_attempt_ms=_int_or_none(meta.get("last_attempt_ms")),
        last_error=None if meta.get("last_error") is None else str(meta.get("last_error")),
        consecutive_failures=int(meta.get("consecutive_failures") or 0),
    )


@contextmanager
def read_only(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a queue another process may be writing (for `status`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no queue at {path} (has the publisher run yet?)")
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=10.0)
    try:
        yield conn
    finally:
        conn.close()


def read_health(path: str | Path, max_bytes: int) -> QueueHealth:
    """The queue's health, read without taking any write lock."""
    with read_only(path) as conn:
        return _health(conn, str(path), max_bytes)


def read_dead_letters(path: str | Path, limit: int | None = None) -> list[DeadLetter]:
    """Dead letters, oldest first, read without taking any write lock."""
    with read_only(path) as conn:
        rows = conn.execute(
            "SELECT id, outbox_id, body, reason, http_status, enqueued_ms, dead_ms FROM dead_letters "
            "ORDER BY id LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
    return [DeadLetter(*row) for row in rows]


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(str(value))


@contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold `<queue>.lock` so two publishers never drain one queue at once (released on any exit, even kill -9)."""
    import fcntl

    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QueueLockedError(
                f"another gasmon-device publisher is using {path} (lock {lock_path}); stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
