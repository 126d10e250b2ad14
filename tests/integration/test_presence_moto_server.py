"""The presence handlers reach AWS only through standard endpoint settings: pointed at a moto
server with AWS_ENDPOINT_URL (as the local stack does), they work unchanged."""

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from gasmon.observability import metrics
from gasmon_local.functions import load_function_module

ROOT = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-2"

record_module = load_function_module("functions/record_presence")
check_module = load_function_module("functions/check_presence")


@dataclass
class Context:
    aws_request_id: str = "req-server"
    function_name: str = "gasmon-presence-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:gasmon-presence-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clear_handler_caches() -> None:
    for module in (record_module, check_module):
        for name in ("_settings", "_policy", "_ports"):
            getattr(module, name).cache_clear()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(metrics, "namespace", "GasmonTest")
    _clear_handler_caches()
    try:
        yield url
    finally:
        _clear_handler_caches()
        server.stop()


def test_handlers_use_the_configured_endpoint(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the presence resources on a moto server, and no grace period
    boto3.client("dynamodb").create_table(
        TableName="presence",
        AttributeDefinitions=[{"AttributeName": "client_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "client_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = boto3.client("sqs")
    checks = sqs.create_queue(QueueName="checks")["QueueUrl"]
    inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = boto3.client("sns").create_topic(Name="gasmon-disconnected_notice")["TopicArn"]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    for name, value in {
        "PRESENCE_TABLE": "presence",
        "CHECK_QUEUE_URL": checks,
        "ALERT_TOPIC_ARN": topic,
        "GRACE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    lost: dict[str, Any] = json.loads((ROOT / "events" / "presence_disconnected_lost.json").read_text())

    # When the lost connection is recorded and its check is delivered
    record_module.lambda_handler(lost, Context())
    [message] = sqs.receive_message(QueueUrl=checks, WaitTimeSeconds=1)["Messages"]
    record = {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"]}
    answer = check_module.lambda_handler({"Records": [record]}, Context())

    # Then the alert reached the topic on the server
    assert answer == {"batchItemFailures": []}
    [email] = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1)["Messages"]
    assert json.loads(email["Body"])["Subject"] == "[gasmon] RPI disconnected: connection lost"
