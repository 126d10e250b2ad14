"""Issue 11: alarm effects are idempotent by key; late readings; the stale sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gasmon.alarms import AlarmPolicy, Alarms
from gasmon.models import Reading
from gasmon.readings import reading_id
from tests.fakes import MemoryAlarmStore, MemoryPublisher

T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
POLICY = AlarmPolicy(clear_after_readings=3, clear_after=timedelta(seconds=10), stale_after=timedelta(minutes=60))


def no2(value: float, seconds: int) -> Reading:
    at = T0 + timedelta(seconds=seconds)
    return Reading(
        reading_id=reading_id("7", "0006", "no2", at),
        groupid="7",
        gas="no2",
        sensorid="0006",
        sensortype="9",
        value=value,
        createdtime=at.isoformat(),
        created_at=at,
        received_at=at,
    )


def topic(_: str) -> str:
    return "pi/1"


def events(publisher: MemoryPublisher) -> list[Any]:
    return [p.get("event") for p in publisher.on("pi/1")]


def test_backdated_readings_never_clear_an_alarm_against_newer_data() -> None:
    # Given an open NO2 alarm whose newest reading (t=100) is still 90
    store, publisher = MemoryAlarmStore(), MemoryPublisher()
    alarms = Alarms(store, POLICY)
    alarms.process([no2(95, 0)], publisher, topic)
    alarms.process([no2(90, 100)], publisher, topic)
    # When a device flushes a backlog of low readings from before it (t=10..60)
    alarms.process([no2(5, s) for s in (10, 30, 50, 60)], publisher, topic)
    # Then the alarm stays open: no clear
    assert events(publisher) == ["open"]
    assert store.states[("7", "no2")].alarm is not None


def test_a_retry_finishes_a_message_the_first_attempt_left_owed() -> None:
    # Given a POST whose open was written to the outbox but not published (the broker failed)
    store = MemoryAlarmStore()
    alarms = Alarms(store, POLICY)
    outcome = alarms.process([no2(95, 0)], MemoryPublisher(fail=True), topic)
    assert outcome.pending == 1 and store.states[("7", "no2")].owed
    # When the device retries the same reading (a duplicate now)
    publisher = MemoryPublisher()
    retry = alarms.process([no2(95, 0)], publisher, topic)
    # Then the open goes out once, with the reading id, and nothing is owed any more
    (opened,) = publisher.on("pi/1")
    assert opened["event"] == "open" and opened["reading_id"] == no2(95, 0).reading_id
    assert retry.pending == 0 and not store.states[("7", "no2")].owed
    # And a further retry announces nothing again
    alarms.process([no2(95, 0)], publisher, topic)
    assert events(publisher) == ["open"]


def test_the_sweep_closes_an_alarm_of_a_silent_device_with_a_stale_clear() -> None:
    # Given an open alarm whose device last posted at t=0
    store, publisher = MemoryAlarmStore(), MemoryPublisher()
    alarms = Alarms(store, POLICY)
    alarms.process([no2(95, 0)], publisher, topic)
    # When the sweep runs 59 minutes later, then 61 minutes later
    early = alarms.sweep(T0 + timedelta(minutes=59), publisher, topic)
    late = alarms.sweep(T0 + timedelta(minutes=61), publisher, topic)
    # Then only the second closes it, with a `stale` clear naming the episode
    assert (early.closed, late.closed) == (0, 1)
    opened, cleared = publisher.on("pi/1")
    assert cleared["event"] == "clear" and cleared["reason"] == "stale"
    assert cleared["alarm_id"] == opened["alarm_id"]
    assert store.states[("7", "no2")].alarm is None and store.open_alarms() == []
    assert store.due_states() == []


def test_the_sweep_publishes_what_a_request_left_owed() -> None:
    # Given a clear that could not be published
    store = MemoryAlarmStore()
    alarms = Alarms(store, POLICY)
    alarms.process([no2(95, 0)], MemoryPublisher(), topic)
    alarms.process([no2(5, s) for s in (10, 20, 30)], MemoryPublisher(fail=True), topic)
    # When the sweep runs
    publisher = MemoryPublisher()
    result = alarms.sweep(T0 + timedelta(minutes=1), publisher, topic)
    # Then the owed clear is published and the state has nothing owed
    assert events(publisher) == ["clear"] and result.published == 1
    assert store.due_states() == []
