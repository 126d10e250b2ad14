"""The on-disk queue: durable settings, the disk budget policy, dead letters, and deciding per answer."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gasmon_device.publisher import plan_outcome
from gasmon_device.queue import DiskQueue, QueuedDocument, read_dead_letters, read_health
from gasmon_device.sender import ItemOutcome, SendResult, classify_response


def document(n: int, padding: int = 0) -> str:
    """A queued document of a fixed size per padding (n is zero-padded)."""
    return json.dumps({"groupid": "2", "n": f"{n:04d}", "pad": "x" * padding})


def test_the_queue_is_wal_with_full_sync_and_survives_reopening(tmp_path) -> None:
    # Given a queue with three documents, closed as if the process ended
    path = tmp_path / "queue.sqlite3"
    queue = DiskQueue(path, max_bytes=1 << 20)
    for n in range(3):
        queue.put(document(n), now_ms=n)
    journal = queue._conn.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = queue._conn.execute("PRAGMA synchronous").fetchone()[0]
    queue.close()

    # When it is opened again
    reopened = DiskQueue(path, max_bytes=1 << 20)

    # Then it is in WAL mode with synchronous=FULL (2) and holds the same documents in order
    assert (journal, synchronous) == ("wal", 2)
    assert [int(json.loads(d.body)["n"]) for d in reopened.documents()] == [0, 1, 2]
    assert reopened.health().queued_bytes == sum(len(document(n)) for n in range(3))


def test_when_the_budget_is_full_the_oldest_readings_are_dropped_counted_and_logged(tmp_path, caplog) -> None:
    # Given a queue whose budget holds ten 1 kB documents
    size = len(document(0, padding=1000))
    queue = DiskQueue(tmp_path / "queue.sqlite3", max_bytes=10 * size)
    for n in range(10):
        assert queue.put(document(n, padding=1000), now_ms=n) == 0

    # When five more arrive
    with caplog.at_level(logging.ERROR):
        dropped = [queue.put(document(n, padding=1000), now_ms=n) for n in range(10, 15)]

    # Then each one pushed out exactly the oldest, the count is kept, the budget holds,
    # and the log says so loudly
    assert dropped == [1, 1, 1, 1, 1]
    assert [int(json.loads(d.body)["n"]) for d in queue.documents()] == list(range(5, 15))
    health = queue.health()
    assert health.dropped == 5
    assert health.queued_bytes <= 10 * size
    assert caplog.text.count("QUEUE FULL") == 5
    assert "5 dropped since the queue was created" in caplog.text


def test_a_document_larger_than_the_whole_budget_is_refused(tmp_path) -> None:
    queue = DiskQueue(tmp_path / "queue.sqlite3", max_bytes=100)
    with pytest.raises(ValueError, match="does not fit"):
        queue.put(document(0, padding=200), now_ms=0)
    assert queue.depth() == 0


def test_dead_letters_keep_the_reason_and_are_bounded(tmp_path) -> None:
    # Given a queue that keeps at most 2 dead letters
    queue = DiskQueue(tmp_path / "queue.sqlite3", max_bytes=1 << 20, max_dead_letters=2)
    for n in range(4):
        queue.put(document(n), now_ms=n)
    ids = [d.id for d in queue.documents()]

    # When three are refused by the server
    queue.dead_letter({ids[0]: "no2.value: bad", ids[1]: "co.value: bad", ids[2]: "h2.value: bad"}, 200, now_ms=9)

    # Then the newest two are kept with their reasons, the oldest one is counted as dropped,
    # and the one that was fine is still queued
    letters = read_dead_letters(tmp_path / "queue.sqlite3")
    assert [(int(json.loads(x.body)["n"]), x.reason) for x in letters] == [(1, "co.value: bad"), (2, "h2.value: bad")]
    health = read_health(tmp_path / "queue.sqlite3", 1 << 20)
    assert (health.depth, health.dead_letters, health.dead, health.dead_dropped) == (1, 2, 3, 1)

    # When the dead letters are put back (after fixing the cause)
    assert queue.requeue_dead_letters(None, now_ms=10) == 2

    # Then they are queued again
    assert [int(json.loads(d.body)["n"]) for d in queue.documents()] == [3, 1, 2]


def test_peek_respects_the_count_and_byte_limits(tmp_path) -> None:
    queue = DiskQueue(tmp_path / "queue.sqlite3", max_bytes=1 << 20)
    for n in range(10):
        queue.put(document(n, padding=100), now_ms=n)
    one = len(document(0, padding=100))
    assert len(queue.peek(limit=4, max_bytes=1 << 20)) == 4
    assert len(queue.peek(limit=10, max_bytes=3 * (one + 1) + 2)) == 3
    assert len(queue.peek(limit=10, max_bytes=10)) == 1  # a document alone always goes


def test_the_status_reader_does_not_need_write_access(tmp_path) -> None:
    # Given a queue written by the publisher
    path = tmp_path / "queue.sqlite3"
    queue = DiskQueue(path, max_bytes=1 << 20)
    queue.put(document(1), now_ms=1)

    # When status reads it while the publisher holds it open
    health = read_health(path, 1 << 20)

    # Then it sees the document, and a missing queue is a clear error
    assert health.depth == 1
    with pytest.raises(FileNotFoundError, match="has the publisher run yet"):
        read_health(tmp_path / "nope.sqlite3", 1)
    with pytest.raises(sqlite3.OperationalError):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as ro:
            ro.execute("DELETE FROM outbox")


# -- what the publisher does with each kind of answer ---------------------------------------------


def batch(n: int) -> list[QueuedDocument]:
    return [QueuedDocument(id=100 + i, body="{}", bytes=2, enqueued_ms=0) for i in range(n)]


def test_only_accepted_and_duplicate_delete_and_missing_answers_are_retried() -> None:
    result = SendResult(
        "delivered",
        200,
        items=(
            ItemOutcome("accepted"),
            ItemOutcome("duplicate"),
            ItemOutcome("rejected", "no2.value: must be a number"),
            ItemOutcome("missing"),
        ),
    )
    plan = plan_outcome(batch(4), result)
    assert plan.acknowledge == (100, 101)
    assert plan.duplicates == 1
    assert plan.dead == {102: "HTTP 200: no2.value: must be a number"}
    assert plan.keep == (103,) and plan.retry


def test_a_conflict_is_acknowledged_as_a_duplicate_not_retried_forever() -> None:
    # Given the server's answer that document 0 is a conflict (stored before with another value)
    body = b'{"results": [{"index": 0, "status": "conflict"}, {"index": 1, "status": "accepted"}]}'
    plan = plan_outcome(batch(2), classify_response(200, body, {}, 2))
    # Then both leave the queue: re-sending a conflict would never change the server's answer
    assert plan.acknowledge == (100, 101) and plan.duplicates == 1 and not plan.retry


def test_too_large_splits_the_batch_and_a_single_too_large_document_is_set_aside() -> None:
    too_large = SendResult("too_large", 413, reason="the body is 1200000 bytes")
    assert plan_outcome(batch(8), too_large).shrink_to == 4
    assert plan_outcome(batch(8), too_large).dead == {}
    single = plan_outcome(batch(1), too_large)
    assert list(single.dead) == [100] and "too large" in single.dead[100]


@pytest.mark.parametrize("status", [403, 404, 429, 500, 502, 503])
def test_server_and_configuration_failures_never_set_data_aside(status: int) -> None:
    result = classify_response(status, b'{"message": "nope"}', {"Retry-After": "3"}, 2)
    plan = plan_outcome(batch(2), result)
    assert plan.retry and plan.dead == {} and plan.acknowledge == ()
    assert result.config_problem == (status in (403, 404))


def test_a_422_names_each_document_by_its_index() -> None:
    body = json.dumps(
        {
            "error": "every document in the batch is invalid",
            "code": "invalid_readings",
            "details": [
                {"path": "[0].no2.value", "problem": "must be a number"},
                {"path": "[1].co.createdtime", "problem": "is older than 30 days"},
                {"path": "[1].h2.value", "problem": "must not be negative"},
            ],
        }
    ).encode()
    plan = plan_outcome(batch(3), classify_response(422, body, {}, 3))
    assert plan.dead == {
        100: "HTTP 422: no2.value: must be a number",
        101: "HTTP 422: co.createdtime: is older than 30 days; h2.value: must not be negative",
        102: "HTTP 422: every document in the batch is invalid",
    }


class TooLargeAbove:
    """A fake API that answers 413 to batches above `limit` documents and accepts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []

    def send(self, bodies: list[str]) -> SendResult:
        self.sizes.append(len(bodies))
        if len(bodies) > self.limit:
            return SendResult("too_large", 413, reason="too large")
        return SendResult("delivered", 200, items=tuple(ItemOutcome("accepted") for _ in bodies))


def test_a_413_halves_the_batch_until_it_fits_and_nothing_is_lost(tmp_path) -> None:
    # Given ten queued documents and an API that only takes four at a time
    from gasmon_device.backoff import Backoff
    from gasmon_device.clock import FakeClock
    from gasmon_device.publisher import Forwarder

    queue = DiskQueue(tmp_path / "queue.sqlite3", max_bytes=1 << 20)
    for n in range(10):
        queue.put(document(n), now_ms=n)
    api = TooLargeAbove(4)
    forwarder = Forwarder(
        queue, api, backoff=Backoff(), clock=FakeClock(datetime(2025, 1, 1, tzinfo=UTC)), batch_size=10
    )

    # When the queue is drained
    while queue.depth() and len(api.sizes) < 20:
        forwarder.send_once()

    # Then every document was delivered, none set aside, and no accepted batch was over the limit
    assert queue.depth() == 0 and queue.dead_letters() == []
    assert queue.health().delivered == 10
    assert api.sizes[:2] == [10, 5]
    assert all(size <= 4 for size in api.sizes[2:])


def test_the_file_shrinks_back_once_a_backlog_is_delivered(tmp_path) -> None:
    # Given a backlog of about 1 MB on disk
    path = tmp_path / "queue.sqlite3"
    queue = DiskQueue(path, max_bytes=1 << 24)
    for n in range(500):
        queue.put(document(n, padding=2000), now_ms=n)
    assert path.stat().st_size + Path(f"{path}-wal").stat().st_size > 1_000_000

    # When all of it is acknowledged
    queue.acknowledge([d.id for d in queue.documents()], 0, now_ms=1)

    # Then the database and its WAL give the space back
    wal = Path(f"{path}-wal")
    assert path.stat().st_size + (wal.stat().st_size if wal.exists() else 0) < 100_000
