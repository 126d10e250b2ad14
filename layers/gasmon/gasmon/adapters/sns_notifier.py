"""Notification emails through an SNS topic (`disconnected_notice`, KMS-encrypted in AWS).

The boto3 client is created on first use and honours `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_SNS`, which is how the local stack and moto reach it.
"""

from __future__ import annotations

from typing import Any

from gasmon.adapters.aws import aws_client
from gasmon.errors import NotifyError
from gasmon.presence_models import Email


class SnsNotifier:
    """A `Notifier` that publishes each email (subject and plain-text body) to one topic."""

    def __init__(self, topic_arn: str, region: str | None = None, client: Any = None) -> None:
        self.topic_arn = topic_arn
        self.region = region
        self._client: Any = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("sns", self.region)
        return self._client

    def send(self, email: Email) -> None:
        """Publish the email; any SDK or network failure becomes `NotifyError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.publish(TopicArn=self.topic_arn, Subject=email.subject, Message=email.body)
        except (ClientError, BotoCoreError) as exc:
            raise NotifyError(f"could not publish to {self.topic_arn}: {exc}") from exc
