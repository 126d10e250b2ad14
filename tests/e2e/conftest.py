"""A small same-origin stack for the dashboard's browser test, until `make local` lands.

One HTTP server on 127.0.0.1 that does what API Gateway does for these routes: it builds REST
proxy events and invokes the real handlers in-process: POST /readings (ingest, SQLite store),
GET /series, /devices, /warnings, /alerts, /alarms (query, same SQLite store, a fake presence
source) with the API key enforced, and every other GET from the static-dashboard function without
a key. `dashboard_stack` runs without alarms (no ALARM_TABLE: plain warnings, GET /alarms says
`configured: false`); `dashboard_stack_with_alarms` gives ingest and query one in-memory alarm
store, so alarms open and clear through the real alarm code and the page reads them back.
"""

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.models import DeviceStatus, DisconnectAlert
from gasmon_local.functions import load_handler
from tests.fakes import MemoryAlarmStore

API_KEY = "e2e-dashboard-key"
QUERY_PATHS = {"/series", "/devices", "/warnings", "/alerts", "/alarms"}


@dataclass
class FakePresence:
    """A `DeviceStatusSource` the test sets: what presence's table would say."""

    states: dict[str, DeviceStatus] = field(default_factory=dict)
    alerts: list[DisconnectAlert] = field(default_factory=list)

    @property
    def configured(self) -> bool:
        return True

    def statuses(self) -> dict[str, DeviceStatus]:
        return dict(self.states)

    def recent_alerts(
        self, since: datetime, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[DisconnectAlert]:
        found = [a for a in self.alerts if a.disconnected_at >= since]
        found.sort(key=lambda a: (a.disconnected_at, a.client_id), reverse=True)
        return found[:limit]


class RecordingPublisher:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        self.messages.append((topic, payload))


@dataclass
class DashboardStack:
    url: str
    api_key: str
    store: SqliteReadingStore
    presence: FakePresence
    publisher: RecordingPublisher
    alarms: MemoryAlarmStore | None = None


def _server(
    store: SqliteReadingStore,
    presence: FakePresence,
    publisher: RecordingPublisher,
    alarms: MemoryAlarmStore | None,
    rest_event: Callable[..., dict[str, Any]],
    context: Any,
) -> ThreadingHTTPServer:
    ingest = load_handler("functions/ingest_readings")
    query = load_handler("functions/query_readings")
    static = load_handler("functions/serve_dashboard")
    # Each handler module holds one resolver whose context is per invocation: one at a time.
    lock = threading.Lock()

    class Gateway(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output readable
            pass

        def _answer(self, result: dict[str, Any]) -> None:
            body = result.get("body") or ""
            payload = body.encode()
            self.send_response(int(result["statusCode"]))
            headers = dict(result.get("headers") or {})
            for name, values in (result.get("multiValueHeaders") or {}).items():
                headers.setdefault(name, values[-1])
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _invoke(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            event = rest_event(method, parts.path, dict(parse_qsl(parts.query)) or None, body, dict(self.headers))
            needs_key = parts.path in QUERY_PATHS or parts.path == "/readings"
            if needs_key and self.headers.get("x-api-key") != API_KEY:
                self._answer({"statusCode": 403, "headers": {"Content-Type": "application/json"},
                              "body": json.dumps({"message": "Forbidden"})})  # fmt: skip
                return
            with lock:
                if parts.path == "/readings":
                    result = ingest(event, context, store=store, publisher=publisher, alarm_store=alarms)
                elif parts.path in QUERY_PATHS:
                    result = query(event, context, queries=store, presence=presence, alarm_store=alarms)
                else:
                    result = static(event, context)
            self._answer(result)

        def do_GET(self) -> None:
            self._invoke("GET")

        def do_POST(self) -> None:
            self._invoke("POST")

    return ThreadingHTTPServer(("127.0.0.1", 0), Gateway)


def _stack(
    tmp_path: Path, alarms: MemoryAlarmStore | None, rest_event: Callable[..., dict[str, Any]], context: Any
) -> Iterator[DashboardStack]:
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    presence = FakePresence()
    publisher = RecordingPublisher()
    server = _server(store, presence, publisher, alarms, rest_event, context)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-stack", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield DashboardStack(f"http://{host}:{port}/", API_KEY, store, presence, publisher, alarms)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        store.close()


@pytest.fixture
def dashboard_stack(
    tmp_path: Path, api_event: Callable[..., dict[str, Any]], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DashboardStack]:
    monkeypatch.delenv("ALARM_TABLE", raising=False)  # the handlers' settings then build no alarm store
    yield from _stack(tmp_path, None, api_event, lambda_context)


@pytest.fixture
def dashboard_stack_with_alarms(
    tmp_path: Path, api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> Iterator[DashboardStack]:
    yield from _stack(tmp_path, MemoryAlarmStore(), api_event, lambda_context)
