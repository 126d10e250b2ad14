"""Alarms with memory through the real ingest handler: SQLite readings, moto DynamoDB."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.models import GasThresholds
from gasmon_local.functions import load_handler
from tests.conftest import device_identity

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)


class LambdaContext:
    function_name = "gasmon-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-ingest"
    aws_request_id = "test-request"


class Recorder:
    """An in-memory `MessagePublisher`: what subscribers of each topic would receive."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        self.sent.append((topic, json.loads(json.dumps(payload))))  # what goes over the wire


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "gasmon",
    }.items():
        monkeypatch.setenv(name, value)
    fn = load_handler("functions/ingest_readings")
    from gasmon.observability import metrics

    if metrics.namespace is None:  # created before this test set the variable
        metrics.namespace = "gasmon"
    return fn


@pytest.fixture
def alarm_store() -> Iterator[DynamoDbAlarmStore]:
    with mock_aws():
        store = DynamoDbAlarmStore("gasmon-alarms", region="ap-northeast-2")
        store.create_table()
        yield store


def event(document: dict[str, Any]) -> dict[str, Any]:
    """The seed's event with `document`, posted with its own device's key (see `device_identity`)."""
    sample: dict[str, Any] = json.loads((ROOT / "events" / "ingest_seed_document.json").read_text())
    sample["body"] = json.dumps(document)
    sample["requestContext"]["authorizer"] = device_identity(document)
    return sample


def no2(value: float, at: datetime, **device: str) -> dict[str, Any]:
    # The seed's zone-less local time (Asia/Seoul), as a Pi's pub.py sends it
    local = at.astimezone(UTC) + timedelta(hours=9)
    return {
        "groupid": "2",
        "gps": "37.61002501514269, 126.99636868892937",
        **device,
        "no2": {
            "sensorid": "0006",
            "sensortype": "9",
            "value": f"{value:.2f}",
            "createdtime": f"{local:%Y-%m-%d %H:%M:%S}",
        },
    }


def test_no2_90_every_5_seconds_for_an_hour_opens_once_reminds_and_clears_once(
    handler: Any, alarm_store: DynamoDbAlarmStore, tmp_path: Path
) -> None:
    readings, publisher = SqliteReadingStore(tmp_path / "readings.sqlite3"), Recorder()
    # Given a Pi posting NO2 90 every 5 s for an hour, then 50 for two minutes
    answers, writes = [], []
    series = [(90.0, T0 + timedelta(seconds=5 * i)) for i in range(720)]
    series += [(50.0, T0 + timedelta(hours=1, seconds=5 * i)) for i in range(24)]
    for value, at in series:
        response = handler(
            event(no2(value, at)),
            LambdaContext(),
            store=readings,
            publisher=publisher,
            clock=lambda at=at: at + timedelta(seconds=1),
            alarm_store=alarm_store,
        )
        assert response["statusCode"] == 200, response["body"]
        answers.append(json.loads(response["body"]))
        writes.append(alarm_store.writes)

    messages = [payload for topic, payload in publisher.sent if topic == "pi/1"]
    kinds = [m["event"] for m in messages]
    # Then subscribers of pi/1 get one open, with the seed's text, not 720 warnings
    assert kinds.count("open") == 1 and kinds[0] == "open"
    opened = messages[0]
    assert opened["warning"] == "no2 warning"
    assert (opened["gas"], opened["value"], opened["threshold"], opened["level"]) == ("no2", 90.0, 88.0, "warning")
    # And reminders at most every 15 minutes while it is open (at 15, 30 and 45 minutes)
    reminders = [m for m in messages if m["event"] == "remind"]
    assert len(reminders) == 3
    times = [datetime.fromisoformat(m["createdtime"]) for m in [opened, *reminders]]
    assert all(later - earlier >= timedelta(minutes=15) for earlier, later in zip(times, times[1:], strict=False))
    # And one clear, once the value has stayed below 79.2 for 3 readings and 60 s, and it is last
    assert kinds.count("clear") == 1 and kinds[-1] == "clear"
    clear = messages[-1]
    assert clear["clear"] == "no2 clear" and "warning" not in clear
    assert clear["alarm_id"] == opened["alarm_id"] and clear["peak"] == 90.0
    assert clear["ended_at"] == "2026-05-01T04:01:00Z"
    # And the POST answers name what was published for their reading
    assert answers[0]["warnings"] == 1 and answers[0]["results"][0]["warnings"] == ["no2 warning"]
    assert answers[1]["warnings"] == 0
    # And the history shows one closed episode
    (episode,) = alarm_store.list_alarms(T0 - timedelta(hours=1), T0 + timedelta(hours=2)).items
    assert episode.ended_at == T0 + timedelta(hours=1, minutes=1) and alarm_store.open_alarms() == []
    # And DynamoDB was written once per reading while open (the watermark: no backdated reading may
    # count towards the clear), plus once per message (its outbox entry removed), and never for a
    # reading after the clear
    cleared = next(i for i, a in enumerate(answers) if "no2 clear" in a["results"][0]["warnings"])
    assert writes[cleared] <= cleared + 1 + len(messages)
    assert writes[-1] == writes[cleared]


def test_a_per_device_threshold_applies_without_a_redeploy(
    handler: Any, alarm_store: DynamoDbAlarmStore, tmp_path: Path
) -> None:
    readings, publisher = SqliteReadingStore(tmp_path / "readings.sqlite3"), Recorder()
    # Given an operator lowered NO2 to 60 for device pi-7 (only)
    alarm_store.put_thresholds(("device", "pi-7"), {"no2": GasThresholds(warning=60)})
    # When pi-7 and pi-8 (same group) both post NO2 70
    for device in ("pi-7", "pi-8"):
        response = handler(
            event(no2(70, T0, deviceid=device)),
            LambdaContext(),
            store=readings,
            publisher=publisher,
            clock=lambda: T0 + timedelta(seconds=1),
            alarm_store=alarm_store,
        )
        assert response["statusCode"] == 200
    # Then only pi-7 opens an alarm, against its own level
    assert [(p["device"], p["event"], p["threshold"]) for _, p in publisher.sent] == [("pi-7", "open", 60.0)]


def test_without_an_alarm_table_every_reading_over_the_line_warns_as_before(handler: Any, tmp_path: Path) -> None:
    assert not os.environ.get("ALARM_TABLE")
    readings, publisher = SqliteReadingStore(tmp_path / "readings.sqlite3"), Recorder()
    # When three readings of NO2 90 are posted with no alarm table configured
    for i in range(3):
        at = T0 + timedelta(seconds=5 * i)
        handler(event(no2(90, at)), LambdaContext(), store=readings, publisher=publisher, clock=lambda at=at: at)
    # Then each gets the plain seed warning, with no alarm fields
    assert [p["warning"] for _, p in publisher.sent] == ["no2 warning"] * 3
    assert all("event" not in p for _, p in publisher.sent)


def test_the_scheduled_sweep_closes_an_alarm_the_device_left_open_with_a_stale_clear(
    handler: Any, alarm_store: DynamoDbAlarmStore, tmp_path: Path
) -> None:
    sweep = load_handler("functions/sweep_alarms")
    readings, publisher = SqliteReadingStore(tmp_path / "readings.sqlite3"), Recorder()
    # Given an alarm opened by NO2 95, after which the device never posts again
    handler(
        event(no2(95.0, T0)),
        LambdaContext(),
        store=readings,
        publisher=publisher,
        clock=lambda: T0 + timedelta(seconds=1),
        alarm_store=alarm_store,
    )
    scheduled = json.loads((ROOT / "events" / "sweep_alarms_schedule.json").read_text())
    # When the schedule runs the sweep 30 minutes later, then 61 minutes later (AlarmStaleMinutes 60)
    early = sweep(
        scheduled,
        LambdaContext(),
        publisher=publisher,
        alarm_store=alarm_store,
        clock=lambda: T0 + timedelta(minutes=30),
    )
    late = sweep(
        scheduled,
        LambdaContext(),
        publisher=publisher,
        alarm_store=alarm_store,
        clock=lambda: T0 + timedelta(minutes=61),
    )
    # Then only the second closes it: a `stale` clear on pi/1 naming the episode, no open alarm left
    assert (early["closed"], late["closed"]) == (0, 1)
    opened, cleared = (payload for topic, payload in publisher.sent if topic == "pi/1")
    assert cleared["clear"] == "no2 clear" and cleared["reason"] == "stale"
    assert cleared["alarm_id"] == opened["alarm_id"] and "warning" not in cleared
    assert alarm_store.open_alarms() == [] and alarm_store.due_states() == []
