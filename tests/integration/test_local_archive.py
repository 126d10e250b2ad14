"""The local archive: gasmon's template on moto's server gets its bucket and delivery stream, and
the real Firehose adapter's records land in it as Firehose would write them (gzip JSON lines
under readings/dt=YYYY-MM-DD/, gasmon_local.firehose), and outlive a restart of the stack."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from gasmon.adapters.firehose_archive import FirehoseReadingArchive
from gasmon.adapters.signed_http import FIREHOSE, AwsJsonClient
from gasmon.archive import archive_row
from gasmon.models import Reading
from gasmon_local import aws, firehose
from gasmon_local.firehose import evaluate_prefix
from gasmon_local.functions import ROOT
from gasmon_local.template import Stack, StackContext


def reset(endpoint: str) -> None:
    """moto's backends live in the process, not the server: start from nothing, as a new stack does."""
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()


@pytest.fixture
def moto_stack(tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    moto = aws.MotoServer(port=0)
    endpoint = moto.start()
    try:
        reset(endpoint)
        stack = Stack.from_file(ROOT / "template.yaml", StackContext(aws_endpoint=endpoint))
        problems = aws.create_resources(stack, endpoint, tmp_path / "dynamodb", bucket_dir=tmp_path / "s3")
        assert not problems, problems
        yield stack, endpoint
    finally:
        firehose.flush_all()  # nothing buffered may land in the next test's buckets
        reset(endpoint)  # the next test's moto (same process) must not find these resources
        moto.stop()


def reading(n: int) -> Reading:
    at = datetime(2026, 12, 7, 12, 0, n, tzinfo=UTC)
    return Reading(
        reading_id=f"id-{n}", groupid="pi-1", gas="no2", sensorid="s", sensortype="t", value=88.5 + n,
        createdtime=at.isoformat(), created_at=at, received_at=at,
    )  # fmt: skip


def objects(endpoint: str, region: str, bucket: str) -> dict[str, bytes]:
    s3 = aws.client("s3", endpoint, region)
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listing}


@pytest.mark.parametrize("signed_http", [False, True], ids=["botocore", "signed-http"])
def test_archived_readings_are_gzip_json_lines_under_todays_partition(
    moto_stack: tuple[Stack, str], monkeypatch: pytest.MonkeyPatch, signed_http: bool
) -> None:
    stack, endpoint = moto_stack
    (stream,) = stack.delivery_streams()
    region = stack.context.region
    for key, value in aws.FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    # When ingest's adapter archives two POSTs' readings on the template's stream (through a
    # botocore client, or the signed-HTTP client ingest's builder gives it)
    client = AwsJsonClient(FIREHOSE, region) if signed_http else None
    stream_name = stack.functions()["IngestFunction"].environment["ARCHIVE_STREAM"]
    archive = FirehoseReadingArchive(stream_name, region, client=client)
    archive.archive([reading(1), reading(2)])
    archive.archive([reading(3)])
    # Then, once the buffer is due (about a second, bounded wait), one gzip object holds them all,
    # under the partition Athena's projection reads
    deadline = time.monotonic() + 10
    while not (written := objects(endpoint, region, stream.bucket)) and time.monotonic() < deadline:
        time.sleep(0.1)
    ((key, body),) = written.items()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert key.startswith(f"readings/dt={today}/{stream.name}-") and key.endswith(".gz")
    rows = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    assert rows == [archive_row(reading(n)) for n in (1, 2, 3)]
    assert archive.requests == 2


def test_what_is_still_buffered_is_written_before_the_bucket_is_saved(
    moto_stack: tuple[Stack, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a reading Firehose has taken but not yet written (the stack stops at once)
    stack, endpoint = moto_stack
    for key, value in aws.FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setattr(firehose._DELIVERIES, "flush_seconds", 3600)
    FirehoseReadingArchive(stack.delivery_streams()[0].name, stack.context.region).archive([reading(4)])
    # When the stack saves the bucket on stop
    aws.save_buckets(stack, endpoint, tmp_path / "kept")
    # Then the reading is in the saved archive
    (saved,) = (tmp_path / "kept").rglob("*.gz")
    assert json.loads(gzip.decompress(saved.read_bytes()))["reading_id"] == "id-4"


def test_the_archive_outlives_a_restart(moto_stack: tuple[Stack, str], tmp_path: Path) -> None:
    # Given an object in the archive bucket, saved when the stack stops
    stack, endpoint = moto_stack
    (bucket,) = stack.buckets()
    s3 = aws.client("s3", endpoint, stack.context.region)
    s3.put_object(Bucket=bucket, Key="readings/dt=2026-12-07/x.gz", Body=b"kept")
    aws.save_buckets(stack, endpoint, tmp_path / "kept")
    # When moto starts from nothing and the stack's resources are created again
    reset(endpoint)
    aws.create_resources(stack, endpoint, bucket_dir=tmp_path / "kept")
    # Then the object is back
    assert objects(endpoint, stack.context.region, bucket) == {"readings/dt=2026-12-07/x.gz": b"kept"}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("readings/dt=!{timestamp:yyyy-MM-dd}/", "readings/dt=2026-01-02/"),
        ("y=!{timestamp:yyyy}/h=!{timestamp:HH}/", "y=2026/h=03/"),
        ("plain", "plain/2026/01/02/03/"),  # no expression: Firehose adds YYYY/MM/DD/HH/
    ],
)
def test_prefix_expressions_are_evaluated_at_arrival(prefix: str, expected: str) -> None:
    assert evaluate_prefix(prefix, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == expected


def test_only_the_archive_bucket_and_stream_are_created_from_the_template(moto_stack: tuple[Stack, str]) -> None:
    stack, endpoint = moto_stack
    region = stack.context.region
    buckets: Any = aws.client("s3", endpoint, region).list_buckets()["Buckets"]
    streams = aws.client("firehose", endpoint, region).list_delivery_streams()["DeliveryStreamNames"]
    assert [b["Name"] for b in buckets] == stack.buckets() == ["gasmon-archivebucket"]
    assert streams == [stream.name for stream in stack.delivery_streams()]
