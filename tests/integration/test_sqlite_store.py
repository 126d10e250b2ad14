"""The SQLite store's idempotency holds across processes writing the same readings at once."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.models import Reading
from gasmon.readings import reading_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_readings(count: int) -> list[Reading]:
    readings = []
    for i in range(count):
        at = T0 + timedelta(seconds=i)
        readings.append(
            Reading(
                reading_id=reading_id("1", "0006", "no2", at),
                groupid="1",
                gas="no2",
                sensorid="0006",
                sensortype="9",
                value=float(i),
                createdtime=at.isoformat(),
                created_at=at,
                received_at=at,
            )
        )
    return readings


def _put_all(path: str, queue: multiprocessing.Queue[int]) -> None:
    store = SqliteReadingStore(path)
    outcome = store.put_readings(make_readings(300))
    queue.put(len(outcome.created))


def test_same_readings_from_two_processes_are_created_exactly_once(tmp_path: Path) -> None:
    # Given two processes storing the same 300 readings into one file at the same time
    path = str(tmp_path / "r.sqlite3")
    SqliteReadingStore(path).close()
    # (spawned, not forked: this process has other stores' checkpoint threads running)
    spawn = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[int] = spawn.Queue()
    workers = [spawn.Process(target=_put_all, args=(path, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    created = [queue.get(timeout=5) for _ in workers]
    # Then between them they created each reading once, and 300 rows exist
    assert sum(created) == 300
    assert SqliteReadingStore(path).count() == 300


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = SqliteReadingStore(path)
    store.put_readings(make_readings(5))
    store.close()
    again = SqliteReadingStore(path).put_readings(make_readings(6))
    assert (len(again.created), len(again.existing)) == (1, 5)


def test_a_re_post_with_another_value_is_a_conflict_in_the_same_call_and_the_stored_value_stays(
    tmp_path: Path,
) -> None:
    # Given three readings stored
    store = SqliteReadingStore(tmp_path / "r.sqlite3")
    readings = make_readings(3)
    store.put_readings(readings)
    # When they are posted again, the first with another value, plus one new reading
    changed = [readings[0].model_copy(update={"value": 999.0}), *readings[1:], *make_readings(4)[3:]]
    outcome = store.put_readings(changed)
    # Then the call says: one created, three existing, of which one is a conflict
    assert outcome.created == {make_readings(4)[3].reading_id}
    assert outcome.existing == {r.reading_id for r in readings}
    assert outcome.conflicts == {readings[0].reading_id}
    # And the first value is what stays stored
    assert store.latest_reading(["1"]) is not None and store.count() == 4
    with store._lock:
        (value,) = store._conn.execute(
            "SELECT value FROM readings WHERE reading_id = ?", (readings[0].reading_id,)
        ).fetchone()
    assert value == readings[0].value


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _batches(count: int, size: int = 100) -> list[list[Reading]]:
    readings = make_readings(count * size)
    return [readings[i * size : (i + 1) * size] for i in range(count)]


def test_the_wal_is_checkpointed_in_the_background_and_starts_over(tmp_path: Path) -> None:
    # Given a store whose checkpointer is asked for after 64 pages, and writes past that (about 25
    # pages a batch; the inline bound, 640 pages, is not reached)
    path = tmp_path / "r.sqlite3"
    store = SqliteReadingStore(path, checkpoint_pages=64, checkpoint_interval_seconds=0.05)
    for batch in _batches(10):
        store.put_readings(batch)
    # When the background thread has run two more checkpoints (one began after the last commit)
    seen = store.background_checkpoints
    for _ in range(250):
        if store.background_checkpoints >= seen + 2:
            break
        threading.Event().wait(0.02)
    assert store._checkpointer is not None and store._checkpointer.last is not None
    busy, frames, done = store._checkpointer.last
    # Then it checkpointed the whole WAL, and the next commit starts the WAL over, cut back to the
    # checkpoint size (without checkpoints it would hold every batch, ~260 pages): no request did it
    assert (busy, frames) == (0, done)
    store.put_readings(make_readings(1001)[1000:])
    assert _wal_bytes(path) <= 64 * 4096
    assert store.inline_checkpoints == 0
    assert store.count() == 1001
    store.close()


def test_without_background_checkpoints_the_wal_stays_under_its_bound(tmp_path: Path) -> None:
    # Given a store with no background checkpointer and a bound of 10 x 4 pages
    path = tmp_path / "r.sqlite3"
    store = SqliteReadingStore(path, checkpoint_pages=4, checkpoint_interval_seconds=None)
    largest = 0
    # When 30 batches are written
    for batch in _batches(30):
        store.put_readings(batch)
        largest = max(largest, _wal_bytes(path))
    # Then commits checkpointed inline and the WAL never held much more than the bound plus one batch
    assert store.inline_checkpoints > 0
    assert largest < 10 * 4 * (4096 + 24) + 40 * 4096
    assert store.count() == 3000
    store.close()


def test_close_stops_the_checkpointer_and_nothing_committed_is_lost(tmp_path: Path) -> None:
    # Given a store that wrote readings
    path = tmp_path / "r.sqlite3"
    store = SqliteReadingStore(path, checkpoint_interval_seconds=0.05)
    store.put_readings(make_readings(500))
    # When it closes
    store.close()
    # Then no checkpoint thread of this file is left running, and a new store sees every reading
    assert not [t for t in threading.enumerate() if t.name == f"sqlite-checkpoint:{path}" and t.is_alive()]
    assert SqliteReadingStore(path).count() == 500
