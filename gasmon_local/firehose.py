"""Firehose's delivery to S3 as AWS does it, on moto's server (the local stack only).

moto 5.2 writes each PutRecordBatch as one object at once, uncompressed, under the literal Prefix
plus `YYYY/MM/DD/HH/`: it neither evaluates `!{timestamp:...}` expressions nor compresses.
`install()` replaces its S3 writer with one that does what Firehose documents for an S3
destination: `!{timestamp:<pattern>}` in Prefix is the arrival time in UTC (and with an
expression no default `YYYY/MM/DD/HH/` is added); objects are named
`<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<id>`, with `.gz` and a gzip body under GZIP.
Left out: buffering. Each batch becomes its own object at once, so readings show up in the local
archive without waiting for ArchiveBufferSeconds. Nothing here ships in a Lambda artifact.
"""

from __future__ import annotations

import gzip
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from moto.firehose.models import FirehoseBackend
from moto.s3.models import s3_backends

_ORIGINAL = FirehoseBackend.put_s3_records
_TIMESTAMP = re.compile(r"!\{timestamp:([^}]*)\}")
# Java DateTimeFormatter letters Firehose prefixes use -> strftime.
_JAVA = re.compile(r"yyyy|MM|dd|HH|mm|ss")
_STRFTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}


def evaluate_prefix(prefix: str, arrival: datetime) -> str:
    """A Prefix with its `!{timestamp:...}` expressions evaluated at `arrival`; without any, Firehose
    appends `YYYY/MM/DD/HH/` itself."""
    if _TIMESTAMP.search(prefix) is None:
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        return base + arrival.strftime("%Y/%m/%d/%H/")

    def expand(match: re.Match[str]) -> str:
        return arrival.strftime(_JAVA.sub(lambda token: _STRFTIME[token.group(0)], match.group(1)))

    return _TIMESTAMP.sub(expand, prefix)


def object_key(stream: str, version: str, destination: dict[str, Any], arrival: datetime) -> str:
    """Where Firehose puts one delivery: evaluated prefix + stream, version, time and a random id."""
    suffix = ".gz" if destination.get("CompressionFormat") == "GZIP" else ""
    name = f"{stream}-{version}-{arrival.strftime('%Y-%m-%d-%H-%M-%S')}-{uuid.uuid4()}{suffix}"
    return evaluate_prefix(str(destination.get("Prefix", "")), arrival) + name


def _put_s3_records(
    self: FirehoseBackend,
    delivery_stream_name: str,
    version_id: str,
    s3_destination: dict[str, Any],
    records: list[dict[str, bytes]],
) -> list[dict[str, str]]:
    arrival = datetime.now(UTC)
    bucket = s3_destination["BucketARN"].split(":")[-1]
    body = b"".join(record["Data"] for record in records)
    if s3_destination.get("CompressionFormat") == "GZIP":
        body = gzip.compress(body)
    key = object_key(delivery_stream_name, str(version_id), s3_destination, arrival)
    s3_backends[self.account_id][self.partition].put_object(bucket, key, body)
    return [{"RecordId": str(uuid.uuid4())} for _ in records]


def install() -> None:
    """Use Firehose's S3 delivery (prefix expressions, gzip) in moto from now on."""
    FirehoseBackend.put_s3_records = _put_s3_records  # type: ignore[method-assign]


def uninstall() -> None:
    FirehoseBackend.put_s3_records = _ORIGINAL  # type: ignore[method-assign]
