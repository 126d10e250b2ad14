"""gasmon_local.aws.MotoServer: moto's app behind a keep-alive server, and a dispatcher that
remembers which backend serves a host (gasmon_local.moto_fixes.CachedDispatcher)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import moto.backends
import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from gasmon_local import aws, moto_fixes

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[aws.MotoServer]:
    server = aws.MotoServer(port=0)
    server.start()
    yield server
    server.stop()


def _list_tables(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
    connection.request(
        "POST",
        "/",
        body=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20200101/{REGION}/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    return connection.getresponse()


def test_one_connection_carries_many_aws_calls(moto_server: aws.MotoServer) -> None:
    # Given one HTTP/1.1 connection to the stack's moto server, as a function environment keeps
    connection = http.client.HTTPConnection(moto_server.host, moto_server.port, timeout=10)
    try:
        first = _list_tables(connection)
        first.read()
        sock = connection.sock
        assert isinstance(sock, socket.socket)
        # When it makes two more calls
        answers = []
        for _ in range(2):
            answer = _list_tables(connection)
            answers.append((answer.status, json.loads(answer.read()), answer.getheader("Connection")))
        # Then each is answered on that same socket: the server did not close it after a call
        assert connection.sock is sock
        assert first.status == 200 and first.getheader("Connection") != "close"
        assert [status for status, _, _ in answers] == [200, 200]
        assert all("TableNames" in body and header != "close" for _, body, header in answers)
    finally:
        connection.close()


def test_s3_keys_with_escaped_characters_round_trip(moto_server: aws.MotoServer) -> None:
    # Given a bucket, and keys whose characters a client percent-encodes in the path
    s3 = aws.client("s3", moto_server.url, REGION)
    s3.create_bucket(Bucket="raw-uri", CreateBucketConfiguration={"LocationConstraint": REGION})
    keys = ["readings/dt=2026-12-08/a b+c.gz", "readings/dt=2026-12-08/slash%2Finside", "é/ü"]
    # When each is written and read back through the server
    for key in keys:
        s3.put_object(Bucket="raw-uri", Key=key, Body=key.encode())
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket="raw-uri")["Contents"]}
    bodies = {key: s3.get_object(Bucket="raw-uri", Key=key)["Body"].read() for key in keys}
    # Then the keys are the ones written, each with its own body
    assert listed == set(keys)
    assert bodies == {key: key.encode() for key in keys}


def test_a_taken_port_is_an_error_naming_moto() -> None:
    # Given a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # When the stack's moto server is asked for it
        with pytest.raises(OSError) as raised:
            aws.MotoServer(port=port).start()
    # Then the error says which server could not listen where
    assert f"moto cannot listen on 127.0.0.1:{port}" in str(raised.value)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "dynamodb",
        "firehose.eu-west-1.amazonaws.com",
        "sqs.eu-west-1.amazonaws.com",
        "s3.amazonaws.com",
        "iot.us-east-1.amazonaws.com",
        "nothing-here.example",
    ],
)
def test_the_cached_dispatcher_picks_the_backend_moto_picks(host: str | None) -> None:
    # Given moto's own dispatcher and the cached one
    plain = DomainDispatcherApplication(create_backend_app)
    cached = moto_fixes.CachedDispatcher(create_backend_app)
    # When each resolves the host, the cached one twice
    expected = plain.get_backend_for_host(host)
    # Then both answers are moto's
    assert cached.get_backend_for_host(host) == expected
    assert cached.get_backend_for_host(host) == expected


def test_the_cached_dispatcher_resolves_a_host_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a dispatcher, and a count of moto's package listings (its per-request cost)
    listings: list[int] = []
    original = moto.backends.list_of_moto_modules

    def counted() -> Any:
        listings.append(1)
        return original()

    monkeypatch.setattr(moto.backends, "list_of_moto_modules", counted)
    cached = moto_fixes.CachedDispatcher(create_backend_app)
    # When one host is resolved a hundred times
    answers = {cached.get_backend_for_host("firehose.eu-west-1.amazonaws.com") for _ in range(100)}
    # Then moto's package was listed once, and the answer is moto's firehose backend
    assert answers == {"firehose"}
    assert len(listings) == 1


def test_the_cached_dispatcher_keeps_a_bounded_number_of_hosts() -> None:
    # Given a dispatcher
    cached = moto_fixes.CachedDispatcher(create_backend_app)
    # When more distinct hosts than it keeps are resolved (a request names its host)
    for n in range(moto_fixes.MAX_CACHED_HOSTS + 50):
        cached.get_backend_for_host(f"dynamodb.region-{n}.amazonaws.com")
    # Then it remembers no more than its bound, and still answers past it
    assert len(cached._backends) == moto_fixes.MAX_CACHED_HOSTS
    assert cached.get_backend_for_host("dynamodb.region-9999.amazonaws.com") == "dynamodb"
