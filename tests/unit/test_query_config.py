"""GET /config: what the dashboard labels and lines its charts with, from the query function's settings."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from gasmon.adapters.presence_status import NullDeviceStatusSource
from gasmon.settings import QuerySettings
from gasmon_local.functions import load_function_module
from tests.conftest import FakeLambdaContext, rest_event
from tests.unit.test_query_bounds import Calls, EndlessAlarms, EndlessQueries

module = load_function_module("functions/query_readings")


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """The handler reads its settings once per cold start: each test starts cold, and leaves cold."""
    module._settings.cache_clear()
    module._policy.cache_clear()
    yield
    module._settings.cache_clear()
    module._policy.cache_clear()


def get_config(with_alarms: bool) -> tuple[int, dict[str, Any], dict[str, int]]:
    calls = Calls()
    reply = module.lambda_handler(
        rest_event("GET", "/config"),
        FakeLambdaContext(),
        queries=EndlessQueries(calls),
        presence=NullDeviceStatusSource(),
        alarm_store=EndlessAlarms(calls) if with_alarms else None,
    )
    return reply["statusCode"], json.loads(reply["body"]), calls.counts


def test_the_deployment_zone_units_and_both_levels_with_an_alarm_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a deployment in Europe/Berlin whose CO critical level and NO2 unit were changed
    monkeypatch.setenv("LOCAL_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("CRITICAL_THRESHOLDS", '{"co": 150}')
    monkeypatch.setenv("UNITS", '{"NO2": "ppm"}')
    monkeypatch.delenv("THRESHOLDS", raising=False)

    # When the dashboard asks for its configuration
    status, body, calls = get_config(with_alarms=True)

    # Then it gets the zone, each gas's unit and its warning and critical levels, without a store call
    assert status == 200 and calls == {}
    assert body["local_timezone"] == "Europe/Berlin"
    assert body["alarms"] is True
    assert body["gases"]["co"] == {"unit": "ppm", "warning": 35.0, "critical": 150.0}
    assert body["gases"]["no2"] == {"unit": "ppm", "warning": 88.0, "critical": 1000.0}
    assert body["gases"]["h2"] == {"unit": "ppm", "warning": 4000.0, "critical": 8000.0}


def test_without_an_alarm_table_there_is_no_critical_line_and_no2_is_in_ppb(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the defaults (Asia/Seoul) and no alarm table: nothing escalates to critical
    for name in ("LOCAL_TIMEZONE", "CRITICAL_THRESHOLDS", "UNITS", "THRESHOLDS"):
        monkeypatch.delenv(name, raising=False)

    # When the dashboard asks for its configuration
    status, body, _ = get_config(with_alarms=False)

    # Then the warning levels come with their units, and no critical level is given
    assert status == 200 and body["local_timezone"] == "Asia/Seoul" and body["alarms"] is False
    assert body["gases"]["no2"] == {"unit": "ppb", "warning": 88.0, "critical": None}
    assert body["gases"]["c2h5oh"] == {"unit": "ppm", "warning": 1000.0, "critical": None}


@pytest.mark.parametrize("units", ['{"co": ""}', '{"co": "<b>ppm</b>"}', '{"co": "parts per million, roughly"}'])
def test_a_unit_that_is_not_short_plain_text_is_refused_at_cold_start(units: str) -> None:
    # Given a UNITS setting the page could not show as a plain label
    # When the settings are read, Then they are refused, naming the gas
    with pytest.raises(ValueError, match="unit for co"):
        QuerySettings(units=json.loads(units))


def test_a_device_credential_cannot_read_the_configuration() -> None:
    # Given a request that carries a device's identity, not a viewer's
    event = rest_event("GET", "/config", authorizer={"role": "device", "name": "pi-1", "groupid": "2"})
    # When it asks for GET /config
    reply = module.lambda_handler(event, FakeLambdaContext(), presence=NullDeviceStatusSource(), alarm_store=None)
    # Then it is refused like every other query route
    assert reply["statusCode"] == 403 and json.loads(reply["body"])["code"] == "forbidden"
