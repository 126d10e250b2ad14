"""The rule under partial failure, over random fault schedules (hypothesis).

A device posts its readings in order, one batch at a time, and retries each POST until it gets a
200, through the real ingest and alarm code; the in-memory reading store, broker and alarm table
are wrapped in `gasmon_local.faults` (the same wrappers `make local --faults` uses), each failing
on its own seeded schedule. At the end:

- every reading is stored exactly once, with the value first posted;
- every reading at or over the level had its warning, or fell inside an alarm whose open message
  was published (at least once) and not yet cleared; when the alarm table never fails, every
  episode the pure state machine finds in the whole series had its own open message (when it
  fails, a reading below the level may be left out of the state, which can only delay a clear);
- no warning, open or escalation was published for a reading below its level.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gasmon.alarms import AlarmPolicy, Alarms, apply_readings, resolve_levels
from gasmon.errors import StoreUnavailableError
from gasmon.ingest import IngestPolicy, ingest
from gasmon.models import AlarmState, Reading
from gasmon_local.faults import FaultPlan, FaultyAlarmStore, FaultyPublisher, FaultyReadingStore
from tests.fakes import MemoryAlarmStore, MemoryPublisher, MemoryReadingStore

T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
POLICY = IngestPolicy(max_age=timedelta(days=30))
ALARM_POLICY = AlarmPolicy(clear_after_readings=2, clear_after=timedelta(seconds=10), remind_every=timedelta(0))
MAX_ATTEMPTS = 400  # per POST; a fault probability of at most 0.5 per call ends far sooner

probability = st.sampled_from([0.0, 0.1, 0.3, 0.5])
fault_specs = st.fixed_dictionaries(
    {
        "store-lost-reply": probability,
        "store-error": probability,
        "store-throttle": probability,
        "publish-error": probability,
        "alarm-store-error": probability,
    }
)
no2_values = st.lists(st.sampled_from([10.0, 50.0, 79.0, 87.9, 88.0, 90.0, 250.0, 1000.0]), min_size=1, max_size=10)


def document(value: float, at: datetime, gas: str = "no2") -> dict[str, Any]:
    return {"groupid": "7", gas: {"sensorid": "0006", "sensortype": "9", "value": value, "createdtime": at.isoformat()}}


def post_until_200(batch: list[dict[str, Any]], store: Any, publisher: Any, alarms: Alarms | None) -> Any:
    for _ in range(MAX_ATTEMPTS):
        try:
            return ingest(batch, True, POLICY, NOW, store, publisher, alarms)
        except StoreUnavailableError:  # 503: the device retries the same POST
            continue
    raise AssertionError(f"no 200 after {MAX_ATTEMPTS} attempts")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=fault_specs,
    seed=st.integers(min_value=0, max_value=2**32),
    values=no2_values,
    batch_size=st.integers(min_value=1, max_value=3),
    with_alarms=st.booleans(),
)
def test_a_retrying_device_gets_every_reading_stored_once_and_every_episode_announced(
    spec: dict[str, float], seed: int, values: list[float], batch_size: int, with_alarms: bool
) -> None:
    # Given the real ingest and alarms over fault-injecting stores, broker and alarm table
    plan = FaultPlan(spec, seed)
    memory_store, memory_publisher, memory_alarms = MemoryReadingStore(), MemoryPublisher(), MemoryAlarmStore()
    store, publisher = FaultyReadingStore(memory_store, plan), FaultyPublisher(memory_publisher, plan)
    alarms = Alarms(FaultyAlarmStore(memory_alarms, plan), ALARM_POLICY) if with_alarms else None
    documents = [document(value, T0 + timedelta(seconds=5 * i)) for i, value in enumerate(values)]

    # When a device posts its readings in order, batch by batch, retrying each POST until a 200
    answers = [
        post_until_200(documents[i : i + batch_size], store, publisher, alarms)
        for i in range(0, len(documents), batch_size)
    ]

    # Then every reading is stored exactly once, with the value posted
    ids = [r.id for answer in answers for result in answer.response.results for r in result.readings]
    assert len(ids) == len(values) and len(set(ids)) == len(values)
    assert sorted(memory_store.readings) == sorted(ids)
    assert [memory_store.readings[i].value for i in ids] == values
    readings = [memory_store.readings[i] for i in ids]

    messages = [payload for _, payload, _ in memory_publisher.messages]
    warned = [m for m in messages if "warning" in m]
    # And no warning, open or escalation names a reading below its level
    for message in warned:
        if message.get("event") in (None, "open"):
            assert message["value"] >= 88.0, message
        if message.get("event") == "escalate":
            assert message["value"] >= 1000.0, message
    if alarms is None:
        # And (plain mode) every reading at or over the level was warned on at least once
        over = {r.reading_id for r in readings if r.value >= 88.0}
        assert over <= {m["reading_id"] for m in warned}
    else:
        # And every reading at or over the level was warned on, or fell inside an alarm whose open
        # was published and whose clear (if any) came after it
        for reading in readings:
            if reading.value >= 88.0:
                assert covered(reading, messages), (reading.created_at, reading.value, messages)
        if spec["alarm-store-error"] == 0:
            # And, the alarm table never failing, every episode the state machine finds in the whole
            # series was announced at least once
            assert every_episode_opened(readings) <= {m["alarm_id"] for m in warned if m.get("event") == "open"}
        # And after one run of the scheduled sweep (no faults), no message is left unpublished: an
        # outbox holds at most messages already published (a failed outbox write leaves them there)
        Alarms(memory_alarms, ALARM_POLICY).sweep(T0, memory_publisher, lambda _: "pi/1")
        published = [payload for _, payload, _ in memory_publisher.messages]
        left = [o.payload for state in memory_alarms.states.values() for o in state.owed]
        assert all(payload in published for payload in left)


def covered(reading: Reading, messages: list[dict[str, Any]]) -> bool:
    if any(m.get("reading_id") == reading.reading_id and "warning" in m for m in messages):
        return True
    ended = {m["alarm_id"]: datetime.fromisoformat(m["ended_at"]) for m in messages if m.get("event") == "clear"}
    return any(
        m.get("event") == "open"
        and datetime.fromisoformat(m["started_at"]) <= reading.created_at
        and (m["alarm_id"] not in ended or reading.created_at < ended[m["alarm_id"]])
        for m in messages
    )


def every_episode_opened(readings: list[Reading]) -> set[str]:
    levels, _ = resolve_levels("no2", ALARM_POLICY)
    step = apply_readings(AlarmState(device="7", gas="no2"), readings, levels, ALARM_POLICY)
    return {n.message.alarm_id for n in step.notices if getattr(n.message, "event", "") == "open"}
