"""Validation of posted documents: every problem is named by its field path."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gasmon.errors import InvalidReadingsError, MalformedJsonError, RequestTooLargeError
from gasmon.ingest import IngestPolicy, parse_body, parse_device_time, validate_document, validate_documents
from gasmon.readings import reading_id
from tests.conftest import SEED_TIME

POLICY = IngestPolicy()


def problems(raw: Any, now: datetime = SEED_TIME) -> dict[str, str]:
    return {p.path: p.problem for p in validate_document(raw, 0, "", POLICY, now).problems}


def test_seed_document_yields_four_readings_with_seoul_time(seed_document: dict[str, Any]) -> None:
    # Given the seed's exact document, values as strings
    # When it is validated at the time it was taken
    result = validate_document(seed_document, 0, "", POLICY, SEED_TIME)
    # Then it has one reading per gas, times read as Asia/Seoul local time
    assert result.problems == []
    assert sorted(r.gas for r in result.readings) == ["c2h5oh", "co", "h2", "no2"]
    no2 = next(r for r in result.readings if r.gas == "no2")
    assert no2.value == 52.0 and no2.sensorid == "0006"
    assert no2.created_at == datetime(2021, 9, 3, 9, 14, 49, tzinfo=UTC)
    assert (no2.lat, no2.lon) == (37.61002501514269, 126.99636868892937)


def test_numbers_are_accepted_as_well_as_strings(seed_document: dict[str, Any]) -> None:
    # Given values and ids sent as JSON numbers
    seed_document["no2"].update(value=52, sensorid=6)
    seed_document["groupid"] = 2
    # When validated
    result = validate_document(seed_document, 0, "", POLICY, SEED_TIME)
    # Then they are read as the same reading
    no2 = next(r for r in result.readings if r.gas == "no2")
    assert (no2.value, no2.sensorid, no2.groupid) == (52.0, "6", "2")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("NaN", "must be a finite number (NaN and Infinity are not readings)"),
        (float("inf"), "must be a finite number (NaN and Infinity are not readings)"),
        ("-0.5", "must not be negative"),
        ("high", "must be a number (for example 26.20)"),
        (True, "must be a number, not a boolean"),
        ({"v": 1}, "must be a number (for example 26.20)"),
    ],
)
def test_bad_values_are_named(seed_document: dict[str, Any], value: Any, problem: str) -> None:
    # Given an unusable no2 value
    seed_document["no2"]["value"] = value
    # Then the problem names no2.value
    assert problems(seed_document) == {"no2.value": problem}


def test_missing_fields_and_wrong_shapes_are_all_listed(seed_document: dict[str, Any]) -> None:
    # Given a document missing groupid, a gas missing sensorid and a gas that is not an object
    del seed_document["groupid"]
    del seed_document["co"]["sensorid"]
    seed_document["h2"] = "400"
    # Then each problem is listed with its path
    assert problems(seed_document) == {
        "groupid": "is required",
        "co.sensorid": "is required",
        "h2": "must be a JSON object",
    }


@pytest.mark.parametrize(
    ("createdtime", "problem"),
    [
        ("yesterday", "is not a time (use 'YYYY-MM-DD HH:MM:SS' or ISO-8601)"),
        ("2021-09-03 18:20:50", "is more than 5 minutes in the future"),
        ("2021-08-03 18:14:49", "is older than 30 days"),
    ],
)
def test_times_outside_the_window_are_rejected(seed_document: dict[str, Any], createdtime: str, problem: str) -> None:
    # Given a no2 time that is unparseable, too far ahead or too old (seed time is 18:15 KST)
    seed_document["no2"]["createdtime"] = createdtime
    # Then no2.createdtime is named
    assert problems(seed_document) == {"no2.createdtime": problem}


def test_a_time_just_inside_the_window_is_accepted(seed_document: dict[str, Any]) -> None:
    # Given a reading 4 minutes 59 seconds ahead of the server clock
    ahead = SEED_TIME + timedelta(minutes=4, seconds=59)
    seed_document["no2"]["createdtime"] = ahead.isoformat()
    # Then it is accepted
    assert problems(seed_document) == {}


def test_iso_time_with_offset_is_honoured() -> None:
    # Given an ISO-8601 time with an offset and one with Z
    # Then both become the same UTC instant, whatever the local zone
    assert parse_device_time("2021-09-03T18:14:49+09:00", "Europe/Berlin") == datetime(
        2021, 9, 3, 9, 14, 49, tzinfo=UTC
    )
    assert parse_device_time("2021-09-03T09:14:49Z", "Asia/Seoul") == datetime(2021, 9, 3, 9, 14, 49, tzinfo=UTC)


def test_unknown_gas_is_stored_not_rejected(seed_document: dict[str, Any]) -> None:
    # Given a gas the server has no threshold for
    seed_document["nh3"] = copy.deepcopy(seed_document["no2"]) | {"sensorid": "0009"}
    # Then it is a reading like the others
    result = validate_document(seed_document, 0, "", POLICY, SEED_TIME)
    assert "nh3" in {r.gas for r in result.readings}


def test_bad_gps_and_gas_names_are_named(seed_document: dict[str, Any]) -> None:
    # Given gps out of range
    seed_document["gps"] = "137.6, 126.9"
    assert problems(seed_document) == {"gps": "latitude must be within -90..90 and longitude within -180..180"}


def test_document_without_gases_is_rejected() -> None:
    assert problems({"groupid": "2", "gps": "37.6, 126.9"}) == {
        "": "has no gas readings (expected keys such as co, no2, c2h5oh, h2)"
    }


def test_reading_id_is_deterministic_and_distinguishes_each_key() -> None:
    # Given the same (groupid, sensorid, gas, time), expressed in two zones
    t1 = datetime(2021, 9, 3, 9, 14, 49, tzinfo=UTC)
    t2 = parse_device_time("2021-09-03 18:14:49", "Asia/Seoul")
    # Then the id is the same; changing any part changes it
    assert reading_id("2", "0006", "no2", t1) == reading_id("2", "0006", "no2", t2)
    others = {
        reading_id("3", "0006", "no2", t1),
        reading_id("2", "0007", "no2", t1),
        reading_id("2", "0006", "co", t1),
        reading_id("2", "0006", "no2", t1 + timedelta(seconds=1)),
    }
    assert len(others) == 4 and reading_id("2", "0006", "no2", t1) not in others


def test_body_limits() -> None:
    # Given bodies that are malformed, empty, too large or too many documents
    with pytest.raises(MalformedJsonError):
        parse_body('{"groupid": ', POLICY)
    with pytest.raises(MalformedJsonError):
        parse_body("", POLICY)
    with pytest.raises(MalformedJsonError):
        parse_body('"just a string"', POLICY)
    with pytest.raises(InvalidReadingsError):
        parse_body("[]", POLICY)
    with pytest.raises(RequestTooLargeError):
        parse_body(json.dumps([{}] * 501), POLICY)
    with pytest.raises(RequestTooLargeError):
        parse_body(b" " * 1_000_001, POLICY)
    # Then a single object and an array are told apart
    assert parse_body('{"a": 1}', POLICY) == ([{"a": 1}], False)
    assert parse_body('[{"a": 1}]', POLICY) == ([{"a": 1}], True)


def _variants(seed_document: dict[str, Any]) -> dict[str, Any]:
    """Documents of every kind a batch may mix: valid, malformed, and well-formed with a bad time."""
    later = copy.deepcopy(seed_document)
    for gas in ("co", "no2", "c2h5oh", "h2"):
        later[gas]["createdtime"] = "2021-09-03 18:14:50"
    bad_value = copy.deepcopy(seed_document)
    bad_value["co"]["value"] = "high"
    future = copy.deepcopy(seed_document)
    future["h2"]["createdtime"] = "2031-01-01 00:00:00"
    no_gases = {"groupid": "2"}
    return {"valid": seed_document, "later": later, "bad_value": bad_value, "future": future, "none": no_gases}


@pytest.mark.parametrize(
    "kinds",
    [
        ("valid",),
        ("valid", "later", "valid"),
        ("valid", "future", "later"),
        ("valid", "bad_value", "later"),
        ("none",),
        ("bad_value", "future"),
        ("future",),
    ],
)
@pytest.mark.parametrize("is_batch", [True, False])
def test_a_request_validated_at_once_answers_as_document_by_document(
    seed_document: dict[str, Any], kinds: tuple[str, ...], is_batch: bool
) -> None:
    # Given a request mixing valid, malformed and out-of-range documents
    variants = _variants(seed_document)
    raw = [copy.deepcopy(variants[kind]) for kind in kinds]
    # When it is validated in one go and document by document
    at_once = validate_documents(raw, is_batch, POLICY, SEED_TIME)
    one_by_one = [
        validate_document(doc, index, f"[{index}]." if is_batch else "", POLICY, SEED_TIME)
        for index, doc in enumerate(raw)
    ]
    # Then both give every document the same readings or the same problems at the same paths
    assert at_once == one_by_one
    assert [bool(doc.readings) for doc in at_once] == [kind in ("valid", "later") for kind in kinds]
