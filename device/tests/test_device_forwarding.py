"""Store-and-forward against the REAL ingest handler over HTTP: what reaches the reading store."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from device_testkit import API_KEY, IngestGateway

from gasmon_device.backoff import Backoff
from gasmon_device.clock import FakeClock
from gasmon_device.config import DEFAULT_SENSORS
from gasmon_device.publisher import Forwarder, Sampler
from gasmon_device.queue import DiskQueue
from gasmon_device.sender import HttpSender
from gasmon_device.sources import CsvReplaySource, SimulatedSource

GASES = [spec.gas for spec in DEFAULT_SENSORS]
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def make_device(
    tmp_path: Path,
    gateway: IngestGateway,
    clock: FakeClock,
    source: object | None = None,
    *,
    batch_size: int = 100,
    api_key: str = API_KEY,
    seed: int = 1,
) -> tuple[Sampler, Forwarder, DiskQueue]:
    queue = DiskQueue(tmp_path / "queue.sqlite3", max_bytes=64 * 1024 * 1024)
    forwarder = Forwarder(
        queue,
        HttpSender(gateway.url, api_key),
        backoff=Backoff(base=1.0, cap=300.0, rng=random.Random(seed)),
        clock=clock,
        batch_size=batch_size,
    )
    sampler = Sampler(
        source or SimulatedSource(GASES, seed=seed),  # type: ignore[arg-type]
        queue,
        clock=clock,
        groupid="2",
        gps="37.61, 126.99",
        sensors=DEFAULT_SENSORS,
    )
    return sampler, forwarder, queue


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def fake_time_gateway(store, clock: FakeClock):  # type: ignore[no-untyped-def]
    """The ingest handler on the same fake clock as the device (its 30-day/5-minute window follows it)."""
    server = IngestGateway(store=store, clock=clock.now)
    yield server
    server.stop()


def run_until_drained(forwarder: Forwarder, clock: FakeClock, limit_seconds: float = 3600) -> float:
    """Let fake time pass as the backoff asks until the queue is empty; return the seconds it took."""
    waited = 0.0
    while forwarder.queue.depth() and waited <= limit_seconds:
        report = forwarder.send_once()
        if report.retry_in:
            clock.advance(report.retry_in)
            waited += report.retry_in
    return waited


def test_readings_reach_the_store_once_and_leave_the_queue(tmp_path, fake_time_gateway, clock) -> None:
    # Given a device that took 10 readings, 5 s apart
    sampler, forwarder, queue = make_device(tmp_path, fake_time_gateway, clock)
    for _ in range(10):
        sampler.sample_once()
        clock.advance(5)

    # When it forwards what is queued
    forwarder.drain()

    # Then the store holds 4 gases x 10 readings, in one batch, and the queue is empty
    assert fake_time_gateway.stored() == 40
    assert [r.documents for r in fake_time_gateway.requests] == [10]
    assert queue.depth() == 0
    health = queue.health()
    assert (health.delivered, health.duplicates, health.dead_letters) == (10, 0, 0)
    assert health.last_success_ms == int(clock.now().timestamp() * 1000)


def test_one_hour_outage_is_delivered_in_batches_after_the_network_returns(tmp_path, fake_time_gateway, clock) -> None:
    # Given the network is down (connections close without an answer) for one hour
    fake_time_gateway.mode = "down"
    sampler, forwarder, queue = make_device(tmp_path, fake_time_gateway, clock)

    # When the device takes a reading every 5 s for that hour (720 readings), trying to send
    # whenever its backoff allows
    for _ in range(720):
        sampler.sample_once()
        forwarder.send_once()
        clock.advance(5)
    attempts_during_outage = forwarder.requests

    # Then nothing is lost and nothing is stored yet; it kept trying, but far less than once per reading
    assert queue.depth() == 720
    assert fake_time_gateway.stored() == 0
    assert 5 <= attempts_during_outage <= 60

    # When the network returns and time goes on
    fake_time_gateway.mode = "up"
    waited = run_until_drained(forwarder, clock)

    # Then delivery resumes within one backoff cap, in full batches, and every reading is stored exactly once
    assert waited <= 300
    delivered = [r for r in fake_time_gateway.requests if r.status == 200]
    assert [r.documents for r in delivered] == [100] * 7 + [20]
    assert sum(r.body["accepted"] for r in delivered if r.body) == 720 * 4
    assert sum(r.body["duplicates"] for r in delivered if r.body) == 0
    assert fake_time_gateway.stored() == 720 * 4
    times = {row[2] for row in fake_time_gateway.stored_rows()}
    assert len(times) == 720
    assert queue.depth() == 0 and queue.health().delivered == 720


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A replay file: (createdtime, no2 value) per row; the other gases get fixed values."""
    lines = ["createdtime,co,no2,c2h5oh,h2"]
    lines += [f"{created},26.20,{no2},26.11,400" for created, no2 in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def local_times(count: int, start: datetime, step: int = 5) -> list[str]:
    """Recorded times as the device renders them (ISO-8601 in Asia/Seoul)."""
    seoul = start.astimezone(ZoneInfo("Asia/Seoul"))
    return [(seoul + timedelta(seconds=step * i)).isoformat() for i in range(count)]


def test_documents_the_server_rejects_are_set_aside_and_the_rest_delivered(tmp_path, fake_time_gateway, clock) -> None:
    # Given a recording in which readings 3 and 7 have an unreadable NO2 value
    times = local_times(10, START - timedelta(minutes=10))
    rows = [(t, "n/a" if i in (3, 7) else "52.00") for i, t in enumerate(times)]
    source = CsvReplaySource(write_csv(tmp_path / "rec.csv", rows), GASES, use_recorded_times=True)
    sampler, forwarder, queue = make_device(tmp_path, fake_time_gateway, clock, source)
    while sampler.sample_once():
        pass

    # When the device forwards the batch
    forwarder.drain()

    # Then the 8 good readings are stored and the 2 bad ones are dead letters with the server's reason
    assert fake_time_gateway.stored() == 8 * 4
    assert queue.depth() == 0
    letters = queue.dead_letters()
    assert [json.loads(letter.body)["no2"]["createdtime"] for letter in letters] == [times[3], times[7]]
    assert all("no2.value" in letter.reason and "finite" in letter.reason for letter in letters)
    assert all(letter.http_status == 200 for letter in letters)

    # And they are not retried: another send finds nothing to do
    assert forwarder.send_once().sent == 0
    assert len(fake_time_gateway.requests) == 1


def test_a_batch_refused_whole_with_422_is_set_aside_and_later_readings_still_flow(
    tmp_path, fake_time_gateway, clock
) -> None:
    # Given three queued readings the server will refuse as too old (recorded 40 days ago)
    old = local_times(3, START - timedelta(days=40))
    source = CsvReplaySource(
        write_csv(tmp_path / "old.csv", [(t, "52.00") for t in old]), GASES, use_recorded_times=True
    )
    sampler, forwarder, queue = make_device(tmp_path, fake_time_gateway, clock, source)
    while sampler.sample_once():
        pass

    # When they are sent
    report = forwarder.send_once()

    # Then the 422 moves all three to the dead letters, each with its own reason, and no backoff starts
    assert report.result is not None and report.result.status == 422
    assert report.retry_in is None
    letters = queue.dead_letters()
    assert len(letters) == 3
    assert all("older than 30 days" in letter.reason for letter in letters)
    assert fake_time_gateway.stored() == 0

    # When fresh readings follow
    fresh_sampler = Sampler(
        SimulatedSource(GASES, seed=3), queue, clock=clock, groupid="2", gps="", sensors=DEFAULT_SENSORS
    )
    fresh_sampler.sample_once()
    forwarder.drain()

    # Then they are delivered
    assert fake_time_gateway.stored() == 4
    assert queue.depth() == 0


def test_store_unavailable_honours_retry_after_then_delivers(tmp_path, fake_time_gateway, clock) -> None:
    # Given the API answers 503 with Retry-After: 40
    fake_time_gateway.mode = "unavailable"
    fake_time_gateway.retry_after = 40
    sampler, forwarder, queue = make_device(tmp_path, fake_time_gateway, clock)
    sampler.sample_once()

    # When the device sends
    report = forwarder.send_once()

    # Then it waits at least the 40 s asked for (the jittered delay of a first retry is at most 1 s)
    assert report.retry_in is not None and 40 <= report.retry_in <= 41
    assert forwarder.send_once().sent == 0  # not before then
    assert queue.depth() == 1 and queue.health().consecutive_failures == 1

    # When the store is back and the time has passed
    fake_time_gateway.mode = "up"
    clock.advance(report.retry_in)
    forwarder.send_once()

    # Then the reading is stored and the failure streak is over
    assert fake_time_gateway.stored() == 4
    assert queue.health().consecutive_failures == 0


def test_a_wrong_api_key_keeps_readings_queued_not_dead(tmp_path, fake_time_gateway, clock, caplog) -> None:
    # Given a device configured with the wrong API key
    sampler, forwarder, queue = make_device(tmp_path, fake_time_gateway, clock, api_key="not-the-key")
    sampler.sample_once()

    # When it sends
    report = forwarder.send_once()

    # Then the reading stays queued (a configuration problem is not bad data) and the log says why
    assert report.result is not None and report.result.status == 403
    assert report.retry_in is not None
    assert queue.depth() == 1 and queue.dead_letters() == []
    assert "API key" in caplog.text


def test_a_resent_batch_the_server_already_has_is_acknowledged_as_duplicate(tmp_path, fake_time_gateway, clock) -> None:
    # Given readings the server stored, but whose answer the device never saw (same documents queued again)
    sampler, forwarder, queue = make_device(tmp_path, fake_time_gateway, clock)
    for _ in range(3):
        sampler.sample_once()
        clock.advance(5)
    bodies = [doc.body for doc in queue.documents()]
    forwarder.drain()
    for body in bodies:
        queue.put(body, 0)

    # When they are sent again
    forwarder.drain()

    # Then the server keeps one copy, and the device deletes them as acknowledged
    assert fake_time_gateway.stored() == 12
    assert queue.depth() == 0
    assert queue.health().duplicates == 3
