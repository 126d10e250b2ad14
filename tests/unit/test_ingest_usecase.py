"""The ingest use case with in-memory fakes: store once, warn once, report each document."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gasmon.errors import EffectsPendingError, InvalidReadingsError, StoreUnavailableError
from gasmon.ingest import IngestPolicy, ingest
from gasmon.readings import warning_topic
from tests.conftest import SEED_TIME
from tests.fakes import MemoryPublisher, MemoryReadingStore

POLICY = IngestPolicy()


def post(
    documents: list[Any],
    store: MemoryReadingStore,
    publisher: MemoryPublisher,
    batch: bool = False,
    policy: IngestPolicy = POLICY,
) -> Any:
    return ingest(documents, batch, policy, SEED_TIME, store, publisher)


def with_no2(document: dict[str, Any], value: str, createdtime: str = "2021-09-03 18:14:49") -> dict[str, Any]:
    doc = copy.deepcopy(document)
    doc["no2"].update(value=value, createdtime=createdtime)
    return doc


def test_no2_at_88_warns_on_pi_1_with_the_seed_shape(seed_document: dict[str, Any]) -> None:
    # Given NO2 exactly at the seed's threshold
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    # When posted
    report = post([with_no2(seed_document, "88")], store, publisher)
    # Then one warning goes to pi/1, QoS 1, with the seed's text and the structured fields
    assert report.response.warnings == 1
    [(topic, payload, qos)] = publisher.messages
    assert (topic, qos) == ("pi/1", 1)
    assert payload["warning"] == "no2 warning"
    assert payload | {"gps": None} == payload | {
        "gas": "no2",
        "value": 88.0,
        "threshold": 88.0,
        "sensorid": "0006",
        "groupid": "2",
        "createdtime": "2021-09-03 18:14:49",
        "gps": None,
    }


def test_no2_just_below_88_does_not_warn(seed_document: dict[str, Any]) -> None:
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    report = post([with_no2(seed_document, "87.99")], store, publisher)
    assert report.response.warnings == 0 and publisher.messages == []


def test_the_same_post_twice_stores_once_and_warns_again_with_the_reading_id(seed_document: dict[str, Any]) -> None:
    # Given an over-threshold document posted, then posted again (a device retrying a lost answer)
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    first = post([with_no2(seed_document, "90")], store, publisher)
    second = post([with_no2(seed_document, "90")], store, publisher)
    # Then the store holds four readings and the retry reports duplicates
    assert len(store.readings) == 4
    assert (first.response.accepted, first.response.duplicates) == (4, 0)
    assert (second.response.accepted, second.response.duplicates) == (0, 4)
    assert second.response.results[0].status == "duplicate"
    # And plain mode warns at least once: the retry warns again, with the reading id to dedupe by
    no2_id = next(r.id for r in first.response.results[0].readings if r.gas == "no2")
    assert [p["reading_id"] for _, p, _ in publisher.messages] == [no2_id, no2_id]


def test_a_batch_repeating_a_document_counts_it_once(seed_document: dict[str, Any]) -> None:
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    report = post([seed_document, copy.deepcopy(seed_document)], store, publisher, batch=True)
    assert (report.response.accepted, report.response.duplicates) == (4, 4)
    assert [r.status for r in report.response.results] == ["accepted", "duplicate"]


def test_a_batch_stores_valid_documents_and_lists_invalid_ones(seed_document: dict[str, Any]) -> None:
    # Given a batch with one bad document between two good ones
    good2 = with_no2(seed_document, "10", "2021-09-03 18:14:50")
    bad = with_no2(seed_document, "-3")
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    # When posted
    report = post([seed_document, bad, good2], store, publisher, batch=True)
    # Then the good ones are stored and the bad one is named with its index
    assert [r.status for r in report.response.results] == ["accepted", "rejected", "accepted"]
    assert report.response.results[1].details[0].path == "[1].no2.value"
    assert report.response.rejected == 1
    assert len(store.readings) == 5  # 4 + the one new no2 reading; the others repeat the seed's


def test_a_batch_of_only_invalid_documents_is_a_422(seed_document: dict[str, Any]) -> None:
    with pytest.raises(InvalidReadingsError) as raised:
        post([{"groupid": "1"}, with_no2(seed_document, "x")], MemoryReadingStore(), MemoryPublisher(), batch=True)
    assert [p.path for p in raised.value.details] == ["[0]", "[1].no2.value"]


def test_nothing_is_reported_accepted_when_the_store_is_down(seed_document: dict[str, Any]) -> None:
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    store.fail_with = StoreUnavailableError("down", retry_after_seconds=7)
    with pytest.raises(StoreUnavailableError):
        post([with_no2(seed_document, "99")], store, publisher)
    assert publisher.messages == []


def test_a_failed_warning_tells_the_device_to_retry_and_the_retry_warns(seed_document: dict[str, Any]) -> None:
    # Given a broker that refuses publishes
    store, publisher = MemoryReadingStore(), MemoryPublisher(fail=True)
    # When an over-threshold reading is posted
    with pytest.raises(EffectsPendingError) as raised:
        post([with_no2(seed_document, "99")], store, publisher)
    # Then the answer is a 503 with Retry-After, and the readings are stored
    assert raised.value.status == 503 and raised.value.retry_after_seconds > 0
    assert len(store.readings) == 4
    # When the broker is back and the device retries the same POST
    publisher.fail = False
    report = post([with_no2(seed_document, "99")], store, publisher)
    # Then the retry stores nothing twice and publishes the warning
    assert (report.response.accepted, report.response.duplicates) == (0, 4)
    assert [p["warning"] for _, p, _ in publisher.messages] == ["no2 warning"]


def test_a_different_value_for_a_stored_identity_is_a_conflict_and_is_warned_on(
    seed_document: dict[str, Any],
) -> None:
    # Given CO 1 stored
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    post([with_no2(seed_document, "1")], store, publisher)
    # When the same identity is posted with NO2 999
    report = post([with_no2(seed_document, "999")], store, publisher)
    # Then it is reported as a conflict (the stored value stays) and still warned on
    no2 = next(r for r in report.response.results[0].readings if r.gas == "no2")
    assert no2.status == "conflict" and report.response.conflicts == 1
    assert report.response.results[0].status == "conflict"
    assert store.readings[no2.id].value == 1
    assert [(p["warning"], p["value"], p["reading_id"]) for _, p, _ in publisher.messages] == [
        ("no2 warning", 999, no2.id)
    ]


def test_warning_topic_can_name_the_group(seed_document: dict[str, Any]) -> None:
    policy = IngestPolicy(warning_topic="gasmon/{groupid}/warnings")
    publisher = MemoryPublisher()
    post([with_no2(seed_document, "99")], MemoryReadingStore(), publisher, policy=policy)
    assert publisher.messages[0][0] == "gasmon/2/warnings"
    assert warning_topic("pi/1", "7") == "pi/1"


def test_thresholds_for_other_gases_come_from_the_policy(seed_document: dict[str, Any]) -> None:
    policy = IngestPolicy(thresholds={"co": 20.0})
    publisher = MemoryPublisher()
    post([seed_document], MemoryReadingStore(), publisher, policy=policy)  # co is 26.20
    assert [p["warning"] for _, p, _ in publisher.messages] == ["co warning"]


def test_status_messages_of_the_seed_are_behind_a_setting(seed_document: dict[str, Any]) -> None:
    publisher = MemoryPublisher()
    post([seed_document], MemoryReadingStore(), publisher, policy=IngestPolicy(publish_status_messages=True))
    assert publisher.on("pi/1") == [{"msg": "success"}]


def test_a_batch_repeating_an_over_threshold_document_warns_once(seed_document: dict[str, Any]) -> None:
    # Given a batch that holds the same over-threshold document twice (plain mode)
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    report = post([with_no2(seed_document, "90"), with_no2(seed_document, "90")], store, publisher, batch=True)
    # Then the reading is evaluated once: one warning
    assert [r.status for r in report.response.results] == ["accepted", "duplicate"]
    assert [p["warning"] for _, p, _ in publisher.messages] == ["no2 warning"]


def test_a_batch_with_two_values_for_one_identity_keeps_the_first_and_warns_on_the_second(
    seed_document: dict[str, Any],
) -> None:
    # Given a batch with NO2 1, then NO2 999 for the same sensor and time
    store, publisher = MemoryReadingStore(), MemoryPublisher()
    report = post([with_no2(seed_document, "1"), with_no2(seed_document, "999")], store, publisher, batch=True)
    # Then the first is stored, the second is a conflict, and the 999 is still warned on
    assert [r.status for r in report.response.results] == ["accepted", "conflict"]
    no2_id = next(r.id for r in report.response.results[0].readings if r.gas == "no2")
    assert store.readings[no2_id].value == 1 and report.response.conflicts == 1
    assert [(p["value"], p["reading_id"]) for _, p, _ in publisher.messages] == [(999, no2_id)]
