"""Test kit for the device tests: the REAL ingest handler behind an HTTP server, and a real MQTT broker.

`IngestGateway` does for `functions/ingest_readings/app.py` what API Gateway does: it checks the
`x-api-key` header, builds the proxy event, invokes `lambda_handler` in-process with a SQLite
store, a recording publisher and a clock, and writes the handler's answer back. It can also
pretend the network is down (the connection closes without an answer) or the store is down (503
with Retry-After), and it can hold a request so a test can kill the client mid-send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Powertools settings the template sets in AWS; metrics are not flushed anywhere in tests.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "gasmon-ingest")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "gasmon")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from gasmon.adapters.sqlite_store import SqliteReadingStore  # noqa: E402
from gasmon_local.functions import load_handler  # noqa: E402

API_KEY = "device-test-key"


class LambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name = "IngestReadingsFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:IngestReadingsFunction"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


class RecordingPublisher:
    """The handler's `MessagePublisher`: keeps what would go to AWS IoT (warnings on pi/1)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        self.messages.append((topic, payload))


@dataclass
class GatewayRequest:
    """One request the gateway answered: how many documents it carried and the status it got."""

    documents: int
    status: int
    body: dict[str, Any] | None = None


@dataclass
class IngestGateway:
    store: SqliteReadingStore
    clock: Callable[[], datetime]
    api_key: str = API_KEY
    mode: str = "up"  # "up" | "down" (no answer, connection closed) | "unavailable" (503)
    retry_after: int = 7
    # Called with "before" (nothing stored yet) and "after" (stored, answer not sent) for each request.
    on_request: Callable[[str], None] | None = None
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    requests: list[GatewayRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handler = load_handler("functions/ingest_readings")
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                gateway.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/readings"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def stored(self) -> int:
        return self.store.count()

    def stored_rows(self) -> list[tuple[str, str, str, float]]:
        with self.store._lock:
            rows = self.store._conn.execute(
                "SELECT groupid, sensorid, createdtime, value FROM readings ORDER BY createdtime, sensorid"
            ).fetchall()
        return [tuple(row) for row in rows]

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length)
        try:
            documents = len(json.loads(body)) if body.startswith(b"[") else 1
        except ValueError:
            documents = 0
        if self.mode == "down":
            request.close_connection = True  # as if the network dropped: no answer at all
            return
        if self.mode == "unavailable":
            answer = {"error": "the reading store is unavailable", "code": "store_unavailable", "details": []}
            self._reply(request, 503, {"Retry-After": str(self.retry_after)}, json.dumps(answer).encode(), documents)
            return
        if request.headers.get("x-api-key") != self.api_key:
            self._reply(request, 403, {}, b'{"message":"Forbidden"}', documents)  # API Gateway's answer
            return
        if self.on_request:
            self.on_request("before")
        with self._lock:  # the handler's resolver keeps per-request state in module globals
            result = self.handler(
                self._event(request, body),
                LambdaContext(),
                store=self.store,
                publisher=self.publisher,
                clock=self.clock,
            )
        if self.on_request:
            self.on_request("after")
        headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(values)
        payload = result.get("body") or ""
        raw = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self._reply(request, int(result["statusCode"]), headers, raw, documents)

    def _event(self, request: BaseHTTPRequestHandler, body: bytes) -> dict[str, Any]:
        path = request.path.split("?")[0]
        headers = dict(request.headers.items())
        return {
            "resource": path,
            "path": path,
            "httpMethod": "POST",
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": path,
                "httpMethod": "POST",
                "path": f"/Prod{path}",
                "stage": "Prod",
                "requestId": str(uuid.uuid4()),
                "identity": {"sourceIp": "127.0.0.1", "apiKey": self.api_key, "apiKeyId": "test"},
                "requestTimeEpoch": int(self.clock().timestamp() * 1000),
            },
            "body": body.decode(),
            "isBase64Encoded": False,
        }

    def _reply(
        self, request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes, documents: int
    ) -> None:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        self.requests.append(GatewayRequest(documents, status, parsed if isinstance(parsed, dict) else None))
        try:
            request.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection"):
                    request.send_header(name, value)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client is gone (the kill -9 tests)


# ---------------------------------------------------------------------------------------------
# MQTT broker (amqtt) in a background thread


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BrokerThread:
    """An amqtt broker on 127.0.0.1, run by its own event loop on a daemon thread."""

    def __init__(self, listeners: dict[str, Any] | None = None) -> None:
        from amqtt.broker import Broker

        self.port = free_port()
        config = {
            "listeners": listeners or {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self.loop = asyncio.new_event_loop()
        self.broker = Broker(config, loop=self.loop)
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.broker.start())
            except BaseException as exc:  # surfaced to the test below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self.thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"the MQTT broker did not start: {failure}")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
