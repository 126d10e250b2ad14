"""The template's AWS resources in moto, SQS event sources and SNS e-mail, with real handlers.

Uses the presence-shaped fixture template (tests/fixtures/presence): a lifecycle event handled by
its record function schedules a delayed check; the SQS event source runs the check function,
which publishes to SNS; the mail bridge writes the e-mail.
"""

import email
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any

import pytest

from gasmon_local import aws
from gasmon_local import stack as stack_module
from gasmon_local.functions import ROOT, FunctionRuntime
from gasmon_local.stack import function_environments, process_environment
from gasmon_local.template import Stack, StackContext

FIXTURE = ROOT / "tests" / "fixtures" / "presence" / "template.yaml"
WAIT = 20.0


@dataclass
class Local:
    stack: Stack
    endpoint: str
    runtime: FunctionRuntime
    mail_dir: Path
    stop: threading.Event
    bridge: aws.SnsBridge


def eventually(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    data_dir = tmp_path_factory.mktemp("aws")
    moto = aws.MotoServer(port=0)
    endpoint = moto.start()
    stack = Stack.from_file(FIXTURE, StackContext(aws_endpoint=endpoint), {"AlertEmail": "ops@example.com"})
    aws.create_resources(stack, endpoint)
    common = process_environment(endpoint, "http://127.0.0.1:9", stack.context.region)
    environments = function_environments(stack, common, data_dir, grace=1)
    runtime = FunctionRuntime(
        stack.functions(), environments, deliver=aws.Delivery(endpoint, stack.context.region).send
    )
    stop = threading.Event()
    for spec in stack.functions().values():
        for source in spec.sqs_sources:
            aws.SqsPoller(source, runtime.invoke, endpoint, stack.context.region, stop).start()
    bridge = aws.SnsBridge(endpoint, stack.context.region, stop)
    mail = aws.MailBridge(stack, bridge, data_dir / "mail")
    mail.start()
    yield Local(stack, endpoint, runtime, mail.mail_dir, stop, bridge)
    stop.set()
    runtime.close()
    moto.stop()


def client(local: Local, service: str) -> Any:
    return aws.client(service, local.endpoint, local.stack.context.region)


def mails_about(local: Local, client_id: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted(local.mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if client_id in str(message["Subject"]):
            assert isinstance(message, email.message.EmailMessage)
            found.append(message)
    return found


def lifecycle(client_id: str, event_type: str, session: str, initiated: bool = False) -> dict[str, Any]:
    event: dict[str, Any] = {
        "clientId": client_id,
        "timestamp": int(time.time() * 1000),
        "eventType": event_type,
        "sessionIdentifier": session,
        "principalIdentifier": "anonymous",
        "versionNumber": 0,
    }
    if event_type == "disconnected":
        event["clientInitiatedDisconnect"] = initiated
        event["disconnectReason"] = "CLIENT_INITIATED_DISCONNECT" if initiated else "CONNECTION_LOST"
    return event


def test_resources_are_created_with_their_properties(local: Local) -> None:
    sqs = client(local, "sqs")
    url = sqs.get_queue_url(QueueName="gasmon-PresenceCheckQueue")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "30"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:ap-northeast-2:123456789012:gasmon-presence-dlq",
        "maxReceiveCount": 3,
    }
    dynamodb = client(local, "dynamodb")
    ttl = dynamodb.describe_time_to_live(TableName="gasmon-PresenceTable")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires"
    topic = "arn:aws:sns:ap-northeast-2:123456789012:disconnected_notice"
    subscriptions = client(local, "sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert ("email", "ops@example.com") in {(s["Protocol"], s["Endpoint"]) for s in subscriptions}


def test_a_lost_device_is_mailed_once_after_the_grace_period(local: Local) -> None:
    # Given a device that connected and then lost its connection
    name = f"rpi-{uuid.uuid4().hex[:6]}"
    local.runtime.invoke("RecordPresenceFunction", lifecycle(name, "connected", "s1"))
    lost_at = time.monotonic()
    local.runtime.invoke("RecordPresenceFunction", lifecycle(name, "disconnected", "s1"))
    # When the grace period (1 s, through the delay queue) passes, Then one e-mail names it
    [message] = eventually(lambda: mails_about(local, name))
    assert time.monotonic() - lost_at >= 1.0
    assert message["To"] == "ops@example.com"
    assert message["From"] == "gasmon <no-reply@sns.amazonaws.com>"
    body = message.get_content()
    assert "CONNECTION_LOST" in body
    assert "setting=from-function" in body  # the check function ran with its own environment
    # And its unsubscribe link is SNS's in the stack's region (moto's envelope says us-east-1)
    region = local.stack.context.region
    assert f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:{region}:" in body
    time.sleep(2)
    assert len(mails_about(local, name)) == 1


def test_a_device_back_within_the_grace_period_is_not_mailed(local: Local) -> None:
    name = f"rpi-{uuid.uuid4().hex[:6]}"
    local.runtime.invoke("RecordPresenceFunction", lifecycle(name, "disconnected", "s1"))
    local.runtime.invoke("RecordPresenceFunction", lifecycle(name, "connected", "s2"))
    time.sleep(3)
    assert mails_about(local, name) == []


def test_only_the_messages_that_succeeded_are_deleted(local: Local) -> None:
    # Given a batch with a message the function reports as failed (ReportBatchItemFailures)
    sqs = client(local, "sqs")
    url = sqs.get_queue_url(QueueName="gasmon-PresenceCheckQueue")["QueueUrl"]
    name = f"rpi-{uuid.uuid4().hex[:6]}"
    local.runtime.invoke("RecordPresenceFunction", lifecycle(name, "connected", "s9"))
    local.runtime.invoke("RecordPresenceFunction", lifecycle(name, "disconnected", "s9"))
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    # Then the good one is handled and deleted, and the failed one stays in flight for a retry
    eventually(lambda: mails_about(local, name))

    def counts() -> tuple[str, str]:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]

    assert eventually(lambda: counts() == ("0", "1"))


def test_table_items_survive_a_restart(local: Local, tmp_path: Path) -> None:
    # Given an item in a table, saved as the stack does on stop
    table = "gasmon-PresenceTable"
    dynamodb = client(local, "dynamodb")
    dynamodb.put_item(TableName=table, Item={"clientId": {"S": "kept"}, "state": {"S": "x"}})
    aws.save_tables(local.stack, local.endpoint, tmp_path)
    # When moto forgets the table (moto's state lives in memory) and the stack starts again
    dynamodb.delete_table(TableName=table)
    aws.create_resources(local.stack, local.endpoint, snapshot_dir=tmp_path)
    # Then the item is back
    item = dynamodb.get_item(TableName=table, Key={"clientId": {"S": "kept"}})
    assert item["Item"]["state"] == {"S": "x"}


def test_an_event_invocation_that_keeps_failing_goes_to_its_on_failure_destination(local: Local) -> None:
    # Given RecordPresenceFunction (MaximumRetryAttempts 1, OnFailure -> the dead-letter queue)
    sqs = client(local, "sqs")
    url = sqs.get_queue_url(QueueName="gasmon-presence-dlq")["QueueUrl"]
    marker = uuid.uuid4().hex
    # When an event it cannot handle is invoked asynchronously
    local.runtime.invoke_async("RecordPresenceFunction", {"not": "a lifecycle event", "marker": marker}, "test")

    def record() -> dict[str, Any] | None:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(message["Body"])
            if body.get("requestPayload", {}).get("marker") == marker:
                return dict(body)
        return None

    # Then after one retry, Lambda's failure record lands in the destination
    found = eventually(record)
    assert found is not None
    assert found["requestContext"]["condition"] == "RetriesExhausted"
    assert found["requestContext"]["approximateInvokeCount"] == 2
    assert found["responseContext"]["functionError"] == "Unhandled"
    assert found["responsePayload"]["errorType"] == "KeyError"


def test_a_functions_sns_event_delivers_notifications_as_snss_lambda_event(local: Local) -> None:
    # Given EchoFunction's SNS event on the notice topic (wired as the stack wires it)
    received: list[Any] = []

    class Recorder:
        def invoke_async(self, function: str, event: Any, source: str) -> None:
            received.append((function, event))

    [source] = local.stack.functions()["EchoFunction"].sns_sources
    stack_module._subscribe_function(local.bridge, Recorder(), source)  # type: ignore[arg-type]
    # When a notification is published
    client(local, "sns").publish(TopicArn=source.topic_arn, Subject="hello", Message="from sns")
    # Then the function is invoked with SNS's record
    assert eventually(lambda: received)
    function, event = received[0]
    record = event["Records"][0]
    assert function == "EchoFunction"
    assert record["EventSource"] == "aws:sns"
    assert (record["Sns"]["Subject"], record["Sns"]["Message"]) == ("hello", "from sns")
    assert record["Sns"]["TopicArn"] == source.topic_arn


def test_a_resource_moto_refuses_is_reported_and_the_rest_is_created(local: Local) -> None:
    # Given a template with a table moto cannot create (no key schema) beside a good queue
    stack = Stack(
        {
            "Resources": {
                "BrokenTable": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "broken"}},
                "FineQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "fine-queue", "DelaySeconds": 3}},
            }
        },
        StackContext(aws_endpoint=local.endpoint),
    )
    # When its resources are created, Then the problem is reported and the queue exists anyway
    problems = aws.create_resources(stack, local.endpoint)
    assert len(problems) == 1 and problems[0].startswith("table broken:")
    sqs = client(local, "sqs")
    url = sqs.get_queue_url(QueueName="fine-queue")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"]["DelaySeconds"] == "3"
