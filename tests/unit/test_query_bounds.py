"""Every query route does a fixed maximum of store calls per request, whatever its parameters.

Counting fakes stand in for the reading store, presence and the alarm table; each answers as much
as it is asked for and always has more (a cursor on every page), which is the worst case for a
route that reads on to fill its page. Hypothesis draws parameters, valid and not, including the
cursors the previous answer gave out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gasmon.models import AlarmEpisode, AlarmPage, BucketStats, DeviceLatest, GasValue, Reading, SeriesQuery
from gasmon.ports import AlarmKey, AlarmSnapshot, ThresholdScope
from gasmon.query import MAX_ALARM_STORE_PAGES
from gasmon.query_models import DeviceStatus, DisconnectAlert
from gasmon_local.functions import load_handler
from tests.conftest import FakeLambdaContext, rest_event

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
handler = load_handler("functions/query_readings")

# The bound each route is held to: calls into each port per request.
BOUNDS = {
    "/series": {"queries": 1},
    "/devices": {"queries": 1, "presence": 1},
    "/warnings": {"queries": 1},
    "/alerts": {"presence": 1},
    "/alarms": {"alarms": MAX_ALARM_STORE_PAGES},
    "/config": {},  # settings only
}


class Calls:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, port: str) -> None:
        self.counts[port] = self.counts.get(port, 0) + 1


class EndlessQueries:
    """A `ReadingQueries` with more of everything than any page can hold."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def bucket_stats(self, query: SeriesQuery) -> list[BucketStats]:
        self.calls.count("queries")
        return [BucketStats(start=query.start, count=3, avg=2, min=1, max=3)]

    def latest_by_device(self, after: str | None, limit: int, groupid: str | None = None) -> list[DeviceLatest]:
        self.calls.count("queries")
        value = GasValue(value=90, at=NOW, sensorid="0006", createdtime="x")
        start = int(after[3:]) + 1 if after and after.startswith("pi-") and after[3:].isdigit() else 0
        return [
            DeviceLatest(device=f"pi-{n:06d}", groupid="2", last_seen=NOW, values={"no2": value})
            for n in range(start, start + limit)
        ]

    def readings_at_or_above(
        self,
        thresholds: Mapping[str, float],
        since: datetime,
        limit: int,
        before: tuple[datetime, str] | None = None,
        groupid: str | None = None,
    ) -> list[Reading]:
        self.calls.count("queries")
        at = before[0] - timedelta(seconds=1) if before else NOW
        return [
            Reading(
                reading_id=f"r{n}",
                groupid="2",
                gas=next(iter(thresholds)),
                sensorid="0006",
                sensortype="9",
                value=9999,
                createdtime="x",
                created_at=at - timedelta(seconds=n),
                received_at=at,
            )  # fmt: skip
            for n in range(limit)
        ]


class EndlessPresence:
    """A `DeviceStatusSource` with more alerts than any page holds."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    @property
    def configured(self) -> bool:
        return True

    def statuses(self) -> Mapping[str, DeviceStatus]:
        self.calls.count("presence")
        return {"pi-000001": DeviceStatus(client_id="pi-000001", state="online")}

    def recent_alerts(
        self, since: datetime, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[DisconnectAlert]:
        self.calls.count("presence")
        at = before[0] - timedelta(seconds=1) if before else NOW
        return [DisconnectAlert(client_id=f"pi-{n}", disconnected_at=at - timedelta(seconds=n)) for n in range(limit)]


class EndlessAlarms:
    """An `AlarmStateStore` whose every history page is open episodes with a cursor: `closed` never fills."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def load(self, keys: Sequence[AlarmKey], scopes: Sequence[ThresholdScope] = ()) -> AlarmSnapshot:
        raise AssertionError("queries never load alarm state")

    def save(self, state: Any, episodes: Sequence[AlarmEpisode] = ()) -> Any:
        raise AssertionError("queries never write")

    def _episodes(self, count: int) -> list[AlarmEpisode]:
        return [
            AlarmEpisode(
                alarm_id=f"a{n}",
                device="pi-1",
                groupid="2",
                gas="no2",
                sensorid="0006",
                level="warning",
                threshold=88,
                started_at=NOW - timedelta(minutes=n),
                peak=90,
                peak_at=NOW,
            )  # fmt: skip
            for n in range(count)
        ]

    def list_alarms(
        self,
        since: datetime,
        until: datetime | None = None,
        device: str | None = None,
        gas: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AlarmPage:
        self.calls.count("alarms")
        return AlarmPage(items=self._episodes(limit), next_cursor="more")

    def open_alarms(self, device: str | None = None, gas: str | None = None) -> list[AlarmEpisode]:
        self.calls.count("alarms")
        return self._episodes(500)


def get(path: str, query: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, int]]:
    calls = Calls()
    reply = handler(
        rest_event("GET", path, query),
        FakeLambdaContext(),
        queries=EndlessQueries(calls),
        presence=EndlessPresence(calls),
        alarm_store=EndlessAlarms(calls),
        clock=lambda: NOW,
    )
    return reply["statusCode"], json.loads(reply["body"]), calls.counts


def moments() -> st.SearchStrategy[str]:
    return st.one_of(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()).map(
            datetime.isoformat
        ),
        st.integers(-200 * 24, 48).map(lambda hours: (NOW + timedelta(hours=hours)).isoformat()),
    )


PARAMETERS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "/series": {
        "start": moments(),
        "end": moments(),
        "interval": st.sampled_from(["auto", "1s", "10s", "1m", "5m", "1h", "1d", "99999d"]),
        "groupid": st.just("2"),
        "deviceid": st.just("pi-1"),
        "device": st.sampled_from(["pi-1", "7", "..", "a/b"]),
    },
    "/devices": {"limit": st.sampled_from(["1", "100", "500"]), "groupid": st.just("2")},
    "/warnings": {"since": moments(), "gas": st.sampled_from(["no2", "co", "h2"]), "limit": st.just("500")},
    "/alerts": {"since": moments(), "limit": st.sampled_from(["1", "200"])},
    "/alarms": {
        "state": st.sampled_from(["open", "closed", "all"]),
        "since": moments(),
        "until": moments(),
        "limit": st.sampled_from(["1", "200"]),
        "gas": st.just("no2"),
    },
    "/config": {},
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), path=st.sampled_from(sorted(PARAMETERS)))
def test_no_request_makes_more_store_calls_than_its_bound(data: st.DataObject, path: str) -> None:
    # Given any combination of a route's parameters
    names = data.draw(st.lists(st.sampled_from(sorted(PARAMETERS[path])), unique=True)) if PARAMETERS[path] else []
    query = {name: data.draw(PARAMETERS[path][name]) for name in names}
    if path == "/series":
        query["gas"] = "no2"
    # When it is asked, and then asked again for the next page with the cursor it gave
    for _ in range(2):
        status, body, counts = get(path, query)
        # Then it answers 200 or a 422 naming a parameter, and never calls a port more than its bound
        assert status == 200 or (status == 422 and body["details"]), (path, query, body)
        for port, count in counts.items():
            assert count <= BOUNDS[path].get(port, 0), (path, query, counts)
        if status != 200 or not body.get("next_cursor"):
            break
        query["cursor"] = body["next_cursor"]


def test_a_closed_history_that_never_fills_stops_at_the_bound_with_a_cursor() -> None:
    # Given an alarm table whose every page holds only open episodes (skipped by state=closed)
    # When closed alarms are asked for
    status, body, counts = get("/alarms", {"state": "closed"})
    # Then the page is empty but carries a cursor, after exactly the bound of store pages
    assert status == 200 and body["alarms"] == [] and body["next_cursor"]
    assert counts == {"alarms": MAX_ALARM_STORE_PAGES}


def test_alarms_since_the_year_96_is_a_422_before_any_store_call() -> None:
    status, body, counts = get("/alarms", {"since": "0096-12-27T00:00:00Z"})
    assert status == 422 and body["details"][0]["path"] == "since"
    assert counts == {}
