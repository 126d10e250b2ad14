"""Presence monitoring end to end on moto's DynamoDB, SQS and SNS, through the real handlers.

The handlers build their own adapters from environment variables, exactly as in Lambda. Time is
virtual: the handlers get a clock, and moto's SQS reads the same clock, so a check queued with
`DelaySeconds=60` becomes visible when the test moves the clock past the grace period. Emails
are what an SQS queue subscribed to the `disconnected_notice` topic receives.
"""

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import moto.sqs.models as moto_sqs
import pytest
from moto import mock_aws

from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.ingest import IngestPolicy, validate_document
from gasmon.observability import metrics
from gasmon_local.functions import load_function_module

ROOT = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-2"
LOST_AT = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)  # events/presence_disconnected_lost.json

record_module = load_function_module("functions/record_presence")
check_module = load_function_module("functions/check_presence")


def event(name: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return body | changes


@dataclass
class Context:
    aws_request_id: str
    function_name: str = "gasmon-presence-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:gasmon-presence-test"


@dataclass
class Email:
    subject: str
    body: str


@dataclass
class Stack:
    """The presence part of gasmon on moto, driven like AWS would drive it."""

    now: datetime
    check_queue_url: str
    inbox_url: str
    table: str
    sqs: Any
    received: list[Email] = field(default_factory=list)
    invocations: int = 0

    def at(self, seconds: float) -> None:
        """Move the clock to `seconds` after the sample lost connection."""
        self.now = LOST_AT + timedelta(seconds=seconds)

    def clock(self) -> datetime:
        return self.now

    def deliver(self, lifecycle: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
        """What the IoT rule does: invoke the record function with one lifecycle event."""
        if seconds is not None:
            self.at(seconds)
        self.invocations += 1
        answer: dict[str, Any] = record_module.lambda_handler(
            lifecycle, Context(f"req-{self.invocations}"), clock=self.clock
        )
        return answer

    def run_due_checks(self) -> int:
        """What the SQS event source does: hand visible checks to the check function in batches,
        delete the ones it did not report as failed. Returns how many checks ran."""
        ran = 0
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.check_queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            )
            messages = answer.get("Messages", [])
            if not messages:
                return ran
            records = [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:checks",
                    "awsRegion": REGION,
                }
                for m in messages
            ]
            self.invocations += 1
            result = check_module.lambda_handler(
                {"Records": records}, Context(f"req-{self.invocations}"), clock=self.clock
            )
            failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.check_queue_url, ReceiptHandle=m["ReceiptHandle"])
            ran += len(messages) - len(failed)
            if failed:
                return ran

    def emails(self) -> list[Email]:
        """Every email published so far (read from the queue subscribed to the topic)."""
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.inbox_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return list(self.received)
            for m in messages:
                envelope = json.loads(m["Body"])
                self.received.append(Email(subject=envelope.get("Subject", ""), body=envelope["Message"]))
                self.sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=m["ReceiptHandle"])

    def state(self, client_id: str = "RPI") -> dict[str, Any]:
        item = boto3.client("dynamodb", region_name=REGION).get_item(
            TableName=self.table, Key={"client_id": {"S": client_id}}, ConsistentRead=True
        )
        return {k: next(iter(v.values())) for k, v in item.get("Item", {}).items()}


def _clear_handler_caches() -> None:
    for module in (record_module, check_module):
        for name in ("_settings", "_policy", "_ports"):
            getattr(module, name).cache_clear()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Stack]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(metrics, "namespace", "GasmonTest")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="presence",
            AttributeDefinitions=[{"AttributeName": "client_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "client_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = boto3.client("sqs", region_name=REGION)
        check_queue = sqs.create_queue(QueueName="checks", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="gasmon-disconnected_notice", Attributes={"KmsMasterKeyId": "alias/aws/sns"})
        sns.subscribe(TopicArn=topic["TopicArn"], Protocol="sqs", Endpoint=inbox_arn)

        for name, value in {
            "PRESENCE_TABLE": "presence",
            "CHECK_QUEUE_URL": check_queue,
            "ALERT_TOPIC_ARN": topic["TopicArn"],
            "GRACE_SECONDS": "60",
            "ALERT_REASONS": "*",
            "LOCAL_TIMEZONE": "Asia/Seoul",
            "DEVICE_DIRECTORY": "sqlite",
            "SQLITE_PATH": str(tmp_path / "readings.sqlite3"),
            "DEVICE_GROUPS": '{"RPI": "2"}',
        }.items():
            monkeypatch.setenv(name, value)
        _clear_handler_caches()

        stack = Stack(now=LOST_AT, check_queue_url=check_queue, inbox_url=inbox, table="presence", sqs=sqs)
        # moto's SQS keeps delays and visibility on the same virtual clock as the handlers.
        monkeypatch.setattr(moto_sqs, "unix_time_millis", lambda dt=None: stack.now.timestamp() * 1000)
        monkeypatch.setattr(moto_sqs, "unix_time", lambda dt=None: stack.now.timestamp())
        yield stack
    _clear_handler_caches()


def connected_then_lost(stack: Stack) -> None:
    stack.deliver(event("presence_connected.json"), -7980)
    stack.deliver(event("presence_disconnected_lost.json"), 0.3)


def test_flapping_within_the_grace_sends_no_email(stack: Stack) -> None:
    # Given a device that drops twice and is back within seconds each time
    connected_then_lost(stack)
    lost_ms = event("presence_disconnected_lost.json")["timestamp"]
    stack.deliver(event("presence_reconnected.json", timestamp=lost_ms + 5_000, versionNumber=8), 5.2)
    stack.deliver(
        event("presence_keepalive_timeout.json", timestamp=lost_ms + 20_000, versionNumber=8, sessionIdentifier="s2"),
        20.3,
    )
    stack.deliver(
        event("presence_reconnected.json", timestamp=lost_ms + 25_000, versionNumber=9, sessionIdentifier="s3"), 25.2
    )
    # When every check has come due and run
    stack.at(200)
    ran = stack.run_due_checks()
    # Then both checks ran and no email was sent
    assert ran == 2
    assert stack.emails() == []


def test_lost_connection_beyond_the_grace_sends_one_email_with_local_time(stack: Stack) -> None:
    # Given a device whose connection is lost, with readings from its group in gasmon
    document = {
        "groupid": "2",
        "gps": "37.61002501514269, 126.99636868892937",
        "no2": {"sensorid": "0006", "sensortype": "9", "value": "52.00", "createdtime": "2025-03-14 17:59:30"},
    }
    readings = validate_document(document, 0, "", IngestPolicy(), LOST_AT).readings
    SqliteReadingStore(Path(check_module._settings().sqlite_path)).put_readings(readings)
    connected_then_lost(stack)
    # When 30 s pass, nothing is due yet
    stack.at(30)
    assert stack.run_due_checks() == 0
    # And when the grace period is over
    stack.at(61)
    stack.run_due_checks()
    # Then exactly one email names the device, its local and UTC time and its group
    [email] = stack.emails()
    assert email.subject == "[gasmon] RPI disconnected: connection lost"
    assert "2025-03-14 18:00:00 KST (Asia/Seoul)" in email.body
    assert "2025-03-14 09:00:00 UTC" in email.body
    assert "The network connection dropped" in email.body
    assert "2 h 13 min" in email.body
    assert "a4666d2a7d844ae4ac5d7b38c9cb7967" in email.body
    assert "Group:          2" in email.body
    assert "Location (GPS): 37.61002501514269, 126.99636868892937" in email.body
    assert "Last reading:   2025-03-14 17:59:30 KST (Asia/Seoul)" in email.body
    assert stack.state()["alert_sent_at_ms"]


def test_replaying_the_events_three_times_in_shuffled_order_still_sends_one_email(stack: Stack) -> None:
    # Given the connect and the lost connection, each delivered three times in a shuffled order
    # (this shuffle starts with a disconnect and ends with the older connect)
    deliveries = [event("presence_connected.json"), event("presence_disconnected_lost.json")] * 3
    random.Random(5).shuffle(deliveries)
    for offset, lifecycle in enumerate(deliveries):
        stack.deliver(lifecycle, 0.3 + offset)
    assert stack.state()["status"] == "disconnected"
    # When every check has come due, and again much later
    stack.at(70)
    ran = stack.run_due_checks()
    stack.at(400)
    ran += stack.run_due_checks()
    # Then several checks ran, but one email went out
    assert ran >= 2
    assert [e.subject for e in stack.emails()] == ["[gasmon] RPI disconnected: connection lost"]


def test_clean_ctrl_c_disconnect_sends_no_email(stack: Stack) -> None:
    # Given a device stopped with Ctrl-C
    stack.deliver(event("presence_connected.json"), -7980)
    answer = stack.deliver(event("presence_disconnected_clean.json"), 0.3)
    # When the grace period has long passed
    stack.at(600)
    ran = stack.run_due_checks()
    # Then it is recorded as disconnected, no check was queued and no email was sent
    assert answer["disconnect_kind"] == "clean"
    assert stack.state()["status"] == "disconnected"
    assert ran == 0
    assert stack.emails() == []


def test_reconnect_after_an_alert_sends_one_reconnected_email(stack: Stack) -> None:
    # Given a device that was alerted about
    connected_then_lost(stack)
    stack.at(61)
    stack.run_due_checks()
    # When it reconnects at 09:07:12 and the connect event is delivered twice
    stack.deliver(event("presence_reconnected.json"), 432.2)
    stack.deliver(event("presence_reconnected.json"), 433)
    stack.at(1000)
    stack.run_due_checks()
    # Then after the alert exactly one "reconnected after 7 min" email followed
    emails = stack.emails()
    assert [e.subject for e in emails] == [
        "[gasmon] RPI disconnected: connection lost",
        "[gasmon] RPI reconnected after 7 min",
    ]
    assert "2025-03-14 18:07:12 KST (Asia/Seoul)" in emails[1].body


def test_malformed_event_is_dropped_and_nothing_is_written(stack: Stack) -> None:
    answer = stack.deliver({"clientId": "RPI", "eventType": "disconnected"}, 0)
    assert answer["outcome"] == "dropped"
    assert stack.state() == {}
