"""Where `gasmon-admin` works: a deployed stack's resources, or the local stack's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINTS_FILE = Path(".local/endpoints.json")
REQUIRED_OUTPUTS = ("DeviceTableName", "DevicePolicyName")


class AdminError(Exception):
    """Something the operator must fix; the message says what (printed, exit status 1)."""


@dataclass
class Target:
    """The clients and names one command needs.

    `data_dir` is set for the local stack only: its CA signs device certificates there.
    """

    iot: Any
    dynamodb: Any
    device_table: str
    device_policy: str
    api_url: str
    mqtt_host: str
    mqtt_port: int
    warning_topic: str = "pi/1"
    data_dir: Path | None = None

    @property
    def local(self) -> bool:
        return self.data_dir is not None


def from_stack(name: str, region: str | None = None) -> Target:
    """A deployed stack: its outputs name the registry table and device policy (boto3's default
    credentials and region, or `region`)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.Session(region_name=region)
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        iot = session.client("iot")
        mqtt_host = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    except (BotoCoreError, ClientError) as exc:
        raise AdminError(f"cannot read stack {name}: {exc}") from None
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise AdminError(f"stack {name} has no output {', '.join(missing)}: deploy this version of template.yaml")
    return Target(
        iot=iot,
        dynamodb=session.client("dynamodb"),
        device_table=outputs["DeviceTableName"],
        device_policy=outputs["DevicePolicyName"],
        api_url=outputs.get("ApiUrl", ""),
        mqtt_host=mqtt_host,
        mqtt_port=8883,
        warning_topic=outputs.get("WarningTopic", "pi/1"),
    )


def from_endpoints(path: Path = DEFAULT_ENDPOINTS_FILE) -> Target:
    """The local stack `make local` runs, from the `endpoints.json` it writes."""
    import boto3

    try:
        endpoints = json.loads(path.read_text())
    except FileNotFoundError:
        raise AdminError(f"{path} does not exist: start the local stack with `make local` first") from None
    except json.JSONDecodeError as exc:
        raise AdminError(f"{path} is not valid JSON: {exc}") from None
    outputs = endpoints.get("outputs") or {}
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing or "aws" not in endpoints:
        raise AdminError(f"{path} names no {', '.join(missing) or 'aws endpoint'}: restart `make local`")

    def client(service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoints["aws"],
            region_name=endpoints.get("region", "ap-northeast-2"),
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # Devices connect to the TLS listener, as to AWS IoT Core (the plain one is for the seed's scripts).
    broker = str(endpoints.get("mqtts") or endpoints.get("mqtt", "mqtt://127.0.0.1:1883"))
    host, _, port = broker.removeprefix("mqtts://").removeprefix("mqtt://").rpartition(":")
    return Target(
        iot=client("iot"),
        dynamodb=client("dynamodb"),
        device_table=outputs["DeviceTableName"],
        device_policy=outputs["DevicePolicyName"],
        api_url=str(endpoints.get("api", "")),
        mqtt_host=host or "127.0.0.1",
        mqtt_port=int(port or 1883),
        warning_topic=outputs.get("WarningTopic", "pi/1"),
        data_dir=Path(endpoints.get("data_dir") or path.parent),
    )
