"""Publishes MQTT messages through AWS IoT Core's data plane (boto3 `iot-data`).

boto3 is imported on the first publish, not at import time, so a POST that raises no warning
never pays for it. The endpoint is the `endpoint_url` given (the IOT_DATA_ENDPOINT setting, or
boto3's AWS_ENDPOINT_URL_IOT_DATA, which is how `make local` points it at the embedded broker),
else the account's ATS endpoint from `iot:DescribeEndpoint`, looked up once per process.
"""

from __future__ import annotations

import json
from typing import Any

from gasmon.adapters.aws import aws_client
from gasmon.errors import PublishError


class IotDataPublisher:
    """A `MessagePublisher` on AWS IoT Core (or anything that speaks its iot-data API)."""

    def __init__(self, endpoint_url: str = "", region: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._client: Any = None

    def _build_client(self) -> Any:
        endpoint = self.endpoint_url
        if not endpoint:
            iot = aws_client("iot", self.region)
            address = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
            endpoint = f"https://{address}"
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        return aws_client("iot-data", self.region, endpoint or None)

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        """Publish one JSON message; any SDK or network failure becomes `PublishError`."""
        try:
            if self._client is None:
                self._client = self._build_client()
            self._client.publish(topic=topic, qos=qos, payload=json.dumps(payload).encode())
        except Exception as exc:  # botocore raises many unrelated types; all mean "not published"
            raise PublishError(f"could not publish to {topic}: {exc}") from exc
