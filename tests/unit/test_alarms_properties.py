"""Properties of alarms with memory, for any sequence of readings, and under concurrency.

- alarms of one (device, gas) never overlap; every open has at most one clear;
- between open and clear only escalation (once) and reminders are published;
- hysteresis: an alarm opens only at the warning level and clears only after K readings spanning
  S seconds below the clear line, and always then;
- reminders come at most every N minutes;
- late readings (older than the last change) and duplicates never cause a message;
- concurrent ingest for one device, against DynamoDB (moto's server), never duplicates an alarm.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gasmon.alarms import AlarmPolicy, Alarms, GasLevels, apply_reading
from gasmon.errors import StoreUnavailableError
from gasmon.ingest import IngestPolicy, ingest
from gasmon.models import AlarmMessage, AlarmState, ClearMessage, Reading, StoreOutcome
from gasmon.ports import AlarmKey, AlarmSnapshot, ThresholdScope
from gasmon.readings import reading_id

T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values cluster around the lines that matter (clear line, warning 88, critical 1000) so that
# generated sequences open, escalate, hover in the band and clear.
values = st.one_of(
    st.sampled_from([0.0, 50.0, 70.0, 79.0, 80.0, 87.99, 88.0, 90.0, 500.0, 999.99, 1000.0, 1500.0]),
    st.floats(min_value=0, max_value=1600, allow_nan=False, allow_infinity=False),
)
levels_strategy = st.builds(
    GasLevels,
    warning=st.just(88.0),
    critical=st.sampled_from([None, 1000.0]),
    band=st.sampled_from([0.0, 4.4, 8.8, 20.0]),
)
policies = st.builds(
    AlarmPolicy,
    clear_after_readings=st.integers(min_value=1, max_value=4),
    clear_after=st.sampled_from([timedelta(0), timedelta(seconds=20), timedelta(seconds=60)]),
    remind_every=st.sampled_from([timedelta(0), timedelta(seconds=30), timedelta(minutes=2)]),
)
in_order = st.lists(st.tuples(st.integers(min_value=0, max_value=90), values), min_size=1, max_size=60)


def make_reading(value: float, at: datetime, index: int) -> Reading:
    sensorid = f"s{index}"  # distinct ids, as the store would have them
    return Reading(
        reading_id=reading_id("2", sensorid, "no2", at),
        groupid="2",
        gas="no2",
        sensorid=sensorid,
        sensortype="9",
        value=value,
        createdtime=at.isoformat(),
        created_at=at,
        received_at=at,
    )


def timeline(gaps_and_values: Sequence[tuple[int, float]]) -> list[Reading]:
    """Readings in the order the state machine applies them: reading time, ties by reading id.

    A gap of 0 puts two sensors' readings at the same instant; their order is then the ids' (a
    hash), so "in order" means that total order, not the order they were generated in.
    """
    readings, at = [], T0
    for index, (gap, value) in enumerate(gaps_and_values):
        at += timedelta(seconds=gap)
        readings.append(make_reading(value, at, index))
    return sorted(readings, key=lambda r: (r.created_at, r.reading_id))


def feed(readings: Sequence[Reading], levels: GasLevels, policy: AlarmPolicy) -> list[tuple[Reading, list[Any]]]:
    """Apply readings one at a time, as requests would; pair each with the messages it caused."""
    state = AlarmState(device="2", gas="no2")
    out = []
    for r in readings:
        step = apply_reading(state, r, levels, policy)
        state = step.state
        out.append((r, [n.message for n in step.notices]))
    return out


def assert_well_formed(messages: Sequence[AlarmMessage | ClearMessage]) -> None:
    """Episodes never overlap, each clear closes the open one, in between only escalate and remind."""
    open_id: str | None = None
    escalated = False
    seen: set[str] = set()
    for m in messages:
        if m.event == "open":
            assert open_id is None, "an alarm opened while another was open"
            assert m.alarm_id not in seen, "an alarm id was reused"
            open_id, escalated = m.alarm_id, m.level == "critical"
            seen.add(m.alarm_id)
        elif m.event == "clear":
            assert open_id == m.alarm_id, "a clear without its open, or a second clear"
            open_id = None
        else:
            assert open_id == m.alarm_id, f"{m.event} outside its episode"
            if m.event == "escalate":
                assert not escalated, "escalated twice"
                escalated = True


@FAST
@given(gaps_and_values=in_order, levels=levels_strategy, policy=policies)
def test_episodes_never_overlap_and_clear_at_most_once(
    gaps_and_values: list[tuple[int, float]], levels: GasLevels, policy: AlarmPolicy
) -> None:
    fed = feed(timeline(gaps_and_values), levels, policy)
    assert_well_formed([m for _, ms in fed for m in ms])


@FAST
@given(gaps_and_values=in_order, levels=levels_strategy, policy=policies)
def test_hysteresis_is_respected(
    gaps_and_values: list[tuple[int, float]], levels: GasLevels, policy: AlarmPolicy
) -> None:
    """The documented rule, restated as an oracle and checked reading by reading."""
    is_open, streak, streak_start = False, 0, T0
    for r, messages in feed(timeline(gaps_and_values), levels, policy):
        events = [m.event for m in messages]
        if not is_open:
            # Closed: a reading at or above the warning level opens, anything below stays silent.
            assert events == (["open"] if r.value >= levels.warning else [])
            is_open, streak = r.value >= levels.warning, 0
        elif r.value < levels.clear_below:
            streak, streak_start = streak + 1, (streak_start if streak else r.created_at)
            due = streak >= policy.clear_after_readings and r.created_at - streak_start >= policy.clear_after
            # Below the line: a clear exactly when K readings spanning S seconds are in; else nothing.
            assert events == (["clear"] if due else [])
            is_open = not due
        else:
            streak = 0
            assert len(events) <= 1 and set(events) <= {"escalate", "remind"}
            if levels.critical is not None and r.value >= levels.critical and "escalate" in events:
                assert messages[0].level == "critical"


@FAST
@given(gaps_and_values=in_order, levels=levels_strategy, policy=policies)
def test_reminders_come_at_most_every_n_minutes(
    gaps_and_values: list[tuple[int, float]], levels: GasLevels, policy: AlarmPolicy
) -> None:
    last: datetime | None = None
    for r, messages in feed(timeline(gaps_and_values), levels, policy):
        for m in messages:
            if m.event in ("open", "escalate"):
                last = r.created_at
            elif m.event == "remind":
                assert policy.remind_every > timedelta(0)
                assert last is not None and r.created_at - last >= policy.remind_every
                last = r.created_at


shuffled = st.lists(
    st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=-300, max_value=0), values),
    min_size=1,
    max_size=60,
)


@FAST
@given(items=shuffled, levels=levels_strategy, policy=policies)
def test_late_readings_never_cause_a_message(
    items: list[tuple[int, int, float]], levels: GasLevels, policy: AlarmPolicy
) -> None:
    # Readings arrive out of order: each is up to 5 minutes older than the clock of its arrival.
    readings, clock = [], T0
    for index, (gap, lateness, value) in enumerate(items):
        clock += timedelta(seconds=gap)
        readings.append(make_reading(value, clock + timedelta(seconds=lateness), index))
    state = AlarmState(device="2", gas="no2")
    messages = []
    for r in readings:
        step = apply_reading(state, r, levels, policy)
        if state.watermark is not None and r.created_at < state.watermark:
            assert step.state is state and step.notices == (), "a late reading changed the state"
        state = step.state
        messages.extend(n.message for n in step.notices)
    assert_well_formed(messages)


# ---- Duplicates, through ingest() with fakes ----


class MemoryReadingStore:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        ids = {r.reading_id for r in readings}
        new, old = ids - self.ids, ids & self.ids
        self.ids |= new
        return StoreOutcome(created=frozenset(new), existing=frozenset(old))


class MemoryAlarmStore:
    def __init__(self) -> None:
        self.states: dict[AlarmKey, AlarmState] = {}

    def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
        return AlarmSnapshot(states={k: self.states.get(k) or AlarmState(device=k[0], gas=k[1]) for k in keys})

    def save(self, state: AlarmState, episodes: Sequence[Any] = ()) -> AlarmState:
        saved = state.model_copy(update={"version": state.version + 1})
        self.states[(state.device, state.gas)] = saved
        return saved


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        with self.lock:
            self.sent.append(payload)


def post_all(documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    store, publisher = MemoryReadingStore(), Recorder()
    alarms = Alarms(MemoryAlarmStore(), AlarmPolicy(clear_after=timedelta(seconds=10)))  # type: ignore[arg-type]
    policy = IngestPolicy(max_age=timedelta(days=36500))
    for doc in documents:
        ingest([doc], False, policy, T0 + timedelta(days=1), store, publisher, alarms)
    return publisher.sent


@settings(max_examples=60, deadline=None)
@given(gaps_and_values=in_order, repeats=st.lists(st.integers(min_value=0, max_value=59), max_size=20))
def test_a_reading_the_store_already_had_never_causes_a_message(
    gaps_and_values: list[tuple[int, float]], repeats: list[int]
) -> None:
    documents = [
        {"groupid": "2", "no2": {"sensorid": "0006", "sensortype": "9", "value": r.value, "createdtime": r.createdtime}}
        for r in timeline(gaps_and_values)
    ]
    with_retries = list(documents)
    for position in sorted(repeats, reverse=True):  # a device re-sends some document right after it
        if position < len(documents):
            with_retries.insert(position + 1, documents[position])
    assert post_all(with_retries) == post_all(documents)


# ---- Concurrency against DynamoDB (moto's server) ----


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> Iterator[str]:
    """moto's server on 127.0.0.1, one request at a time.

    DynamoDB applies each request atomically; moto's in-memory backend takes no lock (and rolls a
    failed transaction back by restoring a copy of the whole table), so requests are serialized
    here. Interleaving between requests, where the races live, is untouched.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    backend = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic(environ: Any, start_response: Any) -> Any:
        with lock:
            return list(backend(environ, start_response))

    server = make_server("127.0.0.1", 0, atomic, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def concurrent_posts(endpoint: str, table: str, threads: int, race: bool) -> tuple[list[dict[str, Any]], Any]:
    """`threads` requests for one device at once, each with its own client (own Lambda instance)."""
    from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
    from gasmon.adapters.sqlite_store import SqliteReadingStore

    DynamoDbAlarmStore(table, region="ap-northeast-2", endpoint_url=endpoint).create_table()
    readings, publisher = SqliteReadingStore(":memory:"), Recorder()
    everyone_read = threading.Barrier(threads)
    start = threading.Barrier(threads)

    class RacingStore(DynamoDbAlarmStore):
        first_load = True

        def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
            snapshot = super().load(keys, scopes)
            if race and self.first_load:  # every request has read version 0 before anyone writes
                self.first_load = False
                everyone_read.wait(timeout=10)
            return snapshot

    stores = [RacingStore(table, region="ap-northeast-2", endpoint_url=endpoint) for _ in range(threads)]
    errors: list[BaseException] = []

    def post(index: int) -> None:
        at = T0 + timedelta(seconds=index)
        doc = {
            "groupid": "7",
            "no2": {"sensorid": "0006", "sensortype": "9", "value": 90 + index, "createdtime": at.isoformat()},
        }
        alarms = Alarms(stores[index], AlarmPolicy())
        start.wait(timeout=10)
        try:
            for _ in range(10):  # a device retries a 503 (a loser that met conflicts past its attempts)
                try:
                    ingest([doc], False, IngestPolicy(max_age=timedelta(days=36500)), T0, readings, publisher, alarms)
                    break
                except StoreUnavailableError:
                    continue
            else:
                raise AssertionError("no 200 after 10 attempts")
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    workers = [threading.Thread(target=post, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not errors, errors
    return publisher.sent, stores


@pytest.mark.parametrize("race", [True, False], ids=["all-read-before-any-write", "free-running"])
def test_concurrent_ingest_for_one_device_never_duplicates_an_alarm(
    dynamodb_endpoint: str, fake_aws: None, race: bool
) -> None:
    from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore

    table = f"alarms-{'race' if race else 'free'}"
    # Given 6 requests for device 7, each with NO2 over the line, at once
    sent, stores = concurrent_posts(dynamodb_endpoint, table, threads=6, race=race)
    # Then one alarm is opened: every open published names the same episode (a loser that re-read
    # the winner's outbox may publish it too: at least once, deduped by alarm_id), and one episode
    # is recorded
    assert {m["event"] for m in sent} == {"open"} and len({m["alarm_id"] for m in sent}) == 1
    reader = DynamoDbAlarmStore(table, region="ap-northeast-2", endpoint_url=dynamodb_endpoint)
    (episode,) = reader.open_alarms(device="7")
    assert episode.alarm_id == sent[0]["alarm_id"]
    assert len(reader.list_alarms(T0 - timedelta(days=1), T0 + timedelta(days=1)).items) == 1
    if race:
        # And the losers really met the conflict and re-read (the race happened)
        assert sum(s.conflicts for s in stores) >= 5
