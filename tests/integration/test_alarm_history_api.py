"""Alarm history end to end on moto's server: readings POSTed through the real ingest handler open and
clear alarms in DynamoDB; GET /alarms on the real query handler reads them back.

Both handlers build their adapters from settings (ALARM_TABLE, READING_STORE, SQLITE_PATH), as
they do in Lambda; only the MQTT publisher and the clock are handed in. moto runs as a server
(not `mock_aws`, which patches botocore only): ingest reads alarm states with signed HTTP
requests of its own (`gasmon.adapters.signed_http`), which reach it through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
from gasmon_local.aws import MotoServer
from gasmon_local.functions import load_function_module

T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
TABLE = "gasmon-alarms"
FUNCTIONS = ("functions/ingest_readings", "functions/query_readings")


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        self.sent.append(json.loads(json.dumps(payload)))


def _clear_cached_adapters() -> None:
    """Each handler caches its settings and adapters per process; rebuild them from this environment."""
    for path in FUNCTIONS:
        module = load_function_module(path)
        for name in dir(module):
            cached = getattr(module, name)
            if name.startswith("_") and callable(getattr(cached, "cache_clear", None)):
                cached.cache_clear()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DynamoDbAlarmStore]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
        "AWS_REGION": "ap-northeast-2",
        "ALARM_TABLE": f"{TABLE}-{tmp_path.name}",  # moto's server keeps tables for the whole process
        "READING_STORE": "sqlite",
        "SQLITE_PATH": str(tmp_path / "readings.sqlite3"),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "gasmon",
    }.items():
        monkeypatch.setenv(name, value)
    moto = MotoServer(port=0)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.start())
    table = DynamoDbAlarmStore(f"{TABLE}-{tmp_path.name}", region="ap-northeast-2")
    table.create_table()
    _clear_cached_adapters()
    try:
        yield table
    finally:
        _clear_cached_adapters()  # later tests must not get adapters bound to this moto table
        moto.stop()


def no2(device: str, value: float, at: datetime) -> dict[str, Any]:
    local = at.astimezone(UTC) + timedelta(hours=9)  # the seed's zone-less Seoul time
    return {
        "groupid": "2",
        "deviceid": device,
        "gps": "37.61002501514269, 126.99636868892937",
        "no2": {
            "sensorid": "0006",
            "sensortype": "9",
            "value": f"{value:.2f}",
            "createdtime": f"{local:%Y-%m-%d %H:%M:%S}",
        },
    }


def test_an_alarm_that_opened_and_cleared_is_read_back_through_get_alarms(
    stack: DynamoDbAlarmStore, api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    rest_event = api_event
    ingest = load_function_module("functions/ingest_readings").lambda_handler
    query = load_function_module("functions/query_readings").lambda_handler
    publisher = Recorder()
    now = T0 + timedelta(hours=1)

    def post(device: str, value: float, at: datetime) -> None:
        event = rest_event("POST", "/readings", body=no2(device, value, at), headers={"x-api-key": "k"})
        answer = ingest(event, lambda_context, publisher=publisher, clock=lambda: at + timedelta(seconds=1))
        assert answer["statusCode"] == 200, answer["body"]

    def get(params: dict[str, str] | None = None) -> dict[str, Any]:
        answer = query(rest_event("GET", "/alarms", params), lambda_context, clock=lambda: now)
        assert answer["statusCode"] == 200, answer["body"]
        return dict(json.loads(answer["body"]))

    # Given pi-1 over the NO2 line, up to critical, then clean air for over a minute
    for seconds, value in [(0, 90), (5, 95), (10, 1200), (15, 50), (45, 50), (80, 50)]:
        post("pi-1", value, T0 + timedelta(seconds=seconds))
    # And pi-2 over the line since ten minutes later, still
    for seconds, value in [(600, 120), (605, 130)]:
        post("pi-2", value, T0 + timedelta(seconds=seconds))
    assert [(m["device"], m["event"]) for m in publisher.sent] == [
        ("pi-1", "open"),
        ("pi-1", "escalate"),
        ("pi-1", "clear"),
        ("pi-2", "open"),
    ]

    # When the dashboard asks for the alarms of the last 24 hours
    body = get()
    # Then both episodes are there, newest first: pi-2 open, pi-1 closed with its start, end and peak
    assert body["configured"] is True
    assert [(a["device"], a["state"]) for a in body["alarms"]] == [("pi-2", "open"), ("pi-1", "closed")]
    open_one, closed = body["alarms"]
    assert open_one["ended_at"] is None and open_one["peak"] == 130 and open_one["level"] == "warning"
    assert open_one["started_at"] == "2026-05-01T03:10:00Z"
    assert (closed["started_at"], closed["ended_at"]) == ("2026-05-01T03:00:00Z", "2026-05-01T03:01:20Z")
    assert (closed["level"], closed["peak"], closed["peak_at"]) == ("critical", 1200, "2026-05-01T03:00:10Z")
    assert (closed["threshold"], closed["critical"], closed["gas"]) == (88, 1000, "no2")
    assert closed["alarm_id"] == publisher.sent[0]["alarm_id"]

    # And each state filter keeps its own
    assert [a["device"] for a in get({"state": "open"})["alarms"]] == ["pi-2"]
    assert [a["device"] for a in get({"state": "closed"})["alarms"]] == ["pi-1"]
    assert [a["device"] for a in get({"device": "pi-1"})["alarms"]] == ["pi-1"]
    # And a window that ended before either started holds nothing
    assert get({"since": "2026-04-30T00:00:00Z", "until": "2026-05-01T02:00:00Z"})["alarms"] == []

    # And one episode per page, through the DynamoDB cursor, gives each once
    seen: list[str] = []
    params: dict[str, str] = {"limit": "1"}
    for _ in range(5):
        page = get(params)
        seen += [a["device"] for a in page["alarms"]]
        if not page["next_cursor"]:
            break
        params = {"limit": "1", "cursor": page["next_cursor"]}
    assert seen == ["pi-2", "pi-1"]


def test_a_forged_cursor_is_a_422_not_a_500(
    stack: DynamoDbAlarmStore, api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    from gasmon.query import encode_cursor

    query: Callable[..., dict[str, Any]] = load_function_module("functions/query_readings").lambda_handler
    # When a cursor wraps something the DynamoDB adapter never gave out
    answer = query(api_event("GET", "/alarms", {"cursor": encode_cursor("alarms-all", {"c": "e30"})}), lambda_context)
    # Then the answer names the cursor
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 422 and body["details"][0]["path"] == "cursor"
