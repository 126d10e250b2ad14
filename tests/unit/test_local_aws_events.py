"""Pure pieces of the local AWS plumbing: SQS Lambda events, batch failures, SNS e-mails."""

import email
from email import policy
from typing import Any

import pytest

from gasmon_local.aws import email_message, failed_message_ids, sns_event, sqs_event, with_unsubscribe_url

BATCH = [
    {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": '{"clientId": "rpi-1"}',
        "MD5OfBody": "abc",
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
        "MessageAttributes": {
            "kind": {"DataType": "String", "StringValue": "check"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
        },
    },
    {"MessageId": "m2", "ReceiptHandle": "r2", "Body": "poison"},
]


def test_sqs_events_have_lambdas_record_shape() -> None:
    event = sqs_event(BATCH, "arn:aws:sqs:ap-northeast-2:123456789012:q", "ap-northeast-2")
    first = event["Records"][0]
    assert first["messageId"] == "m1" and first["receiptHandle"] == "r1"
    assert first["body"] == '{"clientId": "rpi-1"}'
    assert (first["eventSource"], first["eventSourceARN"], first["awsRegion"]) == (
        "aws:sqs",
        "arn:aws:sqs:ap-northeast-2:123456789012:q",
        "ap-northeast-2",
    )
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert first["messageAttributes"]["kind"]["stringValue"] == "check"
    assert first["messageAttributes"]["blob"]["binaryValue"] == "AQI="
    assert event["Records"][1]["messageAttributes"] == {}


@pytest.mark.parametrize(
    ("result", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": "m2"}, None),
    ],
)
def test_report_batch_item_failures(result: Any, failed: set[str] | None) -> None:
    # Given a function's answer, Then only listed messages are kept; a bad answer fails the batch
    assert failed_message_ids(result, BATCH) == failed


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


ENVELOPE = {
    "Type": "Notification",
    "MessageId": "1b2c3d4e-0000",
    "TopicArn": "arn:aws:sns:ap-northeast-2:123456789012:disconnected_notice",
    "Subject": "gasmon: rpi-7 disconnected",
    "Message": "rpi-7 lost its connection at 2021-08-12 14:03:10 KST (05:03:10 UTC).",
    "Timestamp": "2021-08-12T05:03:10.123Z",
    "UnsubscribeURL": "https://sns.example/unsubscribe",
}


def test_an_email_notification_reads_like_snss() -> None:
    message = parse(bytes(email_message(ENVELOPE, "ops@example.com", "email", "gasmon")))
    assert message["To"] == "ops@example.com"
    assert message["From"] == "gasmon <no-reply@sns.amazonaws.com>"
    assert message["Subject"] == "gasmon: rpi-7 disconnected"
    assert message["Date"] == "Thu, 12 Aug 2021 05:03:10 +0000"
    body = message.get_content()
    assert body.startswith(ENVELOPE["Message"]) and "unsubscribe" in body


def test_a_notification_without_subject_gets_snss_default() -> None:
    envelope = {key: value for key, value in ENVELOPE.items() if key != "Subject"}
    assert parse(bytes(email_message(envelope, "ops@example.com")))["Subject"] == "AWS Notification Message"


def test_email_json_carries_the_envelope() -> None:
    message = parse(bytes(email_message(ENVELOPE, "ops@example.com", "email-json")))
    assert '"MessageId": "1b2c3d4e-0000"' in message.get_content()


def test_sns_events_have_lambdas_record_shape() -> None:
    event = sns_event(ENVELOPE | {"SigningCertURL": "https://cert", "MessageAttributes": {}}, "arn:sub")
    [record] = event["Records"]
    assert (record["EventSource"], record["EventVersion"], record["EventSubscriptionArn"]) == (
        "aws:sns",
        "1.0",
        "arn:sub",
    )
    assert record["Sns"]["Message"] == ENVELOPE["Message"] and record["Sns"]["Subject"] == ENVELOPE["Subject"]
    assert (
        record["Sns"]["SigningCertUrl"] == "https://cert"
        and record["Sns"]["UnsubscribeUrl"] == ENVELOPE["UnsubscribeURL"]
    )


def test_the_unsubscribe_link_names_the_topics_region_and_the_subscription() -> None:
    # Given moto's envelope, whose UnsubscribeURL is one fixed us-east-1 link
    envelope = ENVELOPE | {"UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&x=1"}
    subscription = "arn:aws:sns:ap-northeast-2:123456789012:disconnected_notice:5e1f"
    # When the bridge hands it on
    fixed = with_unsubscribe_url(envelope, subscription)
    # Then the link is SNS's for the topic's region and this subscription, and the rest is untouched
    assert fixed["UnsubscribeURL"] == (
        "https://sns.ap-northeast-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + subscription
    )
    assert {k: v for k, v in fixed.items() if k != "UnsubscribeURL"} == {
        k: v for k, v in envelope.items() if k != "UnsubscribeURL"
    }
    body = parse(bytes(email_message(fixed, "ops@example.com"))).get_content()
    assert "sns.ap-northeast-2.amazonaws.com" in body and "us-east-1" not in body


def test_an_envelope_without_a_topic_arn_is_left_alone() -> None:
    envelope = {key: value for key, value in ENVELOPE.items() if key != "TopicArn"}
    assert with_unsubscribe_url(envelope, "arn:sub") == envelope
