"""Ingest's signed-HTTP clients against what answers here: a scripted server on 127.0.0.1 for the
retries and error mapping botocore's standard mode would apply, and moto's server for the hot
path's real calls (the alarm table's BatchGetItem, the rate limiter's UpdateItem, Firehose's
PutRecordBatch), each checked against what botocore reads back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
from gasmon.adapters.dynamodb_registry import DynamoDbRateLimiter
from gasmon.adapters.signed_http import DYNAMODB, AwsJsonClient
from gasmon.adapters.timeouts import CLIENT_BUDGETS, ClientBudget
from gasmon.errors import AlarmStoreUnavailableError
from gasmon.models import AlarmState, GasThresholds
from gasmon_local import aws
from gasmon_local.functions import ROOT
from gasmon_local.template import Stack, StackContext

REGION = "ap-northeast-2"


class Scripted:
    """Answers requests with the (status, body) pairs it is given, in order; records what came."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]]], hang_up: bool = False) -> None:
        self.answers = answers
        self.received: list[dict[str, Any]] = []
        self.peers: set[int] = set()  # client ports: one per connection
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None: ...

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                scripted.received.append({"headers": dict(self.headers.items()), "body": json.loads(body)})
                scripted.peers.add(self.client_address[1])
                # Close after answering without saying so: what an idle timeout does between requests.
                self.close_connection = hang_up
                status, answer = scripted.answers.pop(0)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.hung_up = threading.Event()  # set once the server has closed a connection

        class Server(ThreadingHTTPServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                scripted.hung_up.set()

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in aws.FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")


def scripted(answers: list[tuple[int, dict[str, Any]]]) -> Iterator[tuple[Scripted, AwsJsonClient]]:
    server = Scripted(answers)
    sleeps: list[float] = []
    client = AwsJsonClient(DYNAMODB, REGION, endpoint_url=server.url, sleep=sleeps.append)
    try:
        yield server, client
    finally:
        server.close()


THROTTLED = (
    400,
    {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "message": "slow"},
)
OK = (200, {"Responses": {"t": []}})


def test_a_throttled_or_5xx_answer_is_retried_within_the_budget(credentials: None) -> None:
    # Given the ladder's DynamoDB budget (2 attempts) and a server that throttles once
    assert CLIENT_BUDGETS["dynamodb"].attempts == 2
    for first in (THROTTLED, (503, {})):
        for server, client in scripted([first, OK]):
            # When BatchGetItem is called
            answer = client.batch_get_item(RequestItems={"t": {"Keys": []}})
            # Then the second attempt's answer is returned, signed and targeted as DynamoDB expects
            assert answer == {"Responses": {"t": []}} and len(server.received) == 2
            headers = server.received[0]["headers"]
            assert headers["X-Amz-Target"] == "DynamoDB_20120810.BatchGetItem"
            assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
            assert "/ap-northeast-2/dynamodb/aws4_request" in headers["Authorization"]
            assert headers["X-Amz-Security-Token"] == "session-token"


def test_past_the_budget_the_error_is_botocores_client_error_with_the_services_code(credentials: None) -> None:
    for server, client in scripted([THROTTLED, THROTTLED, OK]):
        with pytest.raises(ClientError) as raised:
            client.batch_get_item(RequestItems={})
        assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert len(server.received) == 2  # the budget's attempts, not one more


def test_a_refusal_for_good_is_not_retried_and_keeps_its_details(credentials: None) -> None:
    cancelled = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled",
        "CancellationReasons": [{"Code": "ConditionalCheckFailed"}],
    }
    for server, client in scripted([(400, cancelled)]):
        with pytest.raises(ClientError) as raised:
            client.update_item(TableName="t", Key={})
        assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
        assert raised.value.response["CancellationReasons"] == [{"Code": "ConditionalCheckFailed"}]
        assert len(server.received) == 1


def test_no_answer_is_botocores_endpoint_connection_error_after_the_budgets_attempts(credentials: None) -> None:
    # Given nothing listening (a port just freed)
    server = Scripted([])
    url = server.url
    server.close()
    budget = ClientBudget(connect=0.5, read=0.5, attempts=2)
    client = AwsJsonClient(DYNAMODB, REGION, endpoint_url=url, budget=budget, sleep=lambda _: None)
    with pytest.raises(EndpointConnectionError):
        client.batch_get_item(RequestItems={})
    # And the alarm store turns it into "unavailable": ingest answers 503, the device retries
    store = DynamoDbAlarmStore("t", region=REGION, reader=client)
    with pytest.raises(AlarmStoreUnavailableError):
        store.load([("pi-1", "no2")])


def test_a_kept_alive_connection_the_server_closed_is_replaced_not_failed(credentials: None) -> None:
    # Given a server that closes each connection after answering, without a Connection: close
    server = Scripted([OK, OK], hang_up=True)
    client = AwsJsonClient(DYNAMODB, REGION, endpoint_url=server.url, sleep=lambda _: pytest.fail("no retry"))
    try:
        # When a second call follows once the server has hung up on the first one's connection
        first = client.batch_get_item(RequestItems={})
        assert server.hung_up.wait(5)
        second = client.batch_get_item(RequestItems={})
        # Then both are answered at the first attempt, the second on a new connection
        assert first == second == {"Responses": {"t": []}}
        assert len(server.received) == 2 and len(server.peers) == 2
    finally:
        server.close()


def test_a_server_that_keeps_connections_alive_gets_both_calls_on_one(credentials: None) -> None:
    server = Scripted([OK, OK])
    client = AwsJsonClient(DYNAMODB, REGION, endpoint_url=server.url)
    try:
        client.batch_get_item(RequestItems={})
        client.batch_get_item(RequestItems={})
        assert len(server.peers) == 1
    finally:
        server.close()


# ---- On moto's server: the hot path's calls, read back through botocore ----


@pytest.fixture
def moto(credentials: None, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    server = aws.MotoServer(port=0)
    endpoint = server.start()
    stack = Stack.from_file(ROOT / "template.yaml", StackContext(stack_name=f"sh{tmp_path.name[-8:]}"))
    problems = aws.create_resources(stack, endpoint)
    try:
        assert not [p for p in problems if "table" in p or "stream" in p], problems
        yield stack, endpoint
    finally:
        server.stop()


def test_the_alarm_store_reads_states_and_thresholds_with_signed_requests(moto: tuple[Stack, str]) -> None:
    stack, endpoint = moto
    table = stack.functions()["IngestFunction"].environment["ALARM_TABLE"]
    # Given a state and group thresholds written through botocore
    writer = DynamoDbAlarmStore(table, region=REGION, endpoint_url=endpoint)
    at = datetime(2026, 12, 7, tzinfo=UTC)
    writer.save(AlarmState(device="pi-1", gas="no2", watermark=at))
    writer.put_thresholds(("group", "2"), {"no2": GasThresholds(warning=60, critical=200)})
    # When ingest's store (signed reader, no botocore client) loads them
    reader = DynamoDbAlarmStore(table, region=REGION, reader=AwsJsonClient(DYNAMODB, REGION, endpoint_url=endpoint))
    snapshot = reader.load([("pi-1", "no2"), ("pi-2", "co")], [("group", "2")])
    # Then it reads what botocore wrote, in one request, and built no botocore client
    assert snapshot.states[("pi-1", "no2")].version == 1 and snapshot.states[("pi-1", "no2")].watermark == at
    assert snapshot.states[("pi-2", "co")].version == 0
    assert snapshot.overrides[("group", "2")]["no2"].warning == 60
    assert reader.reads == 1 and reader._client is None


def test_the_rate_limiter_counts_with_signed_requests(moto: tuple[Stack, str]) -> None:
    stack, endpoint = moto
    table = stack.functions()["IngestFunction"].environment["DEVICE_TABLE"]
    limiter = DynamoDbRateLimiter(table, 2, REGION, client=AwsJsonClient(DYNAMODB, REGION, endpoint_url=endpoint))
    now = datetime(2026, 12, 7, 12, 0, 10, tzinfo=UTC)
    # The third POST of a minute is refused (ConditionalCheckFailedException), a new minute is not
    assert [limiter.allow("pi-x", now) for _ in range(3)] == [True, True, False]
    assert limiter.allow("pi-x", now + timedelta(minutes=1))
    item = aws.client("dynamodb", endpoint, REGION).get_item(
        TableName=table, Key={"pk": {"S": f"rate#pi-x#{int(now.timestamp()) // 60}"}}
    )["Item"]
    assert item["requests"] == {"N": "2"}
