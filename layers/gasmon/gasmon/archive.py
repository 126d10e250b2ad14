"""The reading archive's format: one JSON line per reading, packed into delivery records.

Pure: no AWS SDK. The Firehose adapter sends what `archive_records` packs; Firehose concatenates
records into gzip objects under `readings/dt=YYYY-MM-DD/`, and Athena reads them through the Glue
table in template.yaml, whose columns are `ARCHIVE_COLUMNS` (a test keeps the two in step).

Firehose bills each record rounded up to 5 KB, so readings are packed many to a record (up to
`MAX_RECORD_BYTES`), not one each: a POST of one document with four gases is one record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gasmon.models import Reading

# Firehose limits: a record at most 1,000 KiB, a PutRecordBatch at most 500 records and 4 MiB.
MAX_RECORD_BYTES = 1000 * 1024
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024

# (name, Athena type), in the Glue table's order.
ARCHIVE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reading_id", "string"),
    ("device", "string"),
    ("groupid", "string"),
    ("deviceid", "string"),
    ("gas", "string"),
    ("sensorid", "string"),
    ("sensortype", "string"),
    ("value", "double"),
    ("createdtime", "string"),
    ("created_at", "string"),
    ("received_at", "string"),
    ("gps", "string"),
    ("lat", "double"),
    ("lon", "double"),
)


def archive_row(reading: Reading) -> dict[str, Any]:
    """The archived form of a reading: every column of `ARCHIVE_COLUMNS`, times in ISO-8601 UTC."""
    return {
        "reading_id": reading.reading_id,
        "device": reading.device,
        "groupid": reading.groupid,
        "deviceid": reading.deviceid,
        "gas": reading.gas,
        "sensorid": reading.sensorid,
        "sensortype": reading.sensortype,
        "value": reading.value,
        "createdtime": reading.createdtime,
        "created_at": reading.created_at.isoformat(),
        "received_at": reading.received_at.isoformat(),
        "gps": reading.gps,
        "lat": reading.lat,
        "lon": reading.lon,
    }


def archive_line(reading: Reading) -> bytes:
    """One newline-terminated JSON line (records are concatenated as they are, so each ends the line)."""
    return json.dumps(archive_row(reading), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def archive_records(readings: Sequence[Reading], max_record_bytes: int = MAX_RECORD_BYTES) -> list[bytes]:
    """Pack readings' lines into as few records as fit `max_record_bytes` each, in order."""
    records: list[bytes] = []
    current = bytearray()
    for reading in readings:
        line = archive_line(reading)
        if current and len(current) + len(line) > max_record_bytes:
            records.append(bytes(current))
            current = bytearray()
        current += line
    if current:
        records.append(bytes(current))
    return records


def record_batches(
    records: Sequence[bytes], max_records: int = MAX_BATCH_RECORDS, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[bytes]]:
    """Split records into PutRecordBatch calls within Firehose's limits (one call for any 1 MB POST)."""
    batches: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for record in records:
        if current and (len(current) == max_records or size + len(record) > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(record)
        size += len(record)
    if current:
        batches.append(current)
    return batches
