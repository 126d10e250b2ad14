"""The production iot-data publisher (real boto3) against an HTTP endpoint on this machine.

boto3's standard endpoint setting is how `make local` points it at the embedded broker; here a
small server records what AWS IoT Core's Publish API would receive.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from gasmon.adapters.iot_publisher import IotDataPublisher
from gasmon.errors import PublishError


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(
                {
                    "topic": unquote(url.path.removeprefix("/topics/")),
                    "qos": parse_qs(url.query).get("qos", [""])[0],
                    "payload": json.loads(body),
                    "signed": self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"),
                }
            )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_publish_reaches_the_topic_with_qos_1_signed(endpoint: Any) -> None:
    url, received = endpoint
    IotDataPublisher(endpoint_url=url, region="ap-northeast-2").publish("pi/1", {"warning": "no2 warning"})
    assert received == [{"topic": "pi/1", "qos": "1", "payload": {"warning": "no2 warning"}, "signed": True}]


def test_unreachable_endpoint_is_a_publish_error() -> None:
    publisher = IotDataPublisher(endpoint_url="http://127.0.0.1:9", region="ap-northeast-2")
    with pytest.raises(PublishError):
        publisher.publish("pi/1", {"warning": "no2 warning"})
