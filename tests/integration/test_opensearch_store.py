"""The OpenSearch store's write side through the real opensearch-py client, against a fake cluster
that checks every request and answer with the official OpenSearch API specification.

No OpenSearch can run here (see tests/opensearch_fake.py), so the cluster keeps what a cluster
keeps for gasmon and plays the faults a loaded cluster gives; the adapter's parsing, retries and
index setup are real, and so is what the device is told.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gasmon.adapters.opensearch_store import OpenSearchReadingStore, bulk_bodies, read_target
from gasmon.errors import StoreUnavailableError
from gasmon.ingest import IngestPolicy, ingest
from gasmon.readings import reading_id
from tests.fakes import MemoryPublisher
from tests.integration.test_sqlite_store import make_readings
from tests.opensearch_fake import FakeCluster, running_cluster

DAY_INDEX = "gasdetect-2026.01.01"  # make_readings' readings are of 2026-01-01 (UTC)


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    yield from running_cluster()


def store_on(url: str, **options: Any) -> OpenSearchReadingStore:
    return OpenSearchReadingStore(url, sign_requests=False, sleep=lambda _: None, **options)


def test_first_write_sets_up_retention_policy_template_and_alias_then_one_bulk_per_post(cluster: Any) -> None:
    # Given an empty cluster
    state, url = cluster
    store = store_on(url)
    # When one POST of 100 readings is stored, then the same POST again
    first = store.put_readings(make_readings(100))
    second = store.put_readings(make_readings(100))
    # Then setup ran once, each POST is one bulk to the day's index, and nothing is stored twice
    assert [(r.method, r.path) for r in state.requests] == [
        ("GET", "/_plugins/_ism/policies/gasdetect-retention"),  # none yet: set up
        ("GET", "/gasdetect/_mapping"),
        ("PUT", "/_index_template/gasdetect"),
        ("PUT", "/_index_template/gasdetect-latest"),
        ("PUT", "/_plugins/_ism/policies/gasdetect-retention"),  # last: it carries the setup marker
        ("POST", f"/{DAY_INDEX}/_bulk"),
        ("POST", f"/{DAY_INDEX}/_bulk"),
        ("POST", "/gasdetect/_mget"),  # the second POST met stored readings: their values, compared once
    ]
    assert len(first.created) == 100 and len(second.existing) == 100 and not second.created
    assert state.count() == 100 and set(state.indices) == {DAY_INDEX, "gasdetect-latest"}
    assert state.indices[DAY_INDEX].aliases == {"gasdetect"}


def test_a_cold_start_on_a_domain_set_up_by_the_same_configuration_makes_one_setup_request(cluster: Any) -> None:
    # Given a domain a first container set up
    state, url = cluster
    store_on(url).put_readings(make_readings(1))
    before = len(state.requests)
    # When another container (a new process) stores its first readings
    store_on(url).put_readings(make_readings(2))
    # Then it read the retention policy, found its own setup marker there, and went on to the bulk
    assert [(r.method, r.path) for r in state.requests[before:]] == [
        ("GET", "/_plugins/_ism/policies/gasdetect-retention"),
        ("POST", f"/{DAY_INDEX}/_bulk"),
        ("POST", "/gasdetect/_mget"),  # the reading the first container stored
    ]
    # And a container with another configuration (replicas) installs the templates again
    store_on(url, replicas=1).put_readings(make_readings(1))
    assert state.templates["gasdetect"]["template"]["settings"]["number_of_replicas"] == 1


def test_the_retention_policy_deletes_daily_indices_after_retention_days(cluster: Any) -> None:
    # Given a store configured with RETENTION_DAYS=30
    state, url = cluster
    store_on(url, retention_days=30).put_readings(make_readings(1))
    # Then the ISM policy attaches itself to the daily indices and deletes them at 30 days
    policy = state.policies["gasdetect-retention"]["policy"]
    assert policy["ism_template"] == [{"index_patterns": ["gasdetect-2*"], "priority": 100}]
    hot = next(s for s in policy["states"] if s["name"] == "hot")
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "30d"}}]
    assert next(s for s in policy["states"] if s["name"] == "delete")["actions"][0]["delete"] == {}


def test_a_changed_retention_updates_the_policy_guarded_by_its_version(cluster: Any) -> None:
    # Given a cluster whose policy says 90 days
    state, url = cluster
    store_on(url).put_readings(make_readings(1))
    # When a store with RETENTION_DAYS=7 starts
    store_on(url, retention_days=7).put_readings(make_readings(1))
    # Then the policy is replaced in place, naming the version it read
    update = [r for r in state.requests if r.method == "PUT" and "_ism" in r.path][-1]
    assert "if_seq_no=0" in update.url and "if_primary_term=1" in update.url
    states = state.policies["gasdetect-retention"]["policy"]["states"]
    assert states[0]["transitions"][0]["conditions"] == {"min_index_age": "7d"}
    # And a cold start with the same setting leaves it as it is
    puts = sum(1 for r in state.requests if r.method == "PUT" and "_ism" in r.path)
    store_on(url, retention_days=7).put_readings(make_readings(1))
    assert sum(1 for r in state.requests if r.method == "PUT" and "_ism" in r.path) == puts == 2


def test_the_template_maps_value_as_double_so_stored_values_keep_their_digits(cluster: Any) -> None:
    state, url = cluster
    reading = make_readings(1)[0].model_copy(update={"value": 87.99999999})
    store_on(url).put_readings([reading])
    mapping = state.templates["gasdetect"]["template"]["mappings"]["properties"]
    assert mapping["value"] == {"type": "double"}
    assert mapping["gps"]["type"] == "geo_point" and mapping["date"]["type"] == "date"
    assert state.docs()[reading.reading_id]["value"] == 87.99999999
    assert state.templates["gasdetect"]["index_patterns"] == ["gasdetect-2*"]


def test_readings_of_different_days_go_to_their_days_indices_in_one_bulk(cluster: Any) -> None:
    state, url = cluster
    readings = make_readings(2)
    late = readings[1].model_copy(update={"created_at": readings[1].created_at + timedelta(days=1)})
    store_on(url).put_readings([readings[0], late])
    assert len(state.bulk_requests()) == 1
    assert {name: len(index.docs) for name, index in state.readings_indices()} == {
        DAY_INDEX: 1,
        "gasdetect-2026.01.02": 1,
    }


def test_a_seed_index_is_left_alone_new_readings_go_to_daily_indices_and_reads_cover_both(
    cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the seed's index `gasdetect`: dynamic mapping, values stored as strings
    state, url = cluster
    state.add_seed_index("gasdetect", {"seed-1": {"groupid": "1", "gas": "no2", "value": "0.5"}})
    store = store_on(url)
    # When gasmon stores its first readings
    with caplog.at_level(logging.WARNING):
        outcome = store.put_readings(make_readings(3))
    # Then the seed index is untouched, the daily index holds the readings without the alias
    # (an alias cannot share an index's name), and the log says what to do
    assert len(outcome.created) == 3 and store.seed_index
    assert state.indices["gasdetect"].docs == {"seed-1": {"groupid": "1", "gas": "no2", "value": "0.5"}}
    assert len(state.indices[DAY_INDEX].docs) == 3 and not state.indices[DAY_INDEX].aliases
    assert "aliases" not in state.templates["gasdetect"]["template"]
    assert "gasmon-admin reindex-seed" in caplog.text
    # And a search names both the seed index and the daily indices
    assert store.latest_reading(["1"]) is not None
    search = state.requests[-1]
    assert search.path == f"/{read_target('gasdetect')}/_search" == "/gasdetect,gasdetect-2*/_search"
    assert state.resolve(read_target("gasdetect")) == ["gasdetect", DAY_INDEX]


def test_beside_a_seed_index_each_cold_start_probes_again_until_the_alias_can_be_added(cluster: Any) -> None:
    # Given a domain set up beside the seed's index (no alias)
    state, url = cluster
    state.add_seed_index("gasdetect", {"seed-1": {"groupid": "1", "gas": "no2", "value": "0.5"}})
    store_on(url).put_readings(make_readings(1))
    # When another container starts while the seed index is still there
    before = len(state.requests)
    store_on(url).put_readings(make_readings(1))
    # Then it probes for it again (its marker never says "done" while there is no alias)
    assert ("GET", "/gasdetect/_mapping") in [(r.method, r.path) for r in state.requests[before:]]
    # And once the seed index is gone (gasmon-admin reindex-seed --delete-seed), the next cold
    # start adds the alias to the template
    del state.indices["gasdetect"]
    store_on(url).put_readings(make_readings(1))
    assert state.templates["gasdetect"]["template"]["aliases"] == {"gasdetect": {}}


def test_a_bulk_stored_then_timed_out_is_retry_later_and_the_retry_stores_nothing_twice(cluster: Any) -> None:
    # Given a cluster that stores the bulk but answers after the client's timeout
    state, url = cluster
    store = store_on(url, timeout=0.2)
    store.ensure_index_template()
    state.bulk_faults.append("store_then_timeout")
    # When a POST is stored, the device is told to retry
    with pytest.raises(StoreUnavailableError) as raised:
        store.put_readings(make_readings(5))
    assert raised.value.retry_after_seconds > 0
    # Then its retry finds every reading stored once
    outcome = store.put_readings(make_readings(5))
    assert outcome.existing == {r.reading_id for r in make_readings(5)} and state.count() == 5


def test_a_bulk_stored_then_answered_504_is_retried_and_counts_as_stored_by_this_call(cluster: Any) -> None:
    # Given the domain's load balancer answers 504 after OpenSearch stored the bulk
    state, url = cluster
    state.bulk_faults.append("store_then_504")
    # When the readings are stored
    outcome = store_on(url).put_readings(make_readings(4))
    # Then the adapter re-sent the bulk once; the 409s are its own readings: new, not duplicates
    assert len(state.bulk_requests()) == 2
    assert len(outcome.created) == 4 and not outcome.existing and state.count() == 4


def test_partly_throttled_bulk_is_retried_until_every_reading_is_stored(cluster: Any) -> None:
    # Given a cluster that takes 7 of 10 items and answers 429 for the last 3
    state, url = cluster
    store = store_on(url)
    store.ensure_index_template()
    state.throttle_items = 3
    outcome = store.put_readings(make_readings(10))
    assert len(outcome.created) == 10 and state.count() == 10
    assert len(state.bulk_requests()) == 2 and state.bulk_requests()[1].body.count(b'"create"') == 3


def test_persistent_throttling_or_an_outage_is_retry_later(cluster: Any) -> None:
    state, url = cluster
    store = store_on(url)
    state.throttle_items = 10_000
    with pytest.raises(StoreUnavailableError):
        store.put_readings(make_readings(5))
    state.throttle_items = 0
    state.bulk_faults += ["503", "503", "503"]
    with pytest.raises(StoreUnavailableError):
        store.put_readings(make_readings(5))
    assert len(state.bulk_requests()) == 6  # 3 attempts each, then the device is told to retry


def test_writes_blocked_by_a_full_disk_are_retry_later_not_a_rejection(cluster: Any) -> None:
    # Given a cluster past its flood-stage watermark (403 cluster_block_exception per item)
    state, url = cluster
    store = store_on(url)
    store.ensure_index_template()
    state.block_writes = True
    with pytest.raises(StoreUnavailableError) as raised:
        store.put_readings(make_readings(2))
    assert "cluster_block_exception" in raised.value.message and raised.value.retry_after_seconds == 30
    # And a blocked index creation (the whole bulk answered 403) is the same
    state.block_writes = False
    state.bulk_faults.append("blocked_index_creation")
    next_day = [r.model_copy(update={"created_at": r.created_at + timedelta(days=1)}) for r in make_readings(2)]
    with pytest.raises(StoreUnavailableError):
        store.put_readings(next_day)
    assert "gasdetect-2026.01.02" not in state.indices


def test_a_document_the_mapping_refuses_is_rejected_to_the_device_not_retried(cluster: Any) -> None:
    # Given a cluster that refuses one reading with 400 mapper_parsing_exception
    state, url = cluster
    readings = make_readings(3)
    state.refuse_ids = {readings[1].reading_id}
    # When the store is asked to keep the readings
    outcome = store_on(url).put_readings(readings)
    # Then the other two are stored, the refused one is reported refused, and it was sent once
    assert outcome.created == {readings[0].reading_id, readings[2].reading_id}
    assert "mapper_parsing_exception" in outcome.refused[readings[1].reading_id]
    assert len(state.bulk_requests()) == 1


def test_ingest_tells_the_device_which_document_the_store_refused(cluster: Any) -> None:
    # Given a batch of two documents and a cluster whose mapping refuses the second one's reading
    state, url = cluster
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    times = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    documents = [
        {"groupid": "1", "no2": {"value": value, "sensorid": "0006", "sensortype": "9", "createdtime": at.isoformat()}}
        for value, at in zip((0.5, 0.7), times, strict=True)
    ]
    state.refuse_ids = {reading_id("1", "0006", "no2", times[1])}
    # When the batch is posted
    report = ingest(documents, True, IngestPolicy(), now, store_on(url), MemoryPublisher())
    # Then the first is accepted and the second rejected, naming why: the POST is not a retry-later
    first, second = report.response.results
    assert first.status == "accepted"
    assert second.status == "rejected" and second.readings[0].status == "rejected"
    assert "mapper_parsing_exception" in second.details[0].problem and second.details[0].path == "[1].no2"
    assert (report.response.accepted, report.response.rejected, report.response.duplicates) == (1, 1, 0)
    assert state.count() == 1


def test_a_setup_refused_by_fine_grained_access_control_is_one_clear_error_and_writes_go_on(
    cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a domain with fine-grained access control where the role may write but not manage
    state, url = cluster
    state.forbid_setup = True
    store = store_on(url)
    # When two POSTs are stored
    with caplog.at_level(logging.ERROR):
        store.put_readings(make_readings(2))
        store.put_readings(make_readings(3))
    # Then one error says what is missing and where the fix is; the readings are stored
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "403" in errors[0].getMessage() and "fine-grained access control" in errors[0].getMessage()
    assert state.count() == 3
    assert sum(1 for r in state.requests if "_ism" in r.path or "_index_template" in r.path) == 2


def test_documents_carry_gps_as_geo_point_and_the_reading_time() -> None:
    reading = make_readings(1)[0].model_copy(update={"lat": 37.6, "lon": 126.9, "gps": "37.6, 126.9"})
    [body] = list(bulk_bodies("gasdetect", [reading]))
    action, doc = (json.loads(line) for line in body.splitlines())
    assert action == {"create": {"_index": DAY_INDEX, "_id": reading.reading_id}}
    assert doc["gps"] == {"lat": 37.6, "lon": 126.9} and doc["date"] == "2026-01-01T00:00:00+00:00"


def test_bulk_bodies_are_split_at_the_size_limit() -> None:
    readings = make_readings(50)
    bodies = list(bulk_bodies("gasdetect", readings, limit=4096))
    assert len(bodies) > 1 and all(len(b.encode()) <= 4096 for b in bodies)
    assert sum(body.count('"create"') for body in bodies) == 50


# ---- The latest reading per (device, gas): its own document, in the same _bulk ----


def newest_by_latest_id(readings: list[Any]) -> dict[str, str]:
    newest: dict[tuple[str, str], Any] = {}
    for r in readings:
        if (r.device, r.gas) not in newest or r.created_at > newest[(r.device, r.gas)].created_at:
            newest[(r.device, r.gas)] = r
    return {f"{d}#{g}": r.reading_id for (d, g), r in newest.items()}


def test_the_latest_reading_per_device_and_gas_rides_in_the_same_bulk_request(cluster: Any) -> None:
    state, url = cluster
    # Given a POST of 100 readings
    readings = make_readings(100)
    # When they are stored
    store_on(url).put_readings(readings)
    # Then one _bulk request carried them and one latest document per (device, gas): the newest
    assert len(state.bulk_requests()) == 1
    stored = {doc_id: doc["reading_id"] for doc_id, doc in state.latest_docs().items()}
    assert stored == newest_by_latest_id(readings)
    # And the latest index has its own template, outranking the readings' one
    latest = state.templates["gasdetect-latest"]
    assert (
        latest["index_patterns"] == ["gasdetect-latest"]
        and latest["priority"] > state.templates["gasdetect"]["priority"]
    )
    assert state.indices["gasdetect-latest"].aliases == set()  # never counted as readings


def test_a_late_reading_never_replaces_a_newer_latest_document(cluster: Any) -> None:
    state, url = cluster
    store = store_on(url)
    [older, newer] = sorted([r for r in make_readings(40) if r.gas == "no2"][:2], key=lambda r: r.created_at)
    # Given the newer reading was stored first
    store.put_readings([newer])
    # When the older one arrives late, in its own POST
    outcome = store.put_readings([older])
    # Then it is stored as a reading, and the device's latest no2 is still the newer one
    assert outcome.created == {older.reading_id}
    assert state.latest_docs()[f"{newer.device}#no2"]["reading_id"] == newer.reading_id


def test_a_throttled_latest_document_is_sent_again_and_the_reading_is_reported_once(cluster: Any) -> None:
    state, url = cluster
    readings = make_readings(3)
    # Given the cluster throttles the first items of the first bulk
    state.throttle_items = 2
    # When the readings are stored
    outcome = store_on(url).put_readings(readings)
    # Then each is reported created once, and every (device, gas) has its latest document
    assert outcome.created == {r.reading_id for r in readings} and not outcome.existing
    assert set(state.latest_docs()) == set(newest_by_latest_id(readings))


def test_a_re_post_with_another_value_is_a_conflict_and_the_stored_value_stays(cluster: Any) -> None:
    # Given readings stored once
    state, url = cluster
    store = store_on(url)
    readings = make_readings(3)
    store.put_readings(readings)
    # When the same identities are posted again, one with a different value
    changed = [readings[0].model_copy(update={"value": readings[0].value + 1}), *readings[1:]]
    outcome = store.put_readings(changed)
    # Then all three were there, one is a conflict, and the first value is what is stored
    assert outcome.existing == {r.reading_id for r in readings} and not outcome.created
    assert outcome.conflicts == {readings[0].reading_id}
    assert state.docs()[readings[0].reading_id]["value"] == readings[0].value
    # And the values were compared with one _mget, naming each reading's day index
    [mget] = [r for r in state.requests if r.path.endswith("/_mget")]
    assert {doc["_index"] for doc in mget.json()["docs"]} == {DAY_INDEX}


def test_a_first_post_makes_no_mget(cluster: Any) -> None:
    state, url = cluster
    store_on(url).put_readings(make_readings(3))
    assert not [r for r in state.requests if r.path.endswith("/_mget")]
