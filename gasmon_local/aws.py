"""SNS, SQS, DynamoDB and IoT's registry on this machine: moto's server, the template's resources, and delivery.

- `MotoServer` runs moto's server app in-process, served by waitress (keep-alive connections,
  worker threads); functions reach it through AWS_ENDPOINT_URL with fake credentials, exactly as
  they would reach AWS.
- `create_resources` creates the template's tables, queues, topics, subscriptions and IoT policies in it, with
  their properties (key schema, indexes, TTL, DelaySeconds, redrive policies, filter policies...).
  Table items are saved to the data directory on stop and loaded on start, and every write in
  between is journaled before moto answers it (`dynamodb_journal`), so alarm and presence state
  survive a restart, even a `kill -9`, like the readings do.
- `SqsPoller` polls a queue and invokes its function with real SQS Lambda events, deleting
  only what succeeded (honouring ReportBatchItemFailures), as Lambda's event source mapping does.
- `SnsBridge` delivers what moto's SNS cannot: each email subscription, and each function's SNS
  event, gets an internal SQS queue subscribed to the same topic (moto delivers SNS to SQS).
  `MailBridge` writes every e-mail notification as an RFC 5322 `.eml` file under
  `<data-dir>/mail/` and logs it on one line; functions get SNS's Lambda event.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore.config import Config
from moto.core.config import default_user_config
from moto.moto_server.werkzeug_app import create_backend_app

from gasmon_local import firehose, moto_fixes
from gasmon_local.dynamodb_journal import DynamoDbJournal
from gasmon_local.servers import ServerThread
from gasmon_local.template import ACCOUNT_ID, SqsEventSource, Stack, SubscriptionSpec, TableSpec

log = logging.getLogger("aws")
mail_log = logging.getLogger("mail")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# SQS long polling in moto wakes on new messages but not when a delayed one becomes visible,
# so event sources short-poll at this interval to keep delay queues punctual.
POLL_SECONDS = 0.2


class MotoServer:
    """moto's server on 127.0.0.1 in a background thread, DynamoDB writes journaled when given one.

    moto's WSGI app (`DomainDispatcherApplication`, as `moto_server` runs it) is served by waitress,
    as the gateway is (`gasmon_local.servers`): connections are kept alive and requests go to a
    pool of worker threads. werkzeug's development server, which `moto_server` uses, closes every
    connection and starts a thread per request: about 3 ms of CPU per AWS call before moto even
    looks at it, three calls per POST (docs/decision_log.md, issue 14, second pass).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 4566, journal: DynamoDbJournal | None = None) -> None:
        for name in ("werkzeug", "moto"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.host = host
        self.port = port
        self.journal = journal
        self._server: ServerThread | None = None

    def start(self) -> str:
        moto_fixes.install()  # transactions as cheap as one write, whatever the table's size
        firehose.install()  # S3 delivery as Firehose does it: buffered, prefix expressions, gzip
        # AWS's certificate id is the SHA-256 of the DER certificate; moto hashes the PEM text
        # unless told otherwise, and the broker looks certificates up by AWS's id.
        default_user_config.setdefault("iot", {})["use_valid_cert"] = True
        # What moto's ThreadedMotoServer does, with the journal (if any) between the socket and moto.
        app: Any = moto_fixes.CachedDispatcher(create_backend_app)
        if self.journal is not None:
            app = self.journal.middleware(app)
        # Binds now: a taken port is an OSError naming moto, not a traceback from a thread.
        self._server = ServerThread(_as_moto_server_sees_it(app), self.host, self.port, "moto").start()
        self.host, self.port = self._server.host, self._server.port
        return self.url

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.journal is not None:
            self.journal.close()


def _as_moto_server_sees_it(app: Any) -> Any:
    """The environ moto's own server (werkzeug's) would hand it: `RAW_URI`, the path as it arrived
    (moto matches S3 keys against it, percent-encoding included), is waitress's `REQUEST_URI`.

    What waitress does not pass on: header names with an underscore (it drops them, as werkzeug
    does, and moto's handler spells them back for S3 user metadata). gasmon sends none."""

    def moto_environ(environ: dict[str, Any], start_response: Any) -> Any:
        environ.setdefault("RAW_URI", environ.get("REQUEST_URI", ""))
        return app(environ, start_response)

    return moto_environ


def client(service: str, endpoint: str, region: str) -> Any:
    """A boto3 client for moto (explicit endpoint and fake credentials, whatever the shell has)."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10),
    )


def create_resources(
    stack: Stack,
    endpoint: str,
    snapshot_dir: Path | None = None,
    journal: DynamoDbJournal | None = None,
    bucket_dir: Path | None = None,
) -> list[str]:
    """Create the template's queues, tables, topics and subscriptions in moto.

    A resource moto refuses is logged and skipped, so one odd property does not stop the stack;
    the problems are returned for the banner. Subscriptions with protocol `lambda` are left to
    the stack (moto would look for the function in its own Lambda service). Tables get the items
    of the snapshot in `snapshot_dir`, then `journal`'s writes newer than it.
    """
    region = stack.context.region
    problems: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> bool:
        try:
            action()
            return True
        except Exception as exc:
            log.error("could not create %s: %s", what, exc)
            problems.append(f"{what}: {exc}")
            return False

    sqs = client("sqs", endpoint, region)
    for queue in stack.queues():
        create = functools.partial(sqs.create_queue, QueueName=queue.name, Attributes=queue.attributes)
        if attempt(f"queue {queue.name}", create):
            log.info("queue  %s %s", queue.name, _summary(queue.attributes))
    for queue in stack.queues():  # redrive targets exist now
        if queue.redrive_target_arn:
            policy = {"deadLetterTargetArn": queue.redrive_target_arn, "maxReceiveCount": queue.max_receive_count or 1}

            def set_redrive(name: str = queue.name, policy: dict[str, Any] = policy) -> None:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})

            attempt(f"redrive policy of {queue.name}", set_redrive)
    dynamodb = client("dynamodb", endpoint, region)
    snapshot = load_snapshot(snapshot_dir, [table.name for table in stack.tables()])
    for table in stack.tables():

        def create_table(table: TableSpec = table) -> None:
            dynamodb.create_table(**table.create_arguments)
            if table.ttl_attribute:
                dynamodb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
            with journal.suspended() if journal is not None else contextlib.nullcontext():
                restored = _restore_table(dynamodb, table.name, snapshot.tables.get(table.name, []))
            log.info("table  %s%s", table.name, f" ({restored} items restored)" if restored else "")

        attempt(f"table {table.name}", create_table)
    if journal is not None:
        replayed = journal.recover(snapshot.journal_seq)
        if replayed:
            log.info("dynamodb journal: replayed %d writes made after the last clean stop", replayed)
    s3 = client("s3", endpoint, region)
    for bucket in stack.buckets():
        create = functools.partial(
            s3.create_bucket, Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
        if attempt(f"bucket {bucket}", create):
            restored = _restore_bucket(s3, bucket, bucket_dir)
            log.info("bucket %s%s", bucket, f" ({restored} objects restored)" if restored else "")
    firehose_client = client("firehose", endpoint, region)
    for stream in stack.delivery_streams():
        destination = {
            key: value
            for key, value in stream.destination.items()
            if key in ("BucketARN", "RoleARN", "Prefix", "ErrorOutputPrefix", "CompressionFormat", "BufferingHints")
        }
        destination["BufferingHints"] = _numbers(destination.get("BufferingHints") or {})
        create = functools.partial(
            firehose_client.create_delivery_stream,
            DeliveryStreamName=stream.name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration=destination,
        )
        if attempt(f"delivery stream {stream.name}", create):
            log.info("stream %s -> s3://%s/%s (%s)", stream.name, stream.bucket, stream.prefix, stream.compression)
    sns = client("sns", endpoint, region)
    for topic in stack.topics():
        attributes = {key: value for key, value in topic.attributes.items() if key != "KmsMasterKeyId"}
        if attempt(f"topic {topic.name}", functools.partial(sns.create_topic, Name=topic.name, Attributes=attributes)):
            log.info("topic  %s", topic.name)
    for subscription in stack.subscriptions():
        if subscription.protocol == "lambda":
            continue

        def subscribe(subscription: SubscriptionSpec = subscription) -> None:
            sns.subscribe(
                TopicArn=subscription.topic_arn,
                Protocol=subscription.protocol,
                Endpoint=subscription.endpoint,
                Attributes=subscription.attributes,
                ReturnSubscriptionArn=True,
            )

        topic_name = subscription.topic_arn.rsplit(":", 1)[-1]
        if attempt(f"subscription {subscription.protocol} to {topic_name}", subscribe):
            log.info("subscription %s %s -> %s", subscription.protocol, topic_name, subscription.endpoint)
    iot = client("iot", endpoint, region)
    for iot_policy in stack.iot_policies():
        document = json.dumps(iot_policy.document)
        create = functools.partial(iot.create_policy, policyName=iot_policy.name, policyDocument=document)
        if attempt(f"IoT policy {iot_policy.name}", create):
            log.info("iot policy %s", iot_policy.name)
    return problems


def _summary(attributes: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(attributes.items()))


SNAPSHOT_FILE = "snapshot.json"


@dataclass(frozen=True)
class TableSnapshot:
    """Every table's items at a clean stop, and the last journal record they include."""

    tables: dict[str, list[dict[str, Any]]]
    journal_seq: int = 0


def load_snapshot(snapshot_dir: Path | None, table_names: Sequence[str]) -> TableSnapshot:
    """The snapshot in `snapshot_dir` (`snapshot.json`, or an older stack's `<table>.json` files)."""
    if snapshot_dir is None:
        return TableSnapshot({})
    path = snapshot_dir / SNAPSHOT_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        return TableSnapshot(dict(saved["tables"]), int(saved.get("journal_seq", 0)))
    legacy = {name: snapshot_dir / f"{name}.json" for name in table_names}
    return TableSnapshot({name: json.loads(file.read_text()) for name, file in legacy.items() if file.exists()})


def _restore_table(dynamodb: Any, name: str, items: Sequence[dict[str, Any]]) -> int:
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        dynamodb.batch_write_item(RequestItems={name: chunk})
    return len(items)


def _numbers(values: dict[str, Any]) -> dict[str, Any]:
    return {key: int(value) if str(value).isdigit() else value for key, value in values.items()}


def _restore_bucket(s3: Any, bucket: str, bucket_dir: Path | None) -> int:
    """Put back the objects `save_buckets` kept under `<bucket_dir>/<bucket>/`."""
    root = bucket_dir / bucket if bucket_dir else None
    if root is None or not root.is_dir():
        return 0
    count = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
            count += 1
    return count


def save_buckets(stack: Stack, endpoint: str, bucket_dir: Path) -> None:
    """Keep every bucket's objects in `<bucket_dir>/<bucket>/<key>` (moto holds them in memory),
    so the local archive outlives a restart as the readings do."""
    firehose.flush_all()  # what Firehose still buffers belongs in the archive too
    s3 = client("s3", endpoint, stack.context.region)
    for bucket in stack.buckets():
        root = bucket_dir / bucket
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                path = root / item["Key"]
                if ".." in Path(item["Key"]).parts:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def save_tables(stack: Stack, endpoint: str, snapshot_dir: Path, journal: DynamoDbJournal | None = None) -> None:
    """Write every table's items to `<snapshot_dir>/snapshot.json` (loaded again on start).

    The file is replaced atomically (written aside, flushed, renamed), so a crash leaves the old
    snapshot or the new one. With a journal, writes wait while the tables are read, the snapshot
    records the journal's last sequence number, and the journal is emptied once it is on disk.
    """
    dynamodb = client("dynamodb", endpoint, stack.context.region)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    with journal.compacting() if journal is not None else contextlib.nullcontext(0) as journal_seq:
        tables: dict[str, list[dict[str, Any]]] = {}
        for table in stack.tables():
            items: list[dict[str, Any]] = []
            for page in dynamodb.get_paginator("scan").paginate(TableName=table.name):
                items.extend(page["Items"])
            tables[table.name] = items
        path = snapshot_dir / SNAPSHOT_FILE
        scratch = path.with_suffix(".tmp")
        with scratch.open("w") as file:
            json.dump({"journal_seq": journal_seq, "tables": tables}, file)
            file.flush()
            os.fsync(file.fileno())
        scratch.replace(path)
        directory = os.open(snapshot_dir, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
    for table in stack.tables():  # an older stack's per-table files: now in snapshot.json
        (snapshot_dir / f"{table.name}.json").unlink(missing_ok=True)


class Delivery:
    """Sends Lambda destination records and dead letters to an SQS queue or SNS topic by ARN."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.sqs = client("sqs", endpoint, region)
        self.sns = client("sns", endpoint, region)

    def send(self, target_arn: str, body: str) -> None:
        if ":sqs:" in target_arn:
            url = self.sqs.get_queue_url(QueueName=target_arn.rsplit(":", 1)[-1])["QueueUrl"]
            self.sqs.send_message(QueueUrl=url, MessageBody=body)
        elif ":sns:" in target_arn:
            self.sns.publish(TopicArn=target_arn, Message=body)
        else:
            log.warning("destination %s is not supported locally (only SQS, SNS and Lambda)", target_arn)


def sqs_event(messages: Sequence[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping hands a function for a batch of messages."""
    records = []
    for message in messages:
        attributes = {}
        for name, value in (message.get("MessageAttributes") or {}).items():
            binary = value.get("BinaryValue")
            attributes[name] = {
                "stringValue": value.get("StringValue"),
                "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": [base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])],
                "dataType": value.get("DataType"),
            }
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": attributes,
                "md5OfBody": message.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def failed_message_ids(result: Any, batch: Sequence[dict[str, Any]]) -> set[str] | None:
    """Which messages a ReportBatchItemFailures response says failed; None means the whole batch.

    An empty or absent list means all succeeded; an identifier that is not in the batch makes
    Lambda treat the whole batch as failed, and so does this.
    """
    ids = {message["MessageId"] for message in batch}
    if result is None or (isinstance(result, dict) and not result.get("batchItemFailures")):
        return set()
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if not isinstance(failures, list):
        return None
    failed = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in ids:
            return None
        failed.add(str(identifier))
    return failed


class SqsPoller:
    """One SQS event source mapping: poll the queue, invoke the function, delete what succeeded."""

    def __init__(
        self,
        source: SqsEventSource,
        invoke: Callable[[str, dict[str, Any], str], Any],
        endpoint: str,
        region: str,
        stop: threading.Event,
    ) -> None:
        self.source = source
        self.invoke = invoke
        self.region = region
        self.stop = stop
        self.queue_name = source.queue_arn.rsplit(":", 1)[-1]
        self.sqs = client("sqs", endpoint, region)
        self.queue_url: str = self.sqs.get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        self.thread = threading.Thread(target=self._run, name=f"sqs-{self.queue_name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                if not self.poll_once():
                    self.stop.wait(POLL_SECONDS)
            except Exception as exc:  # moto stopping, a network blip: keep polling like Lambda does
                if not self.stop.is_set():
                    log.warning("sqs %s: %s", self.queue_name, exc)
                    self.stop.wait(1.0)

    def poll_once(self) -> bool:
        """Receive one batch and deliver it; False when the queue had nothing visible."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(self.source.batch_size, 10)),
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        batch: list[dict[str, Any]] = answer.get("Messages", [])
        if not batch:
            return False
        event = sqs_event(batch, self.source.queue_arn, self.region)
        try:
            result = self.invoke(self.source.function, event, f"sqs {self.queue_name}, {len(batch)} messages")
        except Exception:
            return True  # nothing deleted: the batch becomes visible again after the visibility timeout
        failed = failed_message_ids(result, batch) if self.source.report_batch_item_failures else set()
        if failed is None:
            log.warning("sqs %s: malformed batchItemFailures, the whole batch will be retried", self.queue_name)
            return True
        done = [message for message in batch if message["MessageId"] not in failed]
        if done:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return True


def with_unsubscribe_url(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """The envelope with the UnsubscribeURL SNS would put in it: the topic's region and the
    subscription's ARN (moto writes one fixed us-east-1 URL into every notification)."""
    parts = str(envelope.get("TopicArn", "")).split(":")
    if len(parts) < 6 or not parts[3]:
        return envelope
    query = urlencode({"Action": "Unsubscribe", "SubscriptionArn": subscription_arn}, safe=":")
    return envelope | {"UnsubscribeURL": f"https://sns.{parts[3]}.amazonaws.com/?{query}"}


def email_message(envelope: dict[str, Any], to: str, protocol: str = "email", display_name: str = "") -> EmailMessage:
    """The e-mail SNS sends for one notification (`email` is plain text, `email-json` the envelope)."""
    message = EmailMessage()
    message["From"] = f"{display_name or 'AWS Notifications'} <no-reply@sns.amazonaws.com>"
    message["To"] = to
    message["Subject"] = envelope.get("Subject") or "AWS Notification Message"
    try:
        sent = datetime.fromisoformat(str(envelope["Timestamp"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        sent = datetime.now(UTC)
    message["Date"] = format_datetime(sent if sent.tzinfo else sent.replace(tzinfo=UTC))
    message["Message-ID"] = f"<{envelope.get('MessageId', 'local')}@sns.amazonaws.com>"
    message["X-Amz-Sns-Topic-Arn"] = str(envelope.get("TopicArn", ""))
    message["X-Amz-Sns-Message-Id"] = str(envelope.get("MessageId", ""))
    if protocol == "email-json":
        message.set_content(json.dumps(envelope, indent=2), cte="8bit")
    else:
        footer = (
            "\n\n--\nIf you wish to stop receiving notifications from this topic, please click or visit the "
            f"link below to unsubscribe:\n{envelope.get('UnsubscribeURL', '')}\n\n"
            "Please do not reply directly to this email. (Delivered by gasmon's local stack.)\n"
        )
        message.set_content(str(envelope.get("Message", "")) + footer, cte="8bit")  # readable as a file
    return message


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:48] or "notification"


class SnsBridge:
    """Delivers SNS notifications moto cannot deliver itself (e-mail, Lambda).

    Each such subscription gets an internal SQS queue subscribed to the same topic, with the same
    filter policy; a thread long-polls it (it wakes as soon as SNS delivers, these queues have no
    delay) and hands every notification's envelope to the subscription's handler.
    """

    def __init__(self, endpoint: str, region: str, stop: threading.Event) -> None:
        self.endpoint = endpoint
        self.region = region
        self.stop = stop
        self._count = 0

    def subscribe(
        self, topic_arn: str, attributes: dict[str, str], handler: Callable[[dict[str, Any]], object], label: str
    ) -> str:
        """Subscribe a handler to a topic; returns the (internal) subscription ARN."""
        name = f"gasmon-local-sns-{self._count}"
        self._count += 1
        url = client("sqs", self.endpoint, self.region).create_queue(QueueName=name)["QueueUrl"]
        filters = {key: value for key, value in attributes.items() if key in ("FilterPolicy", "FilterPolicyScope")}
        answer = client("sns", self.endpoint, self.region).subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}",
            Attributes=filters,
            ReturnSubscriptionArn=True,
        )
        subscription_arn = str(answer["SubscriptionArn"])
        threading.Thread(
            target=self._run, args=(url, handler, label, subscription_arn), name=f"sns-{label}", daemon=True
        ).start()
        return subscription_arn

    def _run(
        self, queue_url: str, handler: Callable[[dict[str, Any]], object], label: str, subscription_arn: str
    ) -> None:
        sqs = client("sqs", self.endpoint, self.region)
        while not self.stop.is_set():
            try:
                answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception as exc:
                if not self.stop.is_set():
                    log.warning("sns %s: %s", label, exc)
                    self.stop.wait(1.0)
                continue
            for message in answer.get("Messages", []):
                try:
                    handler(with_unsubscribe_url(json.loads(message["Body"]), subscription_arn))
                except Exception:
                    log.exception("sns %s: delivery failed", label)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def sns_event(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """The event SNS hands a subscribed Lambda function for one notification."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": {
                    "Type": envelope.get("Type", "Notification"),
                    "MessageId": envelope.get("MessageId"),
                    "TopicArn": envelope.get("TopicArn"),
                    "Subject": envelope.get("Subject"),
                    "Message": envelope.get("Message"),
                    "Timestamp": envelope.get("Timestamp"),
                    "SignatureVersion": envelope.get("SignatureVersion", "1"),
                    "Signature": envelope.get("Signature", ""),
                    "SigningCertUrl": envelope.get("SigningCertURL", ""),
                    "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
                    "MessageAttributes": envelope.get("MessageAttributes", {}),
                },
            }
        ]
    }


class MailBridge:
    """SNS email subscriptions delivered as `.eml` files in the mail directory, one log line each."""

    def __init__(self, stack: Stack, bridge: SnsBridge, mail_dir: Path) -> None:
        self.bridge = bridge
        self.mail_dir = mail_dir
        self.subscriptions = [s for s in stack.subscriptions() if s.protocol in ("email", "email-json")]
        self.display_names = {topic.arn: topic.attributes.get("DisplayName", "") for topic in stack.topics()}
        self.delivered = 0

    def start(self) -> None:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        for index, subscription in enumerate(self.subscriptions):
            self.bridge.subscribe(
                subscription.topic_arn,
                subscription.attributes,
                functools.partial(self.deliver, subscription=subscription),
                f"mail-{index}",
            )

    def deliver(self, envelope: dict[str, Any], subscription: SubscriptionSpec) -> Path:
        """Write one notification to the mail directory and log it."""
        display_name = self.display_names.get(subscription.topic_arn, "")
        message = email_message(envelope, subscription.endpoint, subscription.protocol, display_name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
        path = self.mail_dir / f"{stamp}-{_slug(str(message['Subject']))}-{str(envelope.get('MessageId', ''))[:8]}.eml"
        scratch = path.with_suffix(".tmp")
        scratch.write_bytes(bytes(message))
        scratch.rename(path)  # readers never see half a message
        self.delivered += 1
        mail_log.info('to=%s subject="%s" -> %s', subscription.endpoint, message["Subject"], path)
        return path
