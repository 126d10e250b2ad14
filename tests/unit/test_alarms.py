"""Alarms with memory: the state machine, level resolution and the use case, with fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gasmon.alarms import AlarmPolicy, Alarms, GasLevels, apply_reading, apply_readings, resolve_levels
from gasmon.errors import AlarmConflictError, AlarmStoreUnavailableError, PublishError
from gasmon.ingest import IngestPolicy, ingest
from gasmon.models import (
    AlarmEpisode,
    AlarmPage,
    AlarmState,
    ClearMessage,
    GasThresholds,
    Reading,
    StoreOutcome,
)
from gasmon.policies import alarm_policy
from gasmon.ports import AlarmKey, AlarmSnapshot, ThresholdScope
from gasmon.readings import reading_id

T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
NO2 = GasLevels(warning=88, critical=1000, band=8.8)  # clear line 79.2
POLICY = AlarmPolicy(clear_after_readings=3, clear_after=timedelta(seconds=60), remind_every=timedelta(minutes=15))


def reading(value: float, seconds: float, gas: str = "no2", groupid: str = "2", deviceid: str | None = None) -> Reading:
    at = T0 + timedelta(seconds=seconds)
    return Reading(
        reading_id=reading_id(groupid, "0006", gas, at),
        groupid=groupid,
        deviceid=deviceid,
        gas=gas,
        sensorid="0006",
        sensortype="9",
        value=value,
        createdtime=at.isoformat(),
        created_at=at,
        received_at=at,
    )


def fresh_state(device: str = "2", gas: str = "no2") -> AlarmState:
    return AlarmState(device=device, gas=gas)


def run(values: Sequence[tuple[float, float]], policy: AlarmPolicy = POLICY) -> tuple[AlarmState, list[Any]]:
    """Apply (value, seconds) readings one at a time; return the last state and every message."""
    state, messages = fresh_state(), []
    for value, seconds in values:
        step = apply_reading(state, reading(value, seconds), NO2, policy)
        state = step.state
        messages.extend(n.message for n in step.notices)
    return state, messages


def events(messages: Sequence[Any]) -> list[str]:
    return [m.event for m in messages]


# ---- The state machine ----


def test_a_reading_below_the_warning_level_changes_nothing() -> None:
    # Given no open alarm
    state = fresh_state()
    # When a reading just below the warning level arrives
    step = apply_reading(state, reading(87.99, 0), NO2, POLICY)
    # Then the very same state comes back (nothing to write) and nothing is published
    assert step.state is state
    assert step.notices == ()


def test_a_reading_at_the_warning_level_opens_an_alarm_with_the_seed_payload() -> None:
    # Given no open alarm
    # When NO2 88 arrives
    step = apply_reading(fresh_state(), reading(88, 0), NO2, POLICY)
    # Then one open message keeps the seed's {"warning": "no2 warning"} and says which episode it is
    (notice,) = step.notices
    payload = notice.message.model_dump(mode="json")
    assert payload["warning"] == "no2 warning"
    assert payload["event"] == "open"
    assert payload["level"] == "warning"
    assert payload["threshold"] == 88
    assert payload["peak"] == 88
    assert payload["alarm_id"] == step.state.alarm.alarm_id  # type: ignore[union-attr]
    assert notice.label == "no2 warning"
    # And the episode is recorded as open
    (episode,) = step.episodes
    assert episode.is_open and episode.started_at == T0


def test_a_reading_at_the_critical_level_opens_straight_at_critical() -> None:
    # When the first reading is already at the critical level
    step = apply_reading(fresh_state(), reading(1000, 0), NO2, POLICY)
    # Then the alarm opens at critical, with the critical threshold, and the seed text
    (notice,) = step.notices
    assert notice.message.event == "open"
    assert notice.message.level == "critical"
    assert notice.message.threshold == 1000
    assert notice.message.model_dump()["warning"] == "no2 warning"


def test_an_open_warning_escalates_once_to_critical() -> None:
    # Given an alarm open at warning
    # When readings reach the critical level twice
    _, messages = run([(90, 0), (1200, 5), (1300, 10)])
    # Then one escalation is published, none for the second critical reading
    assert events(messages) == ["open", "escalate"]
    assert messages[1].level == "critical" and messages[1].peak == 1200


def test_the_episode_records_the_levels_it_was_judged_against() -> None:
    # Given the device's levels: warning 88, critical 1000
    # When an alarm opens at 90, escalates at 1200 and clears
    state, episodes = fresh_state(), []
    for value, seconds in [(90, 0), (1200, 5), (50, 10), (50, 40), (50, 75)]:
        step = apply_reading(state, reading(value, seconds), NO2, POLICY)
        state = step.state
        episodes.extend(step.episodes)
    # Then every version of the episode, the closed one too, carries both levels (for the history)
    assert [e.level for e in episodes] == ["warning", "critical", "critical"]
    assert {(e.threshold, e.critical) for e in episodes} == {(88, 1000)}
    assert episodes[-1].ended_at == T0 + timedelta(seconds=75) and episodes[-1].peak == 1200


def test_the_value_must_stay_below_the_clear_line_for_k_readings_and_s_seconds() -> None:
    # Given an open alarm, K=3 readings and S=60 s
    # When the value drops to 50 and is posted every 5 s
    values = [(90, 0)] + [(50, 5 * i) for i in range(1, 20)]
    _, messages = run(values)
    # Then it clears on the reading 60 s after the first one below the line (the 13th), once
    assert events(messages) == ["open", "clear"]
    clear = messages[1]
    assert isinstance(clear, ClearMessage)
    assert clear.ended_at == T0 + timedelta(seconds=65)
    assert clear.model_dump(mode="json")["clear"] == "no2 clear"
    assert "warning" not in clear.model_dump()


def test_with_no_seconds_rule_the_kth_reading_below_clears() -> None:
    # Given S=0: only the count matters
    policy = POLICY.model_copy(update={"clear_after": timedelta(0)})
    # When three readings below the line follow the open
    _, messages = run([(90, 0), (50, 5), (50, 10), (50, 15)], policy)
    # Then the third clears
    assert events(messages) == ["open", "clear"]
    assert messages[1].ended_at == T0 + timedelta(seconds=15)


def test_a_value_inside_the_hysteresis_band_does_not_count_towards_the_clear() -> None:
    # Given an open alarm whose clear line is 79.2
    policy = POLICY.model_copy(update={"clear_after": timedelta(0)})
    # When the value hovers at 80 (below the warning level but inside the band) for a long time
    state, messages = run([(90, 0)] + [(80, 5 * i) for i in range(1, 50)], policy)
    # Then the alarm stays open and no message but reminders is published
    assert state.alarm is not None
    assert set(events(messages)) <= {"open", "remind"}


def test_a_reading_back_above_the_line_restarts_the_clear_count() -> None:
    # Given K=3, S=0 and two readings below the line
    policy = POLICY.model_copy(update={"clear_after": timedelta(0)})
    # When the third is back above the line, then three more are below
    _, messages = run([(90, 0), (50, 5), (50, 10), (85, 15), (50, 20), (50, 25), (50, 30)], policy)
    # Then it clears only on the third of the new run
    assert events(messages) == ["open", "clear"]
    assert messages[1].ended_at == T0 + timedelta(seconds=30)


def test_reminders_come_at_most_every_n_minutes_while_the_alarm_is_open() -> None:
    # Given NO2 90 every 5 s for an hour and reminders every 15 minutes
    _, messages = run([(90, 5 * i) for i in range(720)])
    # Then one open and three reminders (15, 30, 45 min), 15 minutes apart
    assert events(messages) == ["open", "remind", "remind", "remind"]
    times = [datetime.fromisoformat(m.createdtime) for m in messages]
    assert all(b - a == timedelta(minutes=15) for a, b in zip(times, times[1:], strict=False))
    assert messages[1].model_dump()["warning"] == "no2 warning"


def test_no_reminder_while_the_value_is_below_the_clear_line() -> None:
    # Given an open alarm and a slow clear (K=1000)
    policy = POLICY.model_copy(update={"clear_after_readings": 1000})
    # When the value stays low for an hour
    _, messages = run([(90, 0)] + [(50, 60 * i) for i in range(1, 61)], policy)
    # Then no reminder is sent: the air is getting better, the clear is on its way
    assert events(messages) == ["open"]


def test_a_late_reading_older_than_the_last_change_is_ignored() -> None:
    # Given an alarm that opened at t=100 and cleared at t=200 (K=1, S=0)
    policy = POLICY.model_copy(update={"clear_after_readings": 1, "clear_after": timedelta(0)})
    state, _ = run([(90, 100), (50, 200)], policy)
    # When a reading of 500 from t=150 arrives late
    step = apply_reading(state, reading(500, 150), NO2, policy)
    # Then it opens nothing
    assert step.state is state and step.notices == ()


def test_readings_of_one_request_apply_in_reading_time_order() -> None:
    # Given a backlog posted out of order: open at t=0, 2 readings below the line, one at t=20
    policy = POLICY.model_copy(update={"clear_after": timedelta(0)})
    batch = [reading(50, 15), reading(90, 0), reading(50, 10), reading(50, 5)]
    # When the batch is applied
    step = apply_readings(fresh_state(), batch, NO2, policy)
    # Then it is the same as in order: open at t=0, clear at t=15
    assert [n.message.event for n in step.notices] == ["open", "clear"]
    assert step.state.alarm is None
    # And the episode is listed once, closed, in its latest version
    (episode,) = step.episodes
    assert episode.ended_at == T0 + timedelta(seconds=15)


def test_the_clear_message_reports_the_peak_and_the_highest_level() -> None:
    policy = POLICY.model_copy(update={"clear_after_readings": 1, "clear_after": timedelta(0)})
    # Given an alarm that peaked at 1500 (critical) then fell
    _, messages = run([(90, 0), (1500, 5), (300, 10), (20, 15)], policy)
    # Then the clear names the peak, the level reached and the clear line
    clear = messages[-1]
    assert isinstance(clear, ClearMessage)
    assert (clear.peak, clear.level, clear.clear_below, clear.value) == (1500, "critical", pytest.approx(79.2), 20)


def test_an_alarm_after_a_clear_is_a_new_episode() -> None:
    policy = POLICY.model_copy(update={"clear_after_readings": 1, "clear_after": timedelta(0)})
    # When the value rises again after a clear
    _, messages = run([(90, 0), (50, 5), (95, 10)], policy)
    # Then a second open with a new alarm id follows the clear
    assert events(messages) == ["open", "clear", "open"]
    assert messages[0].alarm_id == messages[1].alarm_id != messages[2].alarm_id


# ---- Levels: defaults, group and device overrides ----


def test_device_overrides_beat_group_overrides_which_beat_defaults() -> None:
    # Given a group lowering NO2 to 60 and a device raising its critical to 500
    group = {"no2": GasThresholds(warning=60, band=5)}
    device = {"no2": GasThresholds(critical=500)}
    # When levels are resolved
    levels, problems = resolve_levels("no2", POLICY, [group, device])
    # Then each field comes from the most specific layer that sets it
    assert levels == GasLevels(warning=60, critical=500, band=5)
    assert problems == []


def test_the_band_follows_the_warning_level_unless_set() -> None:
    levels, _ = resolve_levels("co", POLICY, [{"co": GasThresholds(warning=50)}])
    assert levels is not None and levels.band == pytest.approx(5.0)


def test_an_override_that_breaks_the_levels_is_ignored_and_named() -> None:
    # Given a device override putting warning above the default critical (1000)
    levels, problems = resolve_levels("no2", POLICY, [None, {"no2": GasThresholds(warning=2000)}])
    # Then the defaults stay and the problem says why
    assert levels is not None and levels.warning == 88
    assert problems and "critical" in problems[0]


def test_a_gas_without_a_default_gets_alarms_from_an_override() -> None:
    levels, _ = resolve_levels("nh3", POLICY, [{"nh3": GasThresholds(warning=25)}])
    assert levels is not None and levels.warning == 25 and levels.critical is None
    assert resolve_levels("nh3", POLICY, [])[0] is None


# ---- The use case, with fakes ----


class FakeAlarmStore:
    """An in-memory `AlarmStateStore` with the adapter's version check."""

    def __init__(self) -> None:
        self.states: dict[AlarmKey, AlarmState] = {}
        self.episodes: dict[str, AlarmEpisode] = {}
        self.overrides: dict[ThresholdScope, dict[str, GasThresholds]] = {}
        self.loads = 0
        self.saves = 0
        self.before_save: Callable[[AlarmState], None] | None = None
        self.unavailable = False
        self.save_errors: list[Exception | None] = []  # consumed one per save

    def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
        if self.unavailable:
            raise AlarmStoreUnavailableError("fake outage")
        self.loads += 1
        states = {k: self.states.get(k) or AlarmState(device=k[0], gas=k[1]) for k in keys}
        return AlarmSnapshot(states=states, overrides={s: self.overrides[s] for s in scopes if s in self.overrides})

    def save(self, state: AlarmState, episodes: Sequence[AlarmEpisode] = ()) -> AlarmState:
        if self.before_save is not None:
            hook, self.before_save = self.before_save, None
            hook(state)
        error = self.save_errors.pop(0) if self.save_errors else None
        if error is not None:
            raise error
        stored = self.states.get((state.device, state.gas))
        if (stored.version if stored else 0) != state.version:
            raise AlarmConflictError("version moved")
        saved = state.model_copy(update={"version": state.version + 1})
        self.states[(state.device, state.gas)] = saved
        self.episodes.update((e.alarm_id, e) for e in episodes)
        self.saves += 1
        return saved

    def list_alarms(self, since: datetime, *args: Any, **kwargs: Any) -> AlarmPage:
        return AlarmPage(items=sorted(self.episodes.values(), key=lambda e: e.started_at, reverse=True))

    def open_alarms(self, device: str | None = None, gas: str | None = None) -> list[AlarmEpisode]:
        return [e for e in self.episodes.values() if e.is_open]


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.failing = False

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        if self.failing:
            raise PublishError("broker down")
        self.sent.append((topic, payload))

    def events(self) -> list[str]:
        return [p.get("event", "plain") for _, p in self.sent]


def topic(groupid: str) -> str:
    return "pi/1"


def test_one_read_for_the_whole_request_and_no_write_when_nothing_changes() -> None:
    # Given four gases of one device, all below their levels
    store, publisher = FakeAlarmStore(), FakePublisher()
    readings = [reading(1, 0, gas) for gas in ("no2", "co", "c2h5oh", "h2")]
    # When the request is processed
    outcome = Alarms(store, POLICY).process(readings, publisher, topic)
    # Then the store was read once and never written, and nothing was published
    assert (store.loads, store.saves, publisher.sent, outcome.published) == (1, 0, [], 0)


def test_a_concurrent_open_is_reread_and_not_opened_twice() -> None:
    # Given another request opens the same alarm between our read and our write
    store, publisher = FakeAlarmStore(), FakePublisher()
    other = FakeAlarmStore()
    Alarms(other, POLICY).process([reading(95, 0)], FakePublisher(), topic)

    def other_request_wins(_: AlarmState) -> None:
        store.states.update(other.states)
        store.episodes.update(other.episodes)

    store.before_save = other_request_wins
    # When our request (a later reading over the line) tries to open it
    outcome = Alarms(store, POLICY).process([reading(96, 5)], publisher, topic)
    # Then we re-read, find it open, publish no second open, and only raise the peak
    assert outcome.conflicts == 1
    assert publisher.sent == []
    (episode,) = store.episodes.values()
    assert episode.peak == 96


def test_a_failed_open_is_owed_and_redelivered_once_with_the_next_reading() -> None:
    store, publisher = FakeAlarmStore(), FakePublisher()
    alarms = Alarms(store, POLICY)
    # Given the broker is down when the alarm opens
    publisher.failing = True
    first = alarms.process([reading(95, 0)], publisher, topic)
    assert (first.failed, first.lost) == (1, 0)
    # When it is back for the next reading, and the one after
    publisher.failing = False
    alarms.process([reading(95, 5)], publisher, topic)
    alarms.process([reading(95, 10)], publisher, topic)
    # Then the open is delivered exactly once, with its original reading time
    assert publisher.events() == ["open"]
    assert publisher.sent[0][1]["createdtime"] == T0.isoformat()


def test_an_owed_message_is_given_up_after_the_attempt_limit() -> None:
    store, publisher = FakeAlarmStore(), FakePublisher()
    policy = POLICY.model_copy(update={"max_publish_attempts": 3})
    alarms = Alarms(store, policy)
    # Given a broker that stays down
    publisher.failing = True
    lost = sum(alarms.process([reading(95, 5 * i)], publisher, topic).lost for i in range(6))
    # Then the open is tried three times and then dropped (counted), not repeated forever
    assert lost == 1
    state = store.states[("2", "no2")]
    assert state.owed == ()


def test_later_messages_wait_behind_an_unpublished_one() -> None:
    store, publisher = FakeAlarmStore(), FakePublisher()
    policy = POLICY.model_copy(update={"clear_after_readings": 1, "clear_after": timedelta(0)})
    alarms = Alarms(store, policy)
    # Given an open that could not be published
    publisher.failing = True
    alarms.process([reading(95, 0)], publisher, topic)
    # When the broker is back and the next readings clear the alarm
    publisher.failing = False
    alarms.process([reading(20, 5)], publisher, topic)
    # Then subscribers see open before clear
    assert publisher.events() == ["open", "clear"]


def test_when_the_state_table_is_down_plain_warnings_are_published() -> None:
    # Given the alarm store is unavailable
    store, publisher = FakeAlarmStore(), FakePublisher()
    store.unavailable = True
    # When two readings over the line arrive
    outcome = Alarms(store, POLICY).process([reading(95, 0), reading(96, 5)], publisher, topic)
    # Then each gets the plain seed warning (a repeated warning beats a missed one)
    assert [p["warning"] for _, p in publisher.sent] == ["no2 warning", "no2 warning"]
    assert "event" not in publisher.sent[0][1]
    assert outcome.degraded == 1 and outcome.problems


def test_a_write_failing_mid_batch_keeps_what_was_committed_and_warns_plainly_for_the_rest() -> None:
    # Given a store that takes the first write of a backlog and fails the second
    store, publisher = FakeAlarmStore(), FakePublisher()
    store.save_errors = [None, AlarmStoreUnavailableError("throttled")]
    policy = POLICY.model_copy(update={"readings_per_write": 2})
    # When a backlog of four readings arrives (written two at a time)
    outcome = Alarms(store, policy).process(
        [reading(95, 0), reading(50, 5), reading(97, 10), reading(98, 15)], publisher, topic
    )
    # Then the committed open is published first, then plain warnings for the uncommitted readings
    assert publisher.events() == ["open", "plain", "plain"]
    assert [p["value"] for _, p in publisher.sent] == [95, 97, 98]
    assert outcome.degraded == 1 and store.states[("2", "no2")].alarm is not None


def test_a_key_that_keeps_conflicting_is_given_up_without_a_message() -> None:
    # Given every write of this key meets a newer version
    store, publisher = FakeAlarmStore(), FakePublisher()
    store.save_errors = [AlarmConflictError("moved")] * POLICY.max_write_attempts
    # When a reading over the line arrives
    outcome = Alarms(store, POLICY).process([reading(95, 0)], publisher, topic)
    # Then nothing is published (the requests that won publish), and the give-up is reported
    assert publisher.sent == []
    assert outcome.conflicts == POLICY.max_write_attempts and outcome.problems


def test_per_device_thresholds_from_the_store_apply() -> None:
    # Given device pi-7 has NO2 lowered to 50
    store, publisher = FakeAlarmStore(), FakePublisher()
    store.overrides[("device", "pi-7")] = {"no2": GasThresholds(warning=50)}
    # When pi-7 and another device in its group both post NO2 60
    Alarms(store, POLICY).process([reading(60, 0, deviceid="pi-7"), reading(60, 0, deviceid="pi-8")], publisher, topic)
    # Then only pi-7 opens an alarm
    assert [(p["device"], p["event"], p["threshold"]) for _, p in publisher.sent] == [("pi-7", "open", 50)]


# ---- Through ingest() ----


def document(value: float, seconds: float) -> dict[str, Any]:
    at = T0 + timedelta(seconds=seconds)
    return {
        "groupid": "2",
        "no2": {"sensorid": "0006", "sensortype": "9", "value": value, "createdtime": at.isoformat()},
    }


class FakeReadingStore:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        new = {r.reading_id for r in readings} - self.ids
        existing = {r.reading_id for r in readings} & self.ids
        self.ids |= new
        return StoreOutcome(created=frozenset(new), existing=frozenset(existing))


def test_a_retried_post_causes_no_alarm_message() -> None:
    store, publisher, alarms = FakeReadingStore(), FakePublisher(), Alarms(FakeAlarmStore(), POLICY)
    policy = IngestPolicy(max_age=timedelta(days=36500))
    # Given a POST that opened an alarm
    first = ingest([document(95, 0)], False, policy, T0, store, publisher, alarms)
    # When the device retries the same POST
    second = ingest([document(95, 0)], False, policy, T0, store, publisher, alarms)
    # Then the retry is a duplicate and publishes nothing
    assert first.response.warnings == 1 and first.response.results[0].warnings == ["no2 warning"]
    assert second.response.duplicates == 1 and second.response.warnings == 0
    assert publisher.events() == ["open"]


def test_without_alarms_ingest_warns_for_every_reading_as_before() -> None:
    store, publisher = FakeReadingStore(), FakePublisher()
    policy = IngestPolicy(max_age=timedelta(days=36500))
    # When three readings over the line arrive with no alarm store
    for i in range(3):
        ingest([document(95, 5 * i)], False, policy, T0, store, publisher)
    # Then each publishes the plain warning, exactly as before alarms existed
    assert len(publisher.sent) == 3
    assert set(publisher.sent[0][1]) == {
        "warning",
        "gas",
        "value",
        "threshold",
        "sensorid",
        "groupid",
        "createdtime",
        "gps",
        "level",
        "reading_id",
    }


# ---- Settings ----


def test_alarm_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from gasmon.adapters import build_alarm_store
    from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
    from gasmon.settings import IngestSettings

    # Given the variables template.yaml sets
    for name, value in {
        "ALARM_TABLE": "gasmon-AlarmTable-1",
        "CRITICAL_THRESHOLDS": '{"no2": 500}',
        "ALARM_HYSTERESIS_PERCENT": "5",
        "ALARM_CLEAR_READINGS": "4",
        "ALARM_CLEAR_SECONDS": "30",
        "ALARM_REMINDER_MINUTES": "10",
    }.items():
        monkeypatch.setenv(name, value)
    settings = IngestSettings()
    # Then the policy follows them, other gases keep their default critical level
    policy = alarm_policy(settings)
    assert policy.critical_levels["no2"] == 500 and policy.critical_levels["co"] == 200
    assert (policy.hysteresis, policy.clear_after_readings) == (0.05, 4)
    assert (policy.clear_after, policy.remind_every) == (timedelta(seconds=30), timedelta(minutes=10))
    # And the DynamoDB store is built (lazily: no client yet)
    store = build_alarm_store(settings.alarm_table, settings.aws_region, settings.alarm_threshold_cache_seconds)
    assert isinstance(store, DynamoDbAlarmStore) and store.table_name == "gasmon-AlarmTable-1"


def test_without_alarm_table_there_is_no_alarm_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from gasmon.adapters import build_alarm_store
    from gasmon.settings import IngestSettings

    monkeypatch.delenv("ALARM_TABLE", raising=False)
    # A plain deployment may even raise a warning level above a default critical one
    monkeypatch.setenv("THRESHOLDS", '{"no2": 2000}')
    settings = IngestSettings()
    assert build_alarm_store(settings.alarm_table, settings.aws_region) is None


def test_a_critical_level_not_above_its_warning_fails_at_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from gasmon.settings import IngestSettings

    monkeypatch.setenv("ALARM_TABLE", "t")
    monkeypatch.setenv("CRITICAL_THRESHOLDS", '{"no2": 80}')
    with pytest.raises(ValidationError, match="critical threshold for no2"):
        IngestSettings()
