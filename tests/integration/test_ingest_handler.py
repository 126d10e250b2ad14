"""The real ingest handler, fed the sample events from events/, storing in a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gasmon.adapters.sqlite_store import SqliteReadingStore
from tests.conftest import SEED_TIME, ingest_event, load_event
from tests.fakes import MemoryPublisher

Invoke = Callable[..., dict[str, Any]]


def headers_of(answer: dict[str, Any]) -> dict[str, str]:
    """REST API proxy answers carry headers as multiValueHeaders."""
    return {name: values[-1] for name, values in (answer.get("multiValueHeaders") or {}).items()}


@pytest.fixture
def store(tmp_path: Path) -> SqliteReadingStore:
    return SqliteReadingStore(tmp_path / "readings.sqlite3")


@pytest.fixture
def invoke(ingest_handler: Invoke, lambda_context: Any, store: SqliteReadingStore) -> Callable[..., Any]:
    publisher = MemoryPublisher()

    def call(event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        answer = ingest_handler(event, lambda_context, store=store, publisher=publisher, clock=lambda: SEED_TIME)
        return answer["statusCode"], json.loads(answer["body"]), headers_of(answer)

    call.publisher = publisher  # type: ignore[attr-defined]
    return call


def test_seed_document_on_the_seed_path_is_stored(invoke: Any, store: SqliteReadingStore) -> None:
    # Given the seed's exact POST to /gasdetector
    status, body, headers = invoke(load_event("ingest_seed_document.json"))
    # Then 200, four readings accepted and stored, JSON answer
    assert status == 200
    assert body["accepted"] == 4 and body["rejected"] == 0
    assert headers.get("Content-Type") == "application/json"
    assert store.count() == 4


def test_no2_88_warns_and_87_99_does_not(invoke: Any) -> None:
    status_over, over, _ = invoke(load_event("ingest_over_threshold.json"))
    status_below, below, _ = invoke(load_event("ingest_below_threshold.json"))
    assert (status_over, status_below) == (200, 200)
    assert (over["warnings"], below["warnings"]) == (1, 0)
    assert [m["warning"] for m in invoke.publisher.on("pi/1")] == ["no2 warning"]


def test_the_same_post_twice_stores_one_copy(invoke: Any, store: SqliteReadingStore) -> None:
    event = load_event("ingest_over_threshold.json")
    _, first, _ = invoke(event)
    _, second, _ = invoke(event)
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (4, 0, 4)
    assert store.count() == 4
    # Plain mode warns at least once: the retry warns again, with the same reading id to dedupe by
    warnings = invoke.publisher.on("pi/1")
    assert len(warnings) == 2 and warnings[0]["reading_id"] == warnings[1]["reading_id"]


def test_batch_event_stores_the_good_and_names_the_bad(invoke: Any, store: SqliteReadingStore) -> None:
    status, body, _ = invoke(load_event("ingest_batch.json"))
    assert status == 200
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted", "accepted", "rejected"]
    assert {d["path"] for d in body["results"][3]["details"]} == {"[3].no2.value", "[3].co.createdtime"}
    assert store.count() == 12


def test_malformed_event_is_a_400_with_a_json_error(invoke: Any, store: SqliteReadingStore) -> None:
    status, body, _ = invoke(load_event("ingest_malformed.json"))
    assert status == 400
    assert body["code"] == "malformed_json" and body["error"].startswith("the body is not valid JSON")
    assert store.count() == 0


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        (
            {"groupid": "2", "no2": {"sensorid": "1", "sensortype": "9", "value": "NaN", "createdtime": "x"}},
            422,
            "no2.value",
        ),
        (
            '{"groupid": "2", "no2": {"sensorid": "1", "sensortype": "9", "value": NaN, '
            '"createdtime": "2021-09-03 18:14:49"}}',
            422,
            "no2.value",
        ),
        (
            {"groupid": "2", "no2": {"sensorid": "1", "sensortype": "9", "value": "3", "createdtime": "2030-01-01"}},
            422,
            "no2.createdtime",
        ),
        ([], 422, ""),
        ("[" + ",".join(["{}"] * 501) + "]", 413, None),
        ("x" * 1_000_001, 413, None),
        ("null", 400, None),
    ],
)
def test_bad_input_is_a_clear_4xx(invoke: Any, body: Any, status: int, path: str | None) -> None:
    got_status, got, _ = invoke(ingest_event(body))
    assert got_status == status
    assert got["error"] and got["code"]
    if path is not None:
        assert path in [d["path"] for d in got["details"]]


def test_unknown_route_is_a_json_404(invoke: Any) -> None:
    status, body, _ = invoke(ingest_event({}, path="/nowhere"))
    assert status == 404 and body["code"] == "not_found"


def test_store_down_is_a_503_with_retry_after(ingest_handler: Invoke, lambda_context: Any) -> None:
    from gasmon.errors import StoreUnavailableError
    from tests.fakes import MemoryReadingStore

    store = MemoryReadingStore()
    store.fail_with = StoreUnavailableError("OpenSearch answered 429", retry_after_seconds=9)
    answer = ingest_handler(
        load_event("ingest_over_threshold.json"),
        lambda_context,
        store=store,
        publisher=MemoryPublisher(),
        clock=lambda: SEED_TIME,
    )
    assert answer["statusCode"] == 503
    assert headers_of(answer)["Retry-After"] == "9"
    assert json.loads(answer["body"])["code"] == "store_unavailable"


def test_base64_bodies_are_decoded(invoke: Any, seed_document: dict[str, Any]) -> None:
    import base64

    event = ingest_event(base64.b64encode(json.dumps(seed_document).encode()).decode())
    event["isBase64Encoded"] = True
    status, body, _ = invoke(event)
    assert status == 200 and body["accepted"] == 4


# ---- identity: the credential decides who posted ----

RPI = {"role": "device", "name": "RPI", "groupid": "2", "principalId": "device:RPI"}


def test_the_seed_document_posted_with_rpis_key_is_rpis_reading(invoke: Any, store: SqliteReadingStore) -> None:
    # Given the seed's document (groupid 2, no deviceid) posted with the key of thing RPI in group 2
    status, body, _ = invoke(ingest_event(json.loads(load_event("ingest_seed_document.json")["body"]), authorizer=RPI))
    # Then it is stored as RPI's readings, so presence and the dashboard join it to thing RPI
    assert status == 200 and body["accepted"] == 4
    [device] = store.latest_by_device(None, 10)
    assert (device.device, device.groupid) == ("RPI", "2")


@pytest.mark.parametrize(
    ("document", "field"),
    [({"groupid": "6"}, "groupid"), ({"groupid": "2", "deviceid": "pi-9"}, "deviceid")],
)
def test_a_document_of_another_device_is_403_naming_the_field(
    invoke: Any, store: SqliteReadingStore, seed_document: dict[str, Any], document: dict[str, Any], field: str
) -> None:
    status, body, _ = invoke(ingest_event({**seed_document, **document}, authorizer=RPI))
    assert status == 403
    assert body["code"] == "forbidden" and [detail["path"] for detail in body["details"]] == [field]
    assert store.count() == 0


@pytest.mark.parametrize("authorizer", [None, {"role": "viewer", "name": "ops", "groupid": ""}])
def test_without_a_device_identity_nothing_is_stored(
    invoke: Any, store: SqliteReadingStore, seed_document: dict[str, Any], authorizer: Any
) -> None:
    status, body, _ = invoke(ingest_event(seed_document, authorizer=authorizer))
    assert status == 403 and body["code"] == "forbidden"
    assert store.count() == 0


def test_a_device_over_its_requests_per_minute_gets_429_and_the_rest_of_the_fleet_does_not(
    ingest_handler: Invoke, lambda_context: Any, store: SqliteReadingStore, seed_document: dict[str, Any]
) -> None:
    # Given a limit of 2 requests per device, When RPI posts 3 times and pi-3 once
    from tests.fakes import CountingRateLimiter

    limiter = CountingRateLimiter(2)

    def post(document: dict[str, Any], identity: dict[str, str]) -> dict[str, Any]:
        event = ingest_event(document, authorizer=identity)
        return ingest_handler(
            event, lambda_context, store=store, publisher=MemoryPublisher(), clock=lambda: SEED_TIME, limiter=limiter
        )

    answers = [post(seed_document, RPI) for _ in range(3)]
    other = post({**seed_document, "groupid": "3"}, {"role": "device", "name": "pi-3", "groupid": "3"})
    # Then RPI's third is 429 with Retry-After, and pi-3 still gets through
    assert [answer["statusCode"] for answer in answers] == [200, 200, 429]
    assert headers_of(answers[2]).get("Retry-After") == "60"
    assert other["statusCode"] == 200


def test_a_warning_the_broker_refused_is_a_503_logged_as_pending_not_as_a_store_outage(
    ingest_handler: Invoke, lambda_context: Any, store: SqliteReadingStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a broker that refuses every publish
    broken = MemoryPublisher(fail=True)
    # When a reading over the level is posted
    answer = ingest_handler(
        load_event("ingest_over_threshold.json"), lambda_context, store=store, publisher=broken, clock=lambda: SEED_TIME
    )
    # Then the device is told to retry, the readings are stored
    assert answer["statusCode"] == 503 and json.loads(answer["body"])["code"] == "warnings_pending"
    assert headers_of(answer).get("Retry-After")
    assert store.count() == 4
    # And the log says a warning is owed, not that the store is down (its metric would page the
    # wrong person: WarningsPending, not StoreUnavailable)
    messages = [record.getMessage() for record in caplog.records]
    assert "readings stored, messages still owed: the device is told to retry" in messages
    assert "reading store unavailable" not in messages
