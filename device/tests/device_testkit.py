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
import ipaddress
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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


def _device_identity(body: bytes) -> dict[str, str]:
    """What the authorizer would say for the posting device: these tests give every device the
    one key, so the first document names the device (its deviceid, else its group)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    first = parsed[0] if isinstance(parsed, list) and parsed else parsed
    first = first if isinstance(first, dict) else {}
    group = str(first.get("groupid") or "1")
    return {"role": "device", "name": str(first.get("deviceid") or group), "groupid": group}


@dataclass
class IngestGateway:
    store: SqliteReadingStore
    clock: Callable[[], datetime]
    api_key: str = API_KEY
    mode: str = "up"  # "up" | "down" (no answer, connection closed) | "unavailable" (503)
    retry_after: int = 7
    # Called with ("before", documents) before the handler runs and ("after", documents) once it has
    # stored them but before the answer is sent. Returning False at "before" abandons the request
    # (the connection closes and the handler never runs), as when a client dies before its request
    # is complete.
    on_request: Callable[[str, int], bool | None] | None = None
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
        if self.on_request and self.on_request("before", documents) is False:
            request.close_connection = True
            return
        with self._lock:  # the handler's resolver keeps per-request state in module globals
            result = self.handler(
                self._event(request, body),
                LambdaContext(),
                store=self.store,
                publisher=self.publisher,
                clock=self.clock,
            )
        if self.on_request:
            self.on_request("after", documents)
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
                "authorizer": _device_identity(body),
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
    """An amqtt broker on 127.0.0.1, run by its own event loop on a daemon thread.

    With `tls`, the listener speaks TLS with the server certificate and verifies any client
    certificate against the CA (amqtt uses CERT_OPTIONAL: a presented certificate must be valid).
    """

    def __init__(self, tls: TlsFiles | None = None, allow_anonymous: bool = True) -> None:
        from amqtt.broker import Broker

        self.port = free_port()
        listener: dict[str, Any] = {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}
        if tls is not None:
            listener |= {
                "ssl": True,
                "cafile": str(tls.ca),
                "certfile": str(tls.server_cert),
                "keyfile": str(tls.server_key),
            }
        config = {
            "listeners": {"default": listener},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": allow_anonymous}},
        }
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                # Built on its own loop's thread: amqtt creates futures on the current loop in __init__.
                self.broker = Broker(config, loop=self.loop)
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


class Watcher:
    """A plain paho client that records every message on the topics it watches."""

    def __init__(self, port: int, *topics: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes]] = []
        self._changed = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self.client.on_message = self._record
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics])
        if not subscribed.wait(5):
            raise RuntimeError("the watcher could not subscribe")

    def _record(self, client: Any, userdata: Any, message: Any) -> None:
        with self._changed:
            self.messages.append((message.topic, bytes(message.payload)))
            self._changed.notify_all()

    def on(self, topic: str) -> list[bytes]:
        with self._changed:
            return [payload for seen, payload in self.messages if seen == topic]

    def wait_for(self, topic: str, count: int, timeout: float = 10.0) -> list[bytes]:
        """Wait until `count` messages arrived on `topic`; return them (fewer on timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.on(topic)) < count and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            return self.on(topic)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path, *, client_ca_name: str = "gasmon test CA") -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (signed by a CA named
    `client_ca_name`: a different name makes a second, untrusted CA)."""

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def issue(
        ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common: str, server: bool
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = make_ca("gasmon test CA")
    server_key, server_cert = issue(ca_key, ca_cert, "127.0.0.1", server=True)
    if client_ca_name == "gasmon test CA":
        client_ca_key, client_ca_cert = ca_key, ca_cert
    else:
        client_ca_key, client_ca_cert = make_ca(client_ca_name)
    client_key, client_cert = issue(client_ca_key, client_ca_cert, "sub-pi", server=False)
    return TlsFiles(
        ca=write_cert(ca_cert, directory / "AmazonRootCA1.pem"),
        server_cert=write_cert(server_cert, directory / "server.pem.crt"),
        server_key=write_key(server_key, directory / "server.pem.key"),
        client_cert=write_cert(client_cert, directory / "device.pem.crt"),
        client_key=write_key(client_key, directory / "private.pem.key"),
    )
