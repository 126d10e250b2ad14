"""Whatever a client sends, the ingest handler answers 200 or a 4xx with a JSON error: never a 500.

Hypothesis throws arbitrary JSON, arbitrary bytes and seed documents with arbitrary field values
at the real handler (SQLite store in memory); the named cases are ones that once crashed it.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gasmon.adapters.sqlite_store import SqliteReadingStore
from tests.conftest import SEED_TIME, FakeLambdaContext, ingest_event, load_event
from tests.fakes import MemoryPublisher

SEED = json.loads(load_event("ingest_seed_document.json")["body"])
STORE = SqliteReadingStore(":memory:")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def answer(handler: Any, body: str, base64_encoded: bool = False) -> tuple[int, dict[str, Any]]:
    event = ingest_event(body)  # posted by the device its first document names (see device_identity)
    event["body"], event["isBase64Encoded"] = body, base64_encoded
    reply = handler(event, FakeLambdaContext(), store=STORE, publisher=MemoryPublisher(), clock=lambda: SEED_TIME)
    return reply["statusCode"], json.loads(reply["body"])


def assert_clean(status: int, body: dict[str, Any]) -> None:
    assert status == 200 or 400 <= status < 500, (status, body)
    if status != 200:
        assert body["error"] and body["code"]


@pytest.mark.parametrize(
    ("body", "base64_encoded", "status"),
    [
        ("[" * 100_000 + "]" * 100_000, False, 400),
        ('{"a": ' * 50_000 + "1" + "}" * 50_000, False, 400),
        ('{"groupid": "2", "no2": {"value": 1' + "0" * 5000 + "}}", False, 400),
        (base64.b64encode(b'\xff\xfe{"a": 1}').decode(), True, 400),
        ("!!!not base64", True, 400),
        (json.dumps({"groupid": "2", "no2": {**SEED["no2"], "createdtime": "9999-12-31T23:59:59-23:59"}}), False, 422),
        (json.dumps({"groupid": "\u0000", "no2": SEED["no2"]}), False, 422),
        (json.dumps({"groupid": "2", "no2": {**SEED["no2"], "value": "1e308"}}), False, 422),
    ],
)
def test_inputs_that_once_crashed_it_get_a_clear_4xx(
    ingest_handler: Any, body: str, base64_encoded: bool, status: int
) -> None:
    got, reply = answer(ingest_handler, body, base64_encoded)
    assert got == status, reply
    assert_clean(got, reply)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_any_json_gets_200_or_a_4xx(ingest_handler: Any, value: Any) -> None:
    assert_clean(*answer(ingest_handler, json.dumps(value)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200), flagged=st.booleans())
def test_any_bytes_get_200_or_a_4xx(ingest_handler: Any, raw: bytes, flagged: bool) -> None:
    body = base64.b64encode(raw).decode() if flagged else raw.decode("latin-1")
    assert_clean(*answer(ingest_handler, body, flagged))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gas=st.sampled_from(["co", "no2", "c2h5oh", "h2"]), field=st.sampled_from(list(SEED["no2"])), value=json_values)
def test_a_seed_document_with_any_field_value_gets_200_or_a_4xx(
    ingest_handler: Any, gas: str, field: str, value: Any
) -> None:
    document = copy.deepcopy(SEED)
    document[gas][field] = value
    assert_clean(*answer(ingest_handler, json.dumps(document)))
