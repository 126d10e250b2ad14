"""Whatever query string a client sends, the query API answers 200 or a 4xx with a JSON error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gasmon.adapters.sqlite_store import SqliteReadingStore
from tests.conftest import FakeLambdaContext, rest_event

STORE = SqliteReadingStore(":memory:")
PARAMETERS = {
    "/series": ["gas", "start", "end", "interval", "groupid", "sensorid", "deviceid"],
    "/devices": ["limit", "cursor", "groupid"],
    "/warnings": ["since", "gas", "groupid", "limit", "cursor"],
    "/alerts": ["since", "limit", "cursor"],
    "/alarms": ["state", "since", "until", "device", "gas", "limit", "cursor"],
}
TIMES = {"start", "end", "since", "until"}
values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["0", "-1", "1e9", "nan", "0s", "1s", "auto", "no2", "open", "AAAA", "%%%"]),
)
times = st.one_of(
    st.text(max_size=30),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "2026-01-01T00:00:00Z", "2026-01-01"]),
)


@pytest.fixture(scope="module")
def query_handler() -> Any:
    from gasmon_local.functions import load_handler

    return load_handler("functions/query_readings")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), path=st.sampled_from(sorted(PARAMETERS)))
def test_any_query_gets_200_or_a_4xx(query_handler: Any, data: st.DataObject, path: str) -> None:
    names = data.draw(st.lists(st.sampled_from(PARAMETERS[path]), unique=True, max_size=4))
    query = {name: data.draw(times if name in TIMES else values) for name in names}
    reply = query_handler(rest_event("GET", path, query), FakeLambdaContext(), queries=STORE)
    body = json.loads(reply["body"])
    assert reply["statusCode"] == 200 or 400 <= reply["statusCode"] < 500, (path, query, body)
    if reply["statusCode"] != 200:
        assert body["error"] and body["code"]
