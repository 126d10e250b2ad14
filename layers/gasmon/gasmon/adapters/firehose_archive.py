"""The reading archive on Kinesis Data Firehose (an S3 destination, gzip, date prefixes).

One `PutRecordBatch` per POST: the readings are packed many to a record (`gasmon.archive`), and
a POST's 1 MB body always fits one batch. Firehose answers per record: records it failed
(`FailedPutCount`, throttling or an internal error) are sent once more, then the call raises
`ArchiveUnavailableError`, so ingest stores nothing and the device retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gasmon.adapters.aws import aws_client
from gasmon.archive import MAX_RECORD_BYTES, archive_records, record_batches
from gasmon.errors import ArchiveUnavailableError
from gasmon.models import Reading


class FirehoseReadingArchive:
    """A `ReadingArchive` on one Firehose delivery stream; the boto3 client is made on first use."""

    def __init__(
        self,
        stream: str,
        region: str | None = None,
        client: Any = None,
        retries: int = 1,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.stream = stream
        self.max_record_bytes = max_record_bytes
        self.region = region
        self._client = client
        self.retries = retries
        self.requests = 0  # PutRecordBatch calls, for tests and `make bench`

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("firehose", self.region)
        return self._client

    def archive(self, readings: Sequence[Reading]) -> None:
        """Send the readings' records; raise `ArchiveUnavailableError` if some are still refused."""
        for batch in record_batches(archive_records(readings, self.max_record_bytes)):
            pending = batch
            for _attempt in range(self.retries + 1):
                self.requests += 1
                try:
                    answer = self.client.put_record_batch(
                        DeliveryStreamName=self.stream, Records=[{"Data": data} for data in pending]
                    )
                except Exception as exc:
                    # botocore's exceptions are imported only when a call fails (not on a cold POST's path).
                    from botocore.exceptions import BotoCoreError, ClientError

                    if not isinstance(exc, BotoCoreError | ClientError):
                        raise
                    raise ArchiveUnavailableError(f"the reading archive is unavailable: {exc}", 5) from exc
                if not answer.get("FailedPutCount"):
                    break
                responses = answer.get("RequestResponses", [])
                pending = [data for data, result in zip(pending, responses, strict=False) if result.get("ErrorCode")]
            else:
                raise ArchiveUnavailableError(
                    f"the reading archive refused {len(pending)} of {len(batch)} records; retry later", 5
                )
