"""AWS IoT SQL as the local rules engine evaluates it (gasmon_local.iot_sql)."""

import json
import re
from typing import Any

import pytest

from gasmon_local.iot_sql import IotQuery, IotSqlError, MessageContext, substitute, topic_matches

CONTEXT = MessageContext(topic="my/things/rpi-7/update", client_id="rpi-7", timestamp_ms=1_700_000_000_123)


def run(sql: str, payload: Any, context: MessageContext = CONTEXT) -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return IotQuery(sql).apply(raw, context)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("my/things/+/update", "my/things/rpi-1/update", True),
        ("my/things/+/update", "my/things/rpi-1/other", False),
        ("my/things/+/update", "my/things/update", False),
        ("sensors/#", "sensors", True),
        ("sensors/#", "sensors/a/b/c", True),
        ("$aws/events/presence/+/+", "$aws/events/presence/disconnected/rpi-1", True),
        ("#", "$aws/events/presence/connected/rpi-1", False),
        ("+/events/presence/+/+", "$aws/events/presence/connected/rpi-1", False),
        ("pi/1", "pi/1", True),
        ("pi/1", "pi/10", False),
    ],
)
def test_topic_filters_match_like_mqtt(topic_filter: str, topic: str, matches: bool) -> None:
    # Given a rule's FROM filter, When a message arrives on a topic, Then it matches as MQTT says
    assert topic_matches(topic_filter, topic) is matches


def test_select_star_returns_the_whole_payload() -> None:
    # Given the seed's Last Will payload, When selected with *, Then it comes back unchanged
    payload = {"state": {"reported": {"connected": "false"}}}
    assert run("SELECT * FROM 'my/things/+/update'", payload) == payload


def test_nested_field_without_alias_is_named_by_its_last_part() -> None:
    # Given a nested field selected without an alias, Then the output key is its last part
    assert run("SELECT state.reported.connected FROM 'a'", {"state": {"reported": {"connected": "false"}}}) == {
        "connected": "false"
    }


def test_aliases_functions_and_star_combine() -> None:
    # Given * plus functions with aliases, When evaluated, Then the payload gains the computed fields
    result = run(
        "SELECT *, topic(3) AS thing, clientid() AS cid, timestamp() AS ts FROM 'my/things/+/update'",
        {"a": 1},
    )
    assert result == {"a": 1, "thing": "rpi-7", "cid": "rpi-7", "ts": 1_700_000_000_123}


def test_a_missing_field_is_left_out_of_the_result() -> None:
    # Given a selected field the payload lacks, Then it is undefined and not in the output
    assert run("SELECT a, b AS bee FROM 't'", {"a": 1}) == {"a": 1}


def test_deep_fields_and_array_indexes() -> None:
    payload = {"a": {"b": {"c": {"d": {"e": 5}}}}, "items": [10, 20, 30]}
    assert run("SELECT a.b.c.d.e AS deep, items[1] AS second, items[9] AS gone FROM 't'", payload) == {
        "deep": 5,
        "second": 20,
    }


@pytest.mark.parametrize(
    ("where", "payload", "passes"),
    [
        ("clientInitiatedDisconnect = false", {"clientInitiatedDisconnect": False}, True),
        ("clientInitiatedDisconnect = false", {"clientInitiatedDisconnect": True}, False),
        ("clientInitiatedDisconnect = false", {}, False),
        ("disconnectReason <> 'CLIENT_INITIATED_DISCONNECT'", {"disconnectReason": "CONNECTION_LOST"}, True),
        ("no2.value >= 88", {"no2": {"value": 88}}, True),
        ("no2.value >= 88", {"no2": {"value": 87.9}}, False),
        ("no2.value >= 88", {"no2": {"value": "95"}}, False),  # a string is not a number: undefined
        ("value = '1'", {"value": 1}, False),  # different types: undefined
        ("a = 1 AND b = 2", {"a": 1, "b": 2}, True),
        ("a = 1 AND b = 2", {"a": 1, "b": 3}, False),
        ("a = 1 OR b = 2", {"a": 0, "b": 2}, True),
        ("a = 1 OR missing = 2", {"a": 1}, True),
        ("NOT (a = 1)", {"a": 2}, True),
        ("NOT (missing = 1)", {}, False),  # NOT undefined is undefined
        ("(a + 1) * 2 = 6", {"a": 2}, True),
        ("name = 'rpi-7'", {"name": "rpi-7"}, True),
        ("x IS NULL", {"x": None}, True),
        ("x IS NOT NULL", {"x": 1}, True),
        ("x IS NULL", {"x": 1}, False),
        ("lower(kind) = 'warning'", {"kind": "WARNING"}, True),
        ("isUndefined(gone)", {}, True),
    ],
)
def test_where_clause(where: str, payload: dict[str, Any], passes: bool) -> None:
    # Given a WHERE clause, Then the rule fires only when it is true
    result = run(f"SELECT * FROM 't' WHERE {where}", payload)
    assert (result is not None) is passes


def test_newuuid_is_a_fresh_uuid_each_time() -> None:
    query = IotQuery("SELECT newuuid() AS id FROM 't'")
    first, second = (query.apply(b"{}", CONTEXT) for _ in range(2))
    assert isinstance(first, dict) and isinstance(second, dict)
    assert re.fullmatch(r"[0-9a-f-]{36}", first["id"]) and first["id"] != second["id"]


def test_topic_without_argument_is_the_whole_topic_and_out_of_range_is_undefined() -> None:
    assert run("SELECT topic() AS t, topic(9) AS gone FROM 't'", {}) == {"t": "my/things/rpi-7/update"}


def test_a_binary_payload_passes_through_select_star() -> None:
    # Given a payload that is not JSON, When the rule is SELECT *, Then AWS passes the bytes on
    assert run("SELECT * FROM 't'", b"\x00\x01raw") == b"\x00\x01raw"


def test_fields_of_a_binary_payload_are_undefined() -> None:
    assert run("SELECT a, topic(1) AS first FROM 't'", b"not json") == {"first": "my"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t",  # the topic must be quoted
        "SELECT * FROM 'a' GROUP BY b",
        "SELECT md5(a) FROM 'a'",
        "DELETE FROM 'a'",
        "SELECT * FROM",
    ],
)
def test_sql_outside_the_supported_subset_is_refused_at_load(sql: str) -> None:
    # Given SQL this evaluator cannot run faithfully, When the rule is loaded, Then it is refused
    with pytest.raises(IotSqlError):
        IotQuery(sql)


def test_the_from_filter_is_exposed() -> None:
    assert IotQuery("SELECT * FROM '$aws/events/presence/+/+'").topic_filter == "$aws/events/presence/+/+"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$$aws/things/${topic(3)}/shadow/update", "$aws/things/rpi-7/shadow/update"),
        ("alerts/${clientid()}", "alerts/rpi-7"),
        ("alerts/${state.reported.connected}", "alerts/false"),
        ("alerts/${missing}/x", "alerts//x"),
        ("plain/topic", "plain/topic"),
    ],
)
def test_substitution_templates(template: str, expected: str) -> None:
    # Given a Republish topic template, Then ${expr} is evaluated and $$ stands for $
    assert substitute(template, {"state": {"reported": {"connected": "false"}}}, CONTEXT) == expected


def test_an_unclosed_substitution_is_an_error() -> None:
    with pytest.raises(IotSqlError):
        substitute("a/${topic(1)", {}, CONTEXT)


@pytest.mark.parametrize(
    ("expression", "payload", "expected"),
    [
        ("cast(n AS String)", {"n": 5}, "5"),
        ("cast(flag AS String)", {"flag": True}, "true"),
        ("cast(v AS Int)", {"v": "88.7"}, 88),
        ("cast(v AS Decimal)", {"v": "88.5"}, 88.5),
        ("cast(b AS Boolean)", {"b": "FALSE"}, False),
    ],
)
def test_cast(expression: str, payload: dict[str, Any], expected: Any) -> None:
    assert run(f"SELECT {expression} AS out FROM 't'", payload) == {"out": expected}


def test_a_cast_that_cannot_convert_is_undefined() -> None:
    assert run("SELECT cast(v AS Int) AS out FROM 't'", {"v": "n/a"}) == {}
