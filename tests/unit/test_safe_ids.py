"""Ids are safe everywhere: one alphabet, checked once in the models, before any topic or key.

- a posted `groupid`, `deviceid`, `sensorid` or gas name outside the alphabet is a 422 naming it;
- the seed's documents stay valid;
- no posted document, whatever its ids, publishes outside the warning topic's prefix (a property
  test through the real ingest use case and alarms, with a recording publisher);
- `WarningTopic`'s AllowedPattern in template.yaml is the models' pattern and refuses reserved,
  wildcard and `..` topics; lifecycle events and query parameters use the same alphabet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cfnlint.decode import decode_str
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gasmon.adapters.presence_status import NullDeviceStatusSource
from gasmon.alarms import AlarmPolicy, Alarms
from gasmon.errors import InvalidReadingsError, MalformedEventError
from gasmon.ingest import IngestPolicy, ingest
from gasmon.models import SAFE_ID_PATTERN, WARNING_TOPIC_PATTERN, is_safe_id
from gasmon.presence import parse_lifecycle_event
from gasmon.readings import UnsafeIdError, warning_topic
from gasmon.settings import IngestSettings
from gasmon_local.functions import load_handler
from tests.conftest import ROOT, SEED_TIME, ingest_event
from tests.fakes import MemoryAlarmStore, MemoryPublisher, MemoryReadingStore

SAFE_ALPHABET = "ABCXYZabcxyz0189._:-"
HOSTILE_IDS = [
    "$aws/things/victim/shadow/delete",
    "pi/#",
    "+",
    "a/b",
    "..",
    ".",
    "",
    "x" * 65,
    "name with space",
    "tab\there",
    "caf\u00e9",
    "a#b",
    "{groupid}",
    "*",
    "a?b",
    "semi;colon",
]


def seed_like(
    groupid: str = "2", deviceid: str | None = None, sensorid: str = "co1", gas: str = "co"
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "groupid": groupid,
        "gps": "37.61002501514269, 126.99636868892937",
        gas: {"sensorid": sensorid, "sensortype": "9", "value": "26.20", "createdtime": "2021-09-03 18:14:49"},
    }
    if deviceid is not None:
        document["deviceid"] = deviceid
    return document


# ---- 422 naming the field ----


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
@pytest.mark.parametrize("field", ["groupid", "deviceid", "co.sensorid"])
def test_an_unsafe_id_is_a_422_naming_its_field(
    ingest_handler: Callable[..., dict[str, Any]], lambda_context: Any, field: str, hostile: str
) -> None:
    # Given the seed's document with one id replaced by something outside the safe alphabet
    document = seed_like()
    if field == "co.sensorid":
        document["co"]["sensorid"] = hostile
    else:
        document[field] = hostile
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    # When it is posted
    answer = ingest_handler(
        ingest_event(document), lambda_context, store=store, publisher=publisher, clock=lambda: SEED_TIME
    )
    # Then the answer is a 422 whose details name that field, and nothing was stored or published
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 422
    assert [d["path"] for d in body["details"]] == [field]
    assert store.readings == {} and publisher.messages == []


@pytest.mark.parametrize("gas", ["CO", "no 2", "$aws", "no2/x", "c2h5oh#", "a" * 33, "_co", "co.x"])
def test_an_unsafe_gas_name_is_named_by_its_own_key(gas: str) -> None:
    # Given a document whose only gas key is not a gas name
    document = seed_like(gas=gas)
    # When it is ingested
    with pytest.raises(InvalidReadingsError) as error:
        ingest([document], False, IngestPolicy(), SEED_TIME, MemoryReadingStore(), MemoryPublisher())
    # Then the problem's path is that key, and it says what a gas name is
    assert [(p.path, p.problem.split(" (")[0]) for p in error.value.details] == [(gas, "is not a gas name")]


@pytest.mark.parametrize(
    ("groupid", "deviceid", "sensorid", "gas"),
    [("2", None, "co1", "co"), ("2", "RPI", "0006", "no2"), ("site-7.b", "rpi:42_x", "c2h5oh-1", "c2h5oh")],
)
def test_seed_shaped_documents_stay_valid(groupid: str, deviceid: str | None, sensorid: str, gas: str) -> None:
    # Given documents like the seed's (groupid "2", sensor ids like "co1") and safe variations
    store = MemoryReadingStore()
    # When one is ingested
    report = ingest(
        [seed_like(groupid, deviceid, sensorid, gas)], False, IngestPolicy(), SEED_TIME, store, MemoryPublisher()
    )
    # Then it is accepted
    assert report.response.accepted == 1


def test_the_seed_document_itself_is_accepted(seed_document: dict[str, Any]) -> None:
    report = ingest([seed_document], False, IngestPolicy(), SEED_TIME, MemoryReadingStore(), MemoryPublisher())
    assert report.response.accepted == 4


# ---- No posted document publishes outside the warning topic's prefix ----

TEMPLATES = ["pi/1", "gasmon/{groupid}/warnings", "{groupid}", "alerts/site-{groupid}", "a/{groupid}/b/{groupid}"]
any_text = st.text(st.characters(codec="utf-8"), max_size=80)
ids = st.one_of(
    st.text(SAFE_ALPHABET, min_size=1, max_size=64),
    st.sampled_from(HOSTILE_IDS),
    any_text,
    st.text(SAFE_ALPHABET + "/#+$*{}", min_size=1, max_size=70),
)
gases = st.one_of(st.sampled_from(["co", "no2", "c2h5oh", "h2"]), any_text, st.text("no2#+/$.", min_size=1))
values = st.sampled_from(["1", "88", "90", "1000", "5000"])


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {"groupid": draw(ids)}
    if draw(st.booleans()):
        document["deviceid"] = draw(ids)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        document[draw(gases)] = {
            "sensorid": draw(ids),
            "sensortype": "9",
            "value": draw(values),
            "createdtime": "2021-09-03 18:14:49",
        }
    return document


def topic_shape(template: str) -> re.Pattern[str]:
    """What a topic built from `template` may be: the template, each `{groupid}` one safe id."""
    parts = [re.escape(part) for part in template.split("{groupid}")]
    return re.compile(r"[A-Za-z0-9._:-]{1,64}".join(parts))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    template=st.sampled_from(TEMPLATES),
    batch=st.lists(documents(), min_size=1, max_size=4),
    with_alarms=st.booleans(),
    status_messages=st.booleans(),
)
def test_no_posted_document_publishes_outside_the_warning_topic(
    template: str, batch: list[dict[str, Any]], with_alarms: bool, status_messages: bool
) -> None:
    # Given the real ingest use case (alarms with memory or plain warnings), any warning template
    policy = IngestPolicy(warning_topic=template, publish_status_messages=status_messages)
    publisher = MemoryPublisher()
    alarms = Alarms(MemoryAlarmStore(), AlarmPolicy(clear_after=timedelta(0))) if with_alarms else None  # type: ignore[arg-type]
    # When a batch of documents with arbitrary ids and gas names is posted
    try:
        ingest(batch, True, policy, SEED_TIME, MemoryReadingStore(), publisher, alarms)
    except InvalidReadingsError:
        pass  # every document refused: a 422, nothing published
    # Then every message went to a topic of the template's shape, `{groupid}` a safe id
    shape = topic_shape(template)
    for topic, _, _ in publisher.messages:
        assert shape.fullmatch(topic), topic
        assert not set(topic) & set("#+$*\0") and "//" not in topic, topic


def test_the_property_sees_warnings_at_all() -> None:
    # Given an over-level reading from a safe group and a per-group template (the property's happy path)
    publisher = MemoryPublisher()
    document = seed_like(groupid="site-7", gas="no2") | {}
    document["no2"]["value"] = "90"
    # When it is ingested
    ingest(
        [document],
        False,
        IngestPolicy(warning_topic="gasmon/{groupid}/warnings"),
        SEED_TIME,
        MemoryReadingStore(),
        publisher,
    )
    # Then the warning is on that group's topic
    assert [topic for topic, _, _ in publisher.messages] == ["gasmon/site-7/warnings"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_a_topic_is_never_built_from_an_unsafe_id(hostile: str) -> None:
    # Given a per-group template, When an unsafe id is put into it, Then it is refused
    with pytest.raises(UnsafeIdError):
        warning_topic("gasmon/{groupid}/warnings", hostile)
    assert not is_safe_id(hostile)


def test_a_fixed_topic_needs_no_id() -> None:
    assert warning_topic("pi/1", "") == "pi/1"


# ---- The template's WarningTopic and the settings ----


def warning_topic_parameter() -> dict[str, Any]:
    template, problems = decode_str((ROOT / "template.yaml").read_text())
    assert not problems
    parameter: dict[str, Any] = template["Parameters"]["WarningTopic"]
    return parameter


def test_the_template_admits_exactly_the_models_warning_topics() -> None:
    # Given template.yaml's WarningTopic parameter
    parameter = warning_topic_parameter()
    # Then its AllowedPattern is the pattern settings check, and its default passes it
    assert parameter["AllowedPattern"] == WARNING_TOPIC_PATTERN
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])


@pytest.mark.parametrize(
    "topic", ["pi/1", "gasmon/{groupid}/warnings", "{groupid}", "site-{groupid}/gas_warnings", "a:b/c.d/e-f"]
)
def test_safe_warning_topics_are_allowed(topic: str) -> None:
    assert re.fullmatch(warning_topic_parameter()["AllowedPattern"], topic)
    assert IngestSettings(warning_topic=topic).warning_topic == topic


@pytest.mark.parametrize(
    "topic",
    [
        "$aws/things/victim/shadow/delete",
        "$aws/things/{groupid}/shadow/delete",
        "pi/#",
        "pi/+/warnings",
        "#",
        "pi/../x",
        "../pi",
        "pi/./x",
        "pi//x",
        "/pi",
        "pi/",
        "",
        "pi/{group}",
        "pi 1",
        "a/b/c/d/e/f/g/h",
    ],
)
def test_unsafe_warning_topics_are_refused_by_template_and_settings(topic: str) -> None:
    assert not re.fullmatch(warning_topic_parameter()["AllowedPattern"], topic)
    with pytest.raises(ValidationError):
        IngestSettings(warning_topic=topic)


# ---- Presence and the query API use the same alphabet ----


@pytest.mark.parametrize("client_id", ["alert#RPI#0001", "amqtt/abc", "$aws", "a b", "..", "x" * 129])
def test_a_lifecycle_event_from_an_unsafe_client_id_is_dropped_as_malformed(client_id: str) -> None:
    # Given a lifecycle event whose client id could pose as another key of the presence table
    event = {"clientId": client_id, "timestamp": 1_700_000_000_000, "eventType": "disconnected"}
    # When it is parsed, Then it is malformed, naming clientId
    with pytest.raises(MalformedEventError) as error:
        parse_lifecycle_event(event)
    assert [p.path for p in error.value.details] == ["clientId"]


def test_a_thing_name_from_aws_iot_is_a_safe_client_id() -> None:
    event = {"clientId": "RPI", "thingName": "rpi-42:lab_1", "timestamp": 1, "eventType": "connected"}
    assert parse_lifecycle_event(event).device_name == "rpi-42:lab_1"


query_handler = load_handler("functions/query_readings")


class NoReadings:
    def bucket_stats(self, query: Any) -> list[Any]:
        return []

    def latest_by_device(self, after: Any, limit: int, groupid: Any = None) -> list[Any]:
        return []

    def readings_at_or_above(
        self, thresholds: Any, since: Any, limit: int, before: Any = None, groupid: Any = None
    ) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/series", {"gas": "no2", "groupid": "a/b"}),
        ("/series", {"gas": "no2", "sensorid": "$aws"}),
        ("/series", {"gas": "no2", "deviceid": ".."}),
        ("/devices", {"groupid": "pi/#"}),
        ("/warnings", {"groupid": "a b"}),
        ("/alarms", {"device": "x*"}),
    ],
)
def test_a_query_id_outside_the_alphabet_is_a_422_naming_it(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any, path: str, query: dict[str, str]
) -> None:
    # Given a query whose id parameter is outside the safe alphabet
    (field,) = set(query) - {"gas"}
    # When it is asked
    answer = query_handler(
        api_event("GET", path, query),
        lambda_context,
        queries=NoReadings(),
        presence=NullDeviceStatusSource(),
        alarm_store=MemoryAlarmStore(),
    )
    # Then it is a 422 naming that parameter, saying what is allowed
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 422
    assert [(d["path"], d["problem"].split(" (")[0]) for d in body["details"]] == [
        (field, "may hold only letters, digits and . _ : -")
    ]


def test_the_safe_id_pattern_is_the_documented_alphabet() -> None:
    # Every character outside `A-Za-z0-9._:-` is refused, and dots alone are not an id
    for code in range(0x250):
        char = chr(code)
        assert is_safe_id(char * 2) == (char.isascii() and (char.isalnum() or char in "_:-")), repr(char)
    assert is_safe_id("a" * 64) and not is_safe_id("a" * 65)
    assert re.fullmatch(SAFE_ID_PATTERN, "2") and is_safe_id(".a") and not is_safe_id("...")
