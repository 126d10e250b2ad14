"""The smoke run's plan against the real validation and alarm state machine: each run opens one
alarm with its NO2 reading and clears it, and the next run does the same again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gasmon.alarms import AlarmPolicy, apply_readings, resolve_levels
from gasmon.ingest import IngestPolicy, validate_document
from gasmon.models import AlarmState, ClearMessage, Reading
from gasmon_admin.smoke import (
    MAX_AHEAD,
    Credentials,
    Rules,
    SmokeError,
    Where,
    connection_for,
    is_clear_message,
    is_open_message,
    plan,
    start_of_run,
)
from gasmon_admin.target import Target

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _policy(rules: Rules) -> AlarmPolicy:
    return AlarmPolicy(
        warning_levels=rules.warning,
        critical_levels=rules.critical,
        hysteresis=rules.hysteresis,
        clear_after_readings=rules.clear_readings,
        clear_after=timedelta(seconds=rules.clear_seconds),
    )


def _no2(documents: list[dict[str, Any]], rules: Rules, now: datetime = NOW) -> list[Reading]:
    policy = IngestPolicy(thresholds=rules.warning, local_timezone=rules.timezone)
    readings: list[Reading] = []
    for index, document in enumerate(documents):
        validated = validate_document(json.loads(json.dumps(document)), index, f"[{index}].", policy, now)
        assert not validated.problems, validated.problems
        assert len(validated.readings) == 4  # a four-gas seed document
        readings += [r for r in validated.readings if r.gas == "no2"]
    return readings


def _messages(state: AlarmState, readings: list[Reading], rules: Rules) -> tuple[AlarmState, list[dict[str, Any]]]:
    policy = _policy(rules)
    levels, _ = resolve_levels("no2", policy)
    step = apply_readings(state, readings, levels, policy)
    return step.state, [n.message.model_dump(mode="json") for n in step.notices]


def _one_run(
    state: AlarmState, rules: Rules, newest: datetime | None, now: datetime = NOW
) -> tuple[AlarmState, list[str], datetime]:
    """What a run sees: the messages of its first and second POST, and its last reading time."""
    start = start_of_run(now, newest, rules, pre_clean=state.alarm is not None)
    the_plan = plan(rules, "smoke", start, pre_clean=state.alarm is not None)
    state, first = _messages(state, _no2(the_plan.first, rules, now), rules)
    state, second = _messages(state, _no2(the_plan.second, rules, now), rules)
    seen = [
        "open"
        if is_open_message(m, rules, "smoke", the_plan.warning_at)
        else "clear"
        if is_clear_message(m, rules, "smoke", the_plan.clear_at)
        else f"other {m.get('event')}"
        for m in first + second
    ]
    return state, seen, the_plan.last_at


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"AlarmClearReadings": "5", "AlarmClearSeconds": "200", "AlarmHysteresisPercent": "30"},
        {"AlarmClearReadings": "1", "AlarmClearSeconds": "0", "Thresholds": '{"no2": 40, "co": 10}'},
        {"Thresholds": '{"no2": 900}', "LocalTimezone": "Europe/Berlin"},
    ],
)
def test_every_run_opens_its_own_alarm_and_clears_it(parameters: dict[str, str]) -> None:
    # Given the deployment's alarm rules and a smoke device that has never posted
    rules = Rules.of(parameters)
    state = AlarmState(device="smoke", gas="no2")
    # When two runs follow each other at once, and a third comes ten minutes later
    newest = None
    for now in (NOW, NOW, NOW + timedelta(minutes=10)):
        state, seen, newest = _one_run(state, rules, newest, now)
        # Then each run sees the open of its own NO2 reading, then the clear of its clean air
        assert seen == ["open", "clear"]
    assert state.alarm is None


def test_a_run_after_an_interrupted_one_closes_the_open_alarm_first() -> None:
    # Given a run that posted its warning and stopped before the clean air
    rules = Rules.of({})
    start = start_of_run(NOW, None, rules)
    interrupted = plan(rules, "smoke", start)
    state, opened = _messages(AlarmState(device="smoke", gas="no2"), _no2(interrupted.first, rules), rules)
    assert [m["event"] for m in opened] == ["open"] and state.alarm is not None
    # When the next run sees the open alarm
    state, seen, _ = _one_run(state, rules, interrupted.warning_at)
    # Then its clean air clears the old alarm, and its own warning opens and clears a new one
    assert seen == ["other clear", "open", "clear"]
    assert state.alarm is None


def test_other_gases_stay_below_their_levels_and_no2_below_critical() -> None:
    # Given levels a deployment might set: CO warning at 10, NO2 critical close above warning
    rules = Rules.of({"Thresholds": '{"co": 10}', "CriticalThresholds": '{"no2": 100}'})
    # When the run's documents are built
    the_plan = plan(rules, "smoke", start_of_run(NOW, None, rules))
    warning_doc = the_plan.first[-1]
    # Then only NO2 is over its warning level, and it stays under critical (an `open`, not critical)
    for gas in ("co", "c2h5oh", "h2"):
        assert float(warning_doc[gas]["value"]) < rules.warning[gas] * (1 - rules.hysteresis)
    assert rules.warning["no2"] <= the_plan.warning_value < 100
    assert warning_doc["no2"]["createdtime"] == warning_doc["co"]["createdtime"]  # one seed document


def test_readings_are_zone_less_local_time_and_current() -> None:
    # Given the template's default zone (Asia/Seoul, UTC+9)
    rules = Rules.of({})
    # When a run starts without earlier readings
    start = start_of_run(NOW, None, rules)
    the_plan = plan(rules, "smoke", start)
    # Then its documents carry the seed's zone-less local time, all of it before now
    assert the_plan.first[0]["no2"]["createdtime"] == (start + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    assert NOW - timedelta(minutes=5) < start and the_plan.last_at < NOW


def test_a_run_that_would_post_too_far_ahead_says_when_to_run_again() -> None:
    # Given a smoke device whose newest reading is already 4 minutes ahead of now
    rules = Rules.of({})
    newest = NOW + MAX_AHEAD - timedelta(seconds=20)
    # When a run is planned, Then it is refused with the wait, instead of posting readings ingest would refuse
    with pytest.raises(SmokeError, match=r"run it again in \d+ s"):
        start_of_run(NOW, newest, rules)


def test_the_clear_message_of_another_reading_is_not_this_runs() -> None:
    # Given the run's clear time and a clear message for a reading one second earlier
    rules = Rules.of({})
    at = NOW - timedelta(seconds=5)
    earlier = (at - timedelta(seconds=1) + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    message = {"event": "clear", "gas": "no2", "groupid": "smoke", "createdtime": earlier}
    # Then it does not count as this run's clear
    assert not is_clear_message(message, rules, "smoke", at)
    assert is_clear_message(
        {**message, "createdtime": (at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")}, rules, "smoke", at
    )
    assert ClearMessage.model_fields["event"].default == "clear"


def test_in_aws_the_listener_signs_a_websocket_with_the_operators_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given AWS credentials as a profile or SSO would give them (here: environment variables)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    target = Target(
        iot=None,
        dynamodb=None,
        device_table="t",
        device_policy="p",
        api_url="https://x.execute-api.eu-west-1.amazonaws.com/Prod",
        mqtt_host="abc-ats.iot.eu-west-1.amazonaws.com",
        mqtt_port=8883,
    )
    where = Where(target, {}, tmp_path, "stack gas", region="eu-west-1", stack="gas")
    creds = Credentials("gasmon-smoke", "smoke", "k", "v", tmp_path)
    # When the smoke test builds its MQTT connection to a deployed stack
    connection, how = connection_for(where, creds)
    # Then it is MQTT over WebSocket on 443 to the stack's IoT endpoint, with its own client id (not the device's)
    assert (connection.host_name, connection.port) == ("abc-ats.iot.eu-west-1.amazonaws.com", 443)
    assert connection._use_websockets and "SigV4" in how
    assert connection.client_id.startswith("gas-smoke-") and connection.client_id != creds.thing
