"""Presence checks on an SQS queue, delayed with the per-message `DelaySeconds` (0..900 s).

The boto3 client is created on first use and honours `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_SQS`, which is how the local stack and moto reach it.
"""

from __future__ import annotations

from typing import Any

from gasmon.adapters.aws import aws_client
from gasmon.errors import SchedulingError
from gasmon.models import MAX_CHECK_DELAY_SECONDS
from gasmon.presence_models import CheckRequest


class SqsCheckScheduler:
    """A `CheckScheduler` that sends each check as one JSON message to one queue."""

    def __init__(self, queue_url: str, region: str | None = None, client: Any = None) -> None:
        self.queue_url = queue_url
        self.region = region
        self._client: Any = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("sqs", self.region)
        return self._client

    def schedule(self, check: CheckRequest, delay_seconds: int) -> None:
        """Send the check, visible to the consumer after `delay_seconds` (clamped to 0..900)."""
        from botocore.exceptions import BotoCoreError, ClientError

        delay = max(0, min(MAX_CHECK_DELAY_SECONDS, delay_seconds))
        try:
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=check.model_dump_json(), DelaySeconds=delay)
        except (ClientError, BotoCoreError) as exc:
            raise SchedulingError(f"could not queue the presence check for {check.client_id}: {exc}") from exc
