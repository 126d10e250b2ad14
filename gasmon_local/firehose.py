"""Firehose's delivery to S3 as AWS does it, on moto's server (the local stack only).

moto 5.2 writes each PutRecordBatch as one object inside the call, uncompressed, under the
literal Prefix plus `YYYY/MM/DD/HH/`: it neither buffers, nor evaluates `!{timestamp:...}`
expressions, nor compresses, and its S3 write (~25 ms here) lands on every POST's path.
`install()` replaces its S3 writer with what Firehose documents for an S3 destination:
- records are buffered per stream and answered at once; a buffer is written as one object when
  it is `flush_seconds` old (at most the stream's IntervalInSeconds; 1 s locally, so readings
  show up in the local archive quickly) or past its SizeInMBs, and `flush_all()` writes what is
  left (the local stack calls it before saving the bucket on stop);
- `!{timestamp:<pattern>}` in Prefix is the arrival time of the buffer's oldest record, in UTC
  (with an expression no default `YYYY/MM/DD/HH/` is added);
- objects are named `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<id>`, `.gz` with a gzip body under
  GZIP.
Nothing here ships in a Lambda artifact.
"""

from __future__ import annotations

import gzip
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.firehose.models import FirehoseBackend
from moto.s3.models import s3_backends

log = logging.getLogger("aws")
_ORIGINAL = FirehoseBackend.put_s3_records
_TIMESTAMP = re.compile(r"!\{timestamp:([^}]*)\}")
# Java DateTimeFormatter letters Firehose prefixes use -> strftime.
_JAVA = re.compile(r"yyyy|MM|dd|HH|mm|ss")
_STRFTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
LOCAL_FLUSH_SECONDS = 1.0
# zlib's default level, as gzip(1) uses; Python's gzip.compress defaults to 9, which took 30 ms of
# the stack's CPU per second of archive at ~7,000 readings/s (level 6: 12 ms, objects ~7% larger).
# Firehose documents GZIP, not a level.
GZIP_LEVEL = 6


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


@dataclass
class _Buffer:
    account_id: str
    partition: str
    stream: str
    version: str
    destination: dict[str, Any]
    oldest: datetime
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


class _Deliveries:
    """The buffers of every stream, and the thread that writes them when they are due."""

    def __init__(self, flush_seconds: float = LOCAL_FLUSH_SECONDS) -> None:
        self.flush_seconds = flush_seconds
        self.lock = threading.Lock()
        self.buffers: dict[tuple[str, str, str], _Buffer] = {}
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def add(
        self, backend: FirehoseBackend, stream: str, version: str, destination: dict[str, Any], data: bytes
    ) -> None:
        key = (backend.account_id, backend.partition, stream)
        full: _Buffer | None = None
        with self.lock:
            buffer = self.buffers.get(key)
            if buffer is None:
                buffer = self.buffers[key] = _Buffer(
                    backend.account_id, backend.partition, stream, version, destination, datetime.now(UTC)
                )
            buffer.chunks.append(data)
            buffer.size += len(data)
            limit = int((destination.get("BufferingHints") or {}).get("SizeInMBs", 5)) * 1024 * 1024
            if buffer.size >= limit:
                full = self.buffers.pop(key)
            if self.thread is None or not self.thread.is_alive():
                self.stop.clear()
                self.thread = threading.Thread(target=self._run, name="firehose-delivery", daemon=True)
                self.thread.start()
        if full is not None:
            _write(full)

    def _due(self, now: datetime, everything: bool) -> list[_Buffer]:
        with self.lock:
            due = []
            for key, buffer in list(self.buffers.items()):
                interval = float((buffer.destination.get("BufferingHints") or {}).get("IntervalInSeconds", 300))
                if everything or (now - buffer.oldest).total_seconds() >= min(interval, self.flush_seconds):
                    due.append(self.buffers.pop(key))
            return due

    def flush(self, everything: bool = False) -> int:
        due = self._due(datetime.now(UTC), everything)
        for buffer in due:
            _write(buffer)
        return len(due)

    def _run(self) -> None:
        while not self.stop.wait(min(0.2, self.flush_seconds)):
            try:
                self.flush()
            except Exception:  # a bucket deleted meanwhile, say: keep delivering the others
                log.exception("firehose: a delivery to S3 failed")


def _write(buffer: _Buffer) -> None:
    body = b"".join(buffer.chunks)
    if buffer.destination.get("CompressionFormat") == "GZIP":
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
    bucket = str(buffer.destination["BucketARN"]).split(":")[-1]
    key = object_key(buffer.stream, buffer.version, buffer.destination, buffer.oldest)
    s3_backends[buffer.account_id][buffer.partition].put_object(bucket, key, body)


_DELIVERIES = _Deliveries()


def _put_s3_records(
    self: FirehoseBackend,
    delivery_stream_name: str,
    version_id: str,
    s3_destination: dict[str, Any],
    records: list[dict[str, bytes]],
) -> list[dict[str, str]]:
    _DELIVERIES.add(self, delivery_stream_name, str(version_id), s3_destination, b"".join(r["Data"] for r in records))
    return [{"RecordId": str(uuid.uuid4())} for _ in records]


def flush_all() -> int:
    """Write every buffered delivery now; returns how many objects were written."""
    return _DELIVERIES.flush(everything=True)


def install(flush_seconds: float = LOCAL_FLUSH_SECONDS) -> None:
    """Deliver Firehose streams to S3 as Firehose does, from now on."""
    _DELIVERIES.flush_seconds = flush_seconds
    FirehoseBackend.put_s3_records = _put_s3_records  # type: ignore[method-assign]


def uninstall() -> None:
    """Write what is buffered, stop the delivery thread and give moto its own writer back."""
    flush_all()
    _DELIVERIES.stop.set()
    FirehoseBackend.put_s3_records = _ORIGINAL  # type: ignore[method-assign]
