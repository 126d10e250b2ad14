"""Ingest with the archive: one call per POST, before the store, so no accepted reading is missing
from the archive and a failed archive leaves nothing stored, warned or reported accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gasmon.errors import ArchiveUnavailableError, StoreUnavailableError
from gasmon.ingest import IngestPolicy, ingest
from tests.conftest import SEED_TIME
from tests.fakes import MemoryArchive, MemoryPublisher, MemoryReadingStore

POLICY = IngestPolicy()


def over_threshold(document: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    doc["no2"]["value"] = "99"
    return doc


def test_a_post_archives_its_valid_readings_in_one_call(seed_document: dict[str, Any]) -> None:
    # Given a batch with one valid document and one invalid one
    store, publisher, archive = MemoryReadingStore(), MemoryPublisher(), MemoryArchive()
    report = ingest([seed_document, {"groupid": 5}], True, POLICY, SEED_TIME, store, publisher, archive=archive)
    # Then one archive call held exactly the readings that were stored
    assert len(archive.calls) == 1
    assert sorted(archive.reading_ids) == sorted(store.readings)
    assert report.response.accepted == len(store.readings) > 0


def test_a_failed_archive_stores_nothing_warns_nothing_and_is_a_503(seed_document: dict[str, Any]) -> None:
    # Given the archive refusing
    store, publisher, archive = MemoryReadingStore(), MemoryPublisher(), MemoryArchive()
    archive.fail_with = ArchiveUnavailableError("firehose throttled", 5)
    # When a reading over its threshold is posted
    with pytest.raises(StoreUnavailableError) as raised:
        ingest([over_threshold(seed_document)], False, POLICY, SEED_TIME, store, publisher, archive=archive)
    # Then the device is told to retry, and nothing happened that the retry could not redo
    assert raised.value.status == 503
    assert store.readings == {} and publisher.messages == []
    # And the retry, with the archive back, stores, archives and warns
    archive.fail_with = None
    report = ingest([over_threshold(seed_document)], False, POLICY, SEED_TIME, store, publisher, archive=archive)
    assert report.response.accepted == len(store.readings) and report.response.warnings == 1
    assert sorted(archive.reading_ids) == sorted(store.readings)


def test_a_store_failure_after_the_archive_is_retried_under_the_same_ids(seed_document: dict[str, Any]) -> None:
    # Given the archive took the readings but the store was down
    store, publisher, archive = MemoryReadingStore(), MemoryPublisher(), MemoryArchive()
    store.fail_with = StoreUnavailableError("down", retry_after_seconds=5)
    with pytest.raises(StoreUnavailableError):
        ingest([seed_document], False, POLICY, SEED_TIME, store, publisher, archive=archive)
    # When the device retries
    store.fail_with = None
    ingest([seed_document], False, POLICY, SEED_TIME, store, publisher, archive=archive)
    # Then the archive holds each reading twice under one id (at least once, deduped by reading_id)
    first, second = archive.calls
    assert [r.reading_id for r in first] == [r.reading_id for r in second]
    assert set(archive.reading_ids) == set(store.readings)


def test_an_invalid_post_archives_nothing(seed_document: dict[str, Any]) -> None:
    archive = MemoryArchive()
    with pytest.raises(Exception):  # noqa: B017 - the 422 is another test's business
        ingest([{"groupid": 5}], False, POLICY, SEED_TIME, MemoryReadingStore(), MemoryPublisher(), archive=archive)
    assert archive.calls == []
