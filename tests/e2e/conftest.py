"""What the end-to-end tests share: readings as Pis post them, MQTT devices, the browser.

- Readings: `document` builds a seed-shaped document, `Hour` an hour of them from two Pis, `post`
  sends them as a Pi does (`x-api-key`).
- Devices: `device` connects an MQTT client as a Pi does, `drop` loses its TCP connection without
  a DISCONNECT, `wait_for_mail` waits for the disconnect e-mail presence sends.
- The browser: `browser` is Debian's Chromium driven by Playwright (never downloaded),
  `open_last_hour` opens the dashboard as an operator does.
- A small same-origin stack for the dashboard's in-process browser tests (`dashboard_stack`):
  one HTTP server on 127.0.0.1 that does what API Gateway does for these routes. It builds REST
  proxy events and invokes the real handlers in-process: POST /readings (ingest, SQLite store),
  GET /series, /devices, /warnings, /alerts, /alarms, /config (query, same SQLite store, a fake presence
  source) with the API key enforced, and every other GET from the static-dashboard function
  without a key. It runs without alarms (no ALARM_TABLE: plain warnings, GET /alarms says
  `configured: false`); the dashboard with alarms and real presence is tested against
  `gasmon-local` itself (test_dashboard_local_stack.py).
"""

import json
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.query_models import DeviceStatus, DisconnectAlert
from gasmon_local.functions import ROOT, load_handler
from gasmon_local.process import StackProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The README's pictures, rewritten by `make screenshots` (GASMON_UPDATE_SCREENSHOT=1).
DESKTOP_SCREENSHOT = ROOT / "docs" / "dashboard-desktop.png"
PHONE_SCREENSHOT = ROOT / "docs" / "dashboard-phone.png"
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
SEOUL = ZoneInfo("Asia/Seoul")
SEED_GPS = "37.61002501514269, 126.99636868892937"
WAIT = 20.0  # seconds: how long anything the stack does may take on a loaded machine


# ---- readings, as Pis post them ----


def seed_time(moment: datetime) -> str:
    """A `createdtime` the way the seed's Pi writes it: Seoul wall time, no zone."""
    return moment.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(moment: datetime) -> str:
    """A `createdtime` in ISO-8601 with the Pi's offset, as the device agent writes it."""
    return moment.astimezone(SEOUL).isoformat(timespec="seconds")


def document(
    deviceid: str | None, groupid: str, at: datetime, stamp: Callable[[datetime], str] = seed_time, **values: float
) -> dict[str, Any]:
    sensors = {"co": ("0005", "8"), "no2": ("0006", "9"), "c2h5oh": ("0007", "27"), "h2": ("0008", "30")}
    doc: dict[str, Any] = {"groupid": groupid, "gps": SEED_GPS}
    if deviceid:
        doc["deviceid"] = deviceid
    for gas, value in values.items():
        sensorid, sensortype = sensors[gas]
        doc[gas] = {
            "sensorid": sensorid,
            "sensortype": sensortype,
            "value": f"{value:.2f}",
            "createdtime": stamp(at),
        }
    return doc


def post(url: str, key: str, body: Any) -> dict[str, Any]:
    """POST readings to the API at `url` (ending in /) with the key; the answer must be a 200."""
    request = urllib.request.Request(
        url + "readings",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "x-api-key": key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        assert response.status == 200
        return dict(json.loads(response.read()))


def post_batch(url: str, key_for: Callable[[str | None, str], str], batch: list[dict[str, Any]]) -> dict[str, Any]:
    """POST a batch mixing several devices' documents as the devices do: each run of one device's
    documents with that device's own key (`key_for(deviceid, groupid)`); the counts are summed."""
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0, "warnings": 0}
    runs: list[tuple[tuple[str | None, str], list[dict[str, Any]]]] = []
    for doc in batch:
        owner = (doc.get("deviceid"), str(doc["groupid"]))
        if runs and runs[-1][0] == owner:
            runs[-1][1].append(doc)
        else:
            runs.append((owner, [doc]))
    for (deviceid, groupid), docs in runs:
        answer = post(url, key_for(deviceid, groupid), docs)
        for name in totals:
            totals[name] += int(answer[name])
    return totals


def provision(stack: StackProcess, thing: str, group: str, location: str | None = None) -> dict[str, Any]:
    """`gasmon-admin --endpoints-file ... provision` against the running stack, as an operator runs it."""
    command = [str(Path(sys.executable).with_name("gasmon-admin")), "--endpoints-file"]
    command += [str(stack.data_dir / "endpoints.json"), "provision", thing, "--group", group]
    command += ["--out", str(stack.data_dir / "devices" / thing)]
    command += ["--location", location] if location else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def get(url: str, key: str, path: str) -> dict[str, Any]:
    """GET a query route of the API at `url` (ending in /) with the key."""
    request = urllib.request.Request(url + path, headers={"x-api-key": key})
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return dict(json.loads(response.read()))


class Hour:
    """An hour of readings from two Pis, and optionally a seed-style document, ending `now`.

    The first Pi (`devices[0]`, group 2) posts every minute with one NO2 reading over the 88 line
    (95.50, 20 minutes ago); the second (group 3) posts every minute until 10 minutes ago;
    `seed_group` posts one seed document without a device id. `co_spike` makes the second Pi's
    last two CO readings 60 and 240 (warning 35, critical 200). `stamp` writes `createdtime`.
    """

    def __init__(
        self,
        now: datetime,
        co_spike: bool = False,
        devices: tuple[str, str] = ("pi-1", "pi-2"),
        stamp: Callable[[datetime], str] = seed_time,
        seed_group: str | None = "7",
    ) -> None:
        self.now = now
        first, second = devices
        self.pi1_times = [now - timedelta(minutes=minutes) for minutes in range(58, 0, -1)]
        self.pi2_times = [now - timedelta(minutes=minutes, seconds=20) for minutes in range(58, 9, -1)]
        batch = [
            document(
                first,
                "2",
                at,
                stamp,
                no2=50 + 12 * math.sin(i / 5),
                co=4 + 2 * math.sin(i / 7),
                c2h5oh=180 + i,
                h2=420 + 3 * i,
            )
            for i, at in enumerate(self.pi1_times)
        ]
        batch[38]["no2"]["value"] = "95.50"
        pi2 = [
            document(second, "3", at, stamp, no2=30 + 4 * math.sin(i / 4), co=11) for i, at in enumerate(self.pi2_times)
        ]
        if co_spike:
            pi2[-2]["co"]["value"], pi2[-1]["co"]["value"] = "60.00", "240.00"
        no2_times = [*self.pi1_times, *self.pi2_times]
        self.batch = [*batch, *pi2]
        if seed_group is not None:
            seed_at = now - timedelta(seconds=150)
            self.batch.append(document(None, seed_group, seed_at, stamp, no2=20))
            no2_times.append(seed_at)
        self.no2_minutes = {int(at.timestamp()) // 60 for at in no2_times}


# ---- devices on MQTT, and the presence e-mails about them ----


def device(stack: StackProcess, client_id: str, will: dict[str, Any] | None = None) -> mqtt.Client:
    """An MQTT client connected to the stack's broker as a Pi connects (with `will` as Last Will)."""
    host, port = stack.mqtt_address()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if will is not None:
        client.will_set(f"my/things/{client_id}/update", json.dumps(will), qos=1)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    assert connected.wait(WAIT)
    return client


def drop(client: mqtt.Client) -> None:
    """Lose the TCP connection without an MQTT DISCONNECT, as a Pi losing power or network does."""
    client.loop_stop()
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def mails_naming(stack: StackProcess, client_id: str) -> list[Path]:
    mail_dir = Path(stack.endpoints["mail_dir"])
    return [path for path in sorted(mail_dir.glob("*.eml")) if client_id in path.read_text(errors="replace")]


def wait_for_mail(stack: StackProcess, client_id: str, timeout: float) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := mails_naming(stack, client_id):
            return found
        time.sleep(0.1)
    return []


# ---- the browser, and the dashboard in it ----


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def open_dashboard(
    browser: Any,
    url: str,
    api_key: str,
    problems: list[str] | None = None,
    init_script: str | None = None,
    **context: Any,
) -> Any:
    """Open the page at desktop size, give it the API key once, wait for the first refresh.

    `problems` collects what the browser's console would show in red: uncaught script errors,
    console errors, and failed loads (a 404 for a file the page asks for is logged as an error).
    `init_script` runs before the page's own; `context` goes to the browser context (a
    `timezone_id`, say).
    """
    browser_context = browser.new_context(viewport=DESKTOP, **context)
    if init_script:
        browser_context.add_init_script(init_script)
    page = browser_context.new_page()
    if problems is not None:
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.goto(url)
    page.wait_for_selector("#settings[open]")
    page.fill("#api-key", api_key)
    page.click("#settings button[type=submit]")
    wait_for_refreshes(page, 1)
    return page


def wait_for_refreshes(page: Any, count: int) -> None:
    page.wait_for_function(f"() => Number(document.body.dataset.refreshes || 0) >= {count}", timeout=30_000)


def refreshed(page: Any, action: Callable[[], None]) -> None:
    """Do `action` (a click, a choice) and wait for the refresh it starts to finish."""
    before = int(page.evaluate("Number(document.body.dataset.refreshes || 0)"))
    action()
    wait_for_refreshes(page, before + 1)


def open_last_hour(browser: Any, url: str, api_key: str, problems: list[str] | None = None, **options: Any) -> Any:
    """Open the page as `open_dashboard` does, then pick the last hour and wait for that refresh."""
    page = open_dashboard(browser, url, api_key, problems, **options)
    refreshed(page, lambda: page.click("[data-range='1h']"))
    return page


def _datasets(gas: str) -> str:
    """JavaScript for the Chart.js datasets of the gas's chart (each has a `role`: device, max,
    min, warning or critical; a device's have its `device`)."""
    return f"Chart.getChart(document.querySelector(\"canvas[data-gas='{gas}']\")).data.datasets"


def device_lines(page: Any, gas: str) -> dict[str, int]:
    """The gas's chart as Chart.js draws it: each device's line and how many points hold a value."""
    script = (
        f"Object.fromEntries({_datasets(gas)}.filter((d) => d.role === 'device')"
        ".map((d) => [d.device, d.data.filter((p) => p.y !== null).length]))"
    )
    return dict(page.evaluate(script))


def level_line(page: Any, gas: str, level: str) -> list[float]:
    """The y values of the gas's dashed `warning` or `critical` line ([] when it has none)."""
    return list(
        page.evaluate(f"({_datasets(gas)}.find((d) => d.role === '{level}') || {{data: []}}).data.map((p) => p.y)")
    )


def no_overflow_at_phone_width(page: Any, name: str) -> None:
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def status_strip_at_top_when_scrolled_to(page: Any, selector: str) -> dict[str, float]:
    """Scroll `selector` into view and say where the status strip is: it must stay on screen."""
    page.locator(selector).scroll_into_view_if_needed()
    page.wait_for_timeout(100)
    return dict(
        page.evaluate(
            "(() => { const r = document.querySelector('#status').getBoundingClientRect();"
            " return {top: r.top, bottom: r.bottom, scrollY: window.scrollY}; })()"
        )
    )


# ---- the in-process stack for the dashboard without alarms ----


API_KEY = "e2e-dashboard-key"  # the viewer's key
# Device keys of the in-process stack are `device:<thing>:<group>`: it stands in for API Gateway
# and the authorizer, which would find that identity in the registry.
DEVICE_KEY = "device:{thing}:{group}"
QUERY_PATHS = {"/series", "/devices", "/warnings", "/alerts", "/alarms", "/config"}


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

    @staticmethod
    def device_key(deviceid: str | None, groupid: str) -> str:
        return DEVICE_KEY.format(thing=deviceid or groupid, group=groupid)


def _server(
    store: SqliteReadingStore,
    presence: FakePresence,
    publisher: RecordingPublisher,
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
            key = self.headers.get("x-api-key") or ""
            identity: dict[str, str] | None = None
            if parts.path in QUERY_PATHS and key == API_KEY:
                identity = {"role": "viewer", "name": "e2e-viewer", "groupid": ""}
            elif parts.path == "/readings" and key.startswith("device:") and key.count(":") == 2:
                _, thing, group = key.split(":")
                identity = {"role": "device", "name": thing, "groupid": group}
            if (parts.path in QUERY_PATHS or parts.path == "/readings") and identity is None:
                refused = {"message": "User is not authorized to access this resource"}
                self._answer({"statusCode": 403, "headers": {"Content-Type": "application/json"},
                              "body": json.dumps(refused)})  # fmt: skip
                return
            arguments = dict(parse_qsl(parts.query)) or None
            event = rest_event(method, parts.path, arguments, body, dict(self.headers), authorizer=identity)
            with lock:
                if parts.path == "/readings":
                    result = ingest(event, context, store=store, publisher=publisher)
                elif parts.path in QUERY_PATHS:
                    result = query(event, context, queries=store, presence=presence)
                else:
                    result = static(event, context)
            self._answer(result)

        def do_GET(self) -> None:
            self._invoke("GET")

        def do_POST(self) -> None:
            self._invoke("POST")

    return ThreadingHTTPServer(("127.0.0.1", 0), Gateway)


def _stack(tmp_path: Path, rest_event: Callable[..., dict[str, Any]], context: Any) -> Iterator[DashboardStack]:
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    presence = FakePresence()
    publisher = RecordingPublisher()
    server = _server(store, presence, publisher, rest_event, context)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-stack", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield DashboardStack(f"http://{host}:{port}/", API_KEY, store, presence, publisher)
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
    yield from _stack(tmp_path, api_event, lambda_context)
