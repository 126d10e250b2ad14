"""GET /alarms: alarm episodes through the query handler, with an in-memory alarm store."""

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gasmon.adapters.presence_status import NullDeviceStatusSource
from gasmon.models import AlarmEpisode
from gasmon.query import _alarm_scope, encode_cursor
from gasmon_local.functions import load_function_module, load_handler
from tests.fakes import MemoryAlarmStore
from tests.unit.test_query_handler import EmptyStore

SCOPE = _alarm_scope(None, None)  # the digest of a query without device or gas filters

handler = load_handler("functions/query_readings")
NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def episode(
    name: str,
    started: datetime,
    ended: datetime | None = None,
    device: str = "pi-1",
    gas: str = "no2",
    level: str = "warning",
    peak: float = 95.5,
) -> AlarmEpisode:
    return AlarmEpisode(
        alarm_id=name,
        device=device,
        groupid="2",
        gas=gas,
        sensorid="0006",
        level=level,
        threshold=88.0,
        critical=1000.0,
        started_at=started,
        ended_at=ended,
        peak=peak,
        peak_at=started + timedelta(seconds=30),
    )


@pytest.fixture
def alarms() -> MemoryAlarmStore:
    return MemoryAlarmStore()


@pytest.fixture
def get(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any, alarms: MemoryAlarmStore
) -> Callable[..., tuple[int, dict[str, Any], dict[str, Any]]]:
    def call(query: dict[str, str] | None = None, store: Any = alarms) -> tuple[int, dict[str, Any], dict[str, Any]]:
        result = handler(
            api_event("GET", "/alarms", query),
            lambda_context,
            queries=EmptyStore(),
            presence=NullDeviceStatusSource(),
            clock=lambda: NOW,
            alarm_store=store,
        )
        return result["statusCode"], json.loads(result["body"]), result

    return call


@pytest.fixture
def no_alarm_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = load_function_module("functions/query_readings")
    monkeypatch.delenv("ALARM_TABLE", raising=False)
    module._settings.cache_clear()
    module._alarm_store.cache_clear()
    yield
    module._settings.cache_clear()
    module._alarm_store.cache_clear()


def ids(body: dict[str, Any]) -> list[str]:
    return [a["alarm_id"] for a in body["alarms"]]


# ---- not configured ----


def test_without_an_alarm_table_the_answer_says_so_and_lists_nothing(
    no_alarm_table: None, api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    # Given a query function deployed with ALARM_TABLE empty (and no store handed in)
    # When the dashboard asks for alarms
    result = handler(
        api_event("GET", "/alarms", {"state": "open"}),
        lambda_context,
        queries=EmptyStore(),
        presence=NullDeviceStatusSource(),
        clock=lambda: NOW,
    )
    # Then it gets an empty list that says alarms are not configured (so it shows threshold warnings)
    body = json.loads(result["body"])
    assert result["statusCode"] == 200
    assert body["alarms"] == [] and body["configured"] is False and body["next_cursor"] is None


# ---- validation ----


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"state": "cleared"}, "state", "'open', 'closed' or 'all'"),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": "201"}, "limit", "less than or equal to 200"),
        ({"limit": "many"}, "limit", "integer"),
        ({"since": "last tuesday"}, "since", "datetime"),
        ({"until": "later"}, "until", "datetime"),
        ({"since": "2025-03-14T08:00:00Z", "until": "2025-03-14T07:00:00Z"}, "until", "after since"),
        ({"gas": "NO2"}, "gas", "lower case"),
        ({"device": "x" * 65}, "device", "at most 64 characters"),
        ({"cursor": "not-a-cursor"}, "cursor", "next_cursor"),
        # a cursor of another list, and one of another state of this list
        ({"cursor": encode_cursor("w", {"t": 1, "id": "r"})}, "cursor", "next_cursor"),
        ({"state": "closed", "cursor": encode_cursor("alarms-open", {"t": 1, "id": "a"})}, "cursor", "next_cursor"),
        # signed, for this query, but the store does not recognise what is inside
        ({"cursor": encode_cursor("alarms-all", {"c": "forged", "s": 0, "u": 1, "q": SCOPE})}, "cursor", "start again"),
        ({"state": "open", "cursor": encode_cursor("alarms-open", {"t": "soon", "q": SCOPE})}, "cursor", "next_cursor"),
        (
            {"cursor": encode_cursor("alarms-all", {"c": "mem:1", "s": "x", "u": 1, "q": SCOPE})},
            "cursor",
            "next_cursor",
        ),
        # signed, but for a query with other filters
        (
            {"gas": "co", "cursor": encode_cursor("alarms-all", {"c": "mem:1", "s": 0, "u": 1, "q": SCOPE})},
            "cursor",
            "other filters",
        ),
        # years the alarm table could only be searched month by month: a 422, not minutes of queries
        ({"since": "0096-12-27T00:00:00Z"}, "since", "retention"),
        ({"state": "open", "since": "0001-01-01T00:00:00Z"}, "since", "retention"),
        ({"until": "9999-12-31T00:00:00Z"}, "until", "at or before"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]],
    alarms: MemoryAlarmStore,
    query: dict[str, str],
    field: str,
    words: str,
) -> None:
    alarms.add(episode("a1", NOW - timedelta(hours=1)))
    # When a query has one bad parameter
    status, body, _ = get(query)
    # Then the answer is gasmon's error body naming it and what would fit
    assert status == 422, body
    assert body["code"] == "invalid_query"
    assert [d["path"] for d in body["details"]] == [field]
    assert words in body["details"][0]["problem"]


def test_an_alarm_table_outage_is_a_503_with_retry_after(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], alarms: MemoryAlarmStore
) -> None:
    alarms.unavailable = True
    status, body, result = get({"state": "open"})
    assert status == 503 and body["code"] == "store_unavailable"
    assert "alarm history" in body["error"]
    headers = {
        **(result.get("headers") or {}),
        **{k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()},
    }
    assert headers["Retry-After"] == "5"


# ---- what is listed ----


def test_an_open_and_a_closed_episode_are_listed_newest_first_with_start_end_and_peak(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], alarms: MemoryAlarmStore
) -> None:
    # Given a closed warning from 3 h ago and a critical alarm open since 20 minutes ago
    closed_at = NOW - timedelta(hours=2, minutes=40)
    alarms.add(
        episode("old", NOW - timedelta(hours=3), ended=closed_at, peak=97),
        episode("now", NOW - timedelta(minutes=20), device="pi-2", level="critical", peak=1250),
    )
    # When the default query runs (state all, last 24 h)
    status, body, _ = get()
    # Then both are there, newest first, the open one without an end
    assert status == 200 and body["configured"] is True and body["state"] == "all"
    assert body["since"] == "2025-03-13T09:00:00Z"
    current, old = body["alarms"]
    assert (current["alarm_id"], current["state"], current["device"], current["level"]) == (
        "now",
        "open",
        "pi-2",
        "critical",
    )
    assert current["ended_at"] is None and current["peak"] == 1250
    assert (current["threshold"], current["critical"]) == (88, 1000)
    assert (old["alarm_id"], old["state"], old["level"], old["peak"]) == ("old", "closed", "warning", 97)
    assert (old["started_at"], old["ended_at"]) == ("2025-03-14T06:00:00Z", "2025-03-14T06:20:00Z")
    assert body["next_cursor"] is None


def test_open_lists_every_open_alarm_whenever_it_started_and_nothing_closed(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], alarms: MemoryAlarmStore
) -> None:
    # Given an alarm open for three days, one open for an hour, and one closed an hour ago
    alarms.add(
        episode("three-days", NOW - timedelta(days=3)),
        episode("an-hour", NOW - timedelta(hours=1), gas="co"),
        episode("closed", NOW - timedelta(hours=2), ended=NOW - timedelta(hours=1)),
    )
    # When the open alarms are asked for
    status, body, _ = get({"state": "open"})
    # Then both open alarms are listed, the old one too; `since` is not applied
    assert status == 200 and ids(body) == ["an-hour", "three-days"]
    assert body["since"] is None
    # And an explicit since limits them to those started after it
    assert ids(get({"state": "open", "since": "2025-03-13T00:00:00Z"})[1]) == ["an-hour"]
    # And a gas filter applies
    assert ids(get({"state": "open", "gas": "no2"})[1]) == ["three-days"]


def test_closed_and_all_list_only_episodes_started_in_the_range(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], alarms: MemoryAlarmStore
) -> None:
    # Given episodes that started 30 h and 2 h ago (both closed) and 1 h ago (open)
    alarms.add(
        episode("30h", NOW - timedelta(hours=30), ended=NOW - timedelta(hours=29)),
        episode("2h", NOW - timedelta(hours=2), ended=NOW - timedelta(minutes=90)),
        episode("1h", NOW - timedelta(hours=1)),
    )
    # Then the last 24 h (default) hold 2h and 1h; closed leaves out the open one
    assert ids(get()[1]) == ["1h", "2h"]
    assert ids(get({"state": "closed"})[1]) == ["2h"]
    # And a longer range reaches back to 30h, an `until` cuts the newer ones
    assert ids(get({"state": "closed", "since": "2025-03-13T00:00:00Z"})[1]) == ["2h", "30h"]
    assert ids(get({"since": "2025-03-13T00:00:00Z", "until": "2025-03-14T06:30:00Z"})[1]) == ["30h"]
    # And a device filter that matches nothing lists nothing
    assert get({"device": "pi-9"})[1]["alarms"] == []


# ---- paging ----


def pages(get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], query: dict[str, str]) -> list[list[str]]:
    found: list[list[str]] = []
    cursor = None
    for _ in range(10):
        status, body, _ = get({**query, **({"cursor": cursor} if cursor else {})})
        assert status == 200, body
        found.append(ids(body))
        cursor = body["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError(f"paging did not end: {found}")


def test_all_pages_through_every_episode_once_newest_first(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], alarms: MemoryAlarmStore
) -> None:
    # Given five episodes an hour apart (e5 the newest, still open)
    for i in range(1, 6):
        started = NOW - timedelta(hours=6 - i)
        alarms.add(episode(f"e{i}", started, ended=None if i == 5 else started + timedelta(minutes=10)))
    # When they are read two at a time
    # Then every episode comes once, newest first, and the last page ends the list
    assert pages(get, {"limit": "2"}) == [["e5", "e4"], ["e3", "e2"], ["e1"]]


def test_closed_fills_its_page_past_open_episodes_and_continues_where_it_stopped(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], alarms: MemoryAlarmStore
) -> None:
    # Given, newest first: open, closed, open, closed, closed (different devices)
    states = ["open", "closed", "open", "closed", "closed"]
    for i, state in enumerate(states):
        started = NOW - timedelta(hours=i + 1)
        ended = None if state == "open" else started + timedelta(minutes=5)
        alarms.add(episode(f"c{i}", started, ended=ended, device=f"pi-{i}"))
    # When closed ones are read two at a time
    # Then each page holds two closed episodes although the store's first page held one
    assert pages(get, {"state": "closed", "limit": "2"}) == [["c1", "c3"], ["c4"]]
    # And the store was never asked for more than the page had room for
    assert max(alarms.list_calls) <= 2


def test_open_pages_too(
    get: Callable[..., tuple[int, dict[str, Any], dict[str, Any]]], alarms: MemoryAlarmStore
) -> None:
    for i in range(3):
        alarms.add(episode(f"o{i}", NOW - timedelta(days=i + 1), device=f"pi-{i}"))
    assert pages(get, {"state": "open", "limit": "2"}) == [["o0", "o1"], ["o2"]]


def test_a_cursor_keeps_the_range_it_was_given_for_as_the_clock_moves(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any, alarms: MemoryAlarmStore
) -> None:
    # Given five episodes in the last 24 h, the oldest 23 h ago
    alarms.add(*(episode(f"a{n}", NOW - timedelta(hours=23 - n)) for n in range(5)))

    def at(moment: datetime, query: dict[str, str]) -> dict[str, Any]:
        result = handler(
            api_event("GET", "/alarms", query),
            lambda_context,
            queries=EmptyStore(),
            presence=NullDeviceStatusSource(),
            clock=lambda: moment,
            alarm_store=alarms,
        )
        assert result["statusCode"] == 200, result["body"]
        return dict(json.loads(result["body"]))

    # When the default (last 24 h) is paged three at a time, the second page two hours later
    first = at(NOW, {"limit": "3"})
    second = at(NOW + timedelta(hours=2), {"limit": "3", "cursor": first["next_cursor"]})
    # Then the second page continues the first query's range: the oldest episode is still listed
    assert [a["alarm_id"] for a in first["alarms"] + second["alarms"]] == ["a4", "a3", "a2", "a1", "a0"]
