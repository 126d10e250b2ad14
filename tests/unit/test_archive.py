"""The archive's format and the Firehose adapter's batching and failure handling (a fake client)."""

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gasmon.adapters.firehose_archive import FirehoseReadingArchive
from gasmon.archive import ARCHIVE_COLUMNS, archive_records, archive_row, record_batches
from gasmon.errors import ArchiveUnavailableError
from gasmon.models import Reading

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def reading(n: int, value: float = 12.5) -> Reading:
    return Reading(
        reading_id=f"r{n:06d}",
        groupid="pi-1",
        gas="co",
        sensorid="s1",
        sensortype="MQ7",
        value=value,
        createdtime="2026-12-07 21:00:00",
        created_at=NOW - timedelta(seconds=n),
        received_at=NOW,
        gps="37.5, 127.0",
        lat=37.5,
        lon=127.0,
    )


class FakeFirehose:
    """PutRecordBatch as Firehose answers it; `refuse` says how many leading records fail per call."""

    def __init__(self, refuse: list[int] | None = None) -> None:
        self.calls: list[list[bytes]] = []
        self.refuse = list(refuse or [])

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append([record["Data"] for record in Records])
        failing = self.refuse.pop(0) if self.refuse else 0
        refused = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
        responses = [refused if i < failing else {"RecordId": "x"} for i in range(len(Records))]
        return {"FailedPutCount": failing, "RequestResponses": responses}


def test_a_row_has_exactly_the_glue_columns_and_survives_json() -> None:
    row = archive_row(reading(1, 87.99999999))
    assert tuple(row) == tuple(name for name, _ in ARCHIVE_COLUMNS)
    assert json.loads(json.dumps(row))["value"] == 87.99999999  # a double, not float32's 88.0


def test_readings_are_packed_many_to_a_record_and_each_line_ends() -> None:
    # Given 1,000 readings of ~330 bytes and records of at most 64 KiB
    records = archive_records([reading(n) for n in range(1000)], max_record_bytes=64 * 1024)
    # Then each record is full lines within the limit, and together they hold every reading once
    assert 1 < len(records) < 10
    assert all(len(record) <= 64 * 1024 and record.endswith(b"\n") for record in records)
    ids = [json.loads(line)["reading_id"] for record in records for line in record.splitlines()]
    assert ids == [f"r{n:06d}" for n in range(1000)]


def test_batches_keep_firehose_limits() -> None:
    batches = record_batches([b"x" * 100] * 1200, max_records=500, max_bytes=4 * 1024 * 1024)
    assert [len(batch) for batch in batches] == [500, 500, 200]
    batches = record_batches([b"x" * 1000] * 10, max_records=500, max_bytes=3500)
    assert all(sum(map(len, batch)) <= 3500 for batch in batches) and sum(map(len, batches)) == 10


def test_one_post_is_one_put_record_batch() -> None:
    # Given the readings of a full 500-document POST (4 gases each)
    client = FakeFirehose()
    archive = FirehoseReadingArchive("stream", client=client)
    archive.archive([reading(n) for n in range(2000)])
    # Then one request carries them all
    assert len(client.calls) == 1
    assert sum(len(record.splitlines()) for record in client.calls[0]) == 2000


def test_records_firehose_refused_are_sent_once_more_then_it_succeeds() -> None:
    client = FakeFirehose(refuse=[1])
    records = archive_records([reading(n) for n in range(3)], max_record_bytes=400)  # one reading per record
    FirehoseReadingArchive("stream", client=client, max_record_bytes=400).archive([reading(n) for n in range(3)])
    assert len(records) == 3
    assert client.calls[0] == records and client.calls[1] == records[:1]


def test_records_still_refused_raise_so_nothing_is_reported_accepted() -> None:
    client = FakeFirehose(refuse=[1, 1])
    with pytest.raises(ArchiveUnavailableError) as raised:
        FirehoseReadingArchive("stream", client=client).archive([reading(1)])
    assert raised.value.status == 503 and raised.value.code == "archive_unavailable"
    assert len(client.calls) == 2


def test_a_line_decompresses_to_the_row() -> None:
    # What Athena's JSON SerDe reads from the gzip objects Firehose writes
    (record,) = archive_records([reading(7)])
    assert json.loads(gzip.decompress(gzip.compress(record))) == archive_row(reading(7))
