"""Benchmarks of the local stack (`make local`), each beside a baseline measured in the same run.

`run()` starts `gasmon-local` as a user does (a child process, free ports, its own data
directory) and returns rows for the bench runner's table:

- sustained readings/s over HTTP with 100-reading batches; a reading is one gas value, as in
  `gasmon.models.Reading` and the API's `accepted` count, so a batch is 25 seed documents of four
  gases each; baseline: what the seed's Pi does, one four-gas document per POST; then the same
  batches from 4 and 16 concurrent clients, beside the 1-client figure;
- POST-to-warning latency on `pi/1` (p50, p99); baseline: a plain MQTT publish -> receive round
  trip through the same broker;
- dropped-connection-to-email latency; baseline: the presence grace period itself;
- ingest readings/s (100-reading batches, 4 clients) while one dashboard refreshes every 10 s
  over a store of 10^6 readings, beside the same ingest alone on the same stack, measured just
  before (target: >= 0.9x). A refresh is what dashboard/app.js asks for at its default range
  (24 h): /devices (all pages), /warnings (1), /alerts, open and closed /alarms, then /series for
  each gas, the first five at once and the series at once, as the browser does.
  `BENCH_DASHBOARD_READINGS` sets the store's size (default 1,000,000, loaded straight into
  SQLite as bench_queries does; about a minute here) for a quick run.

Each function runs in execution environments of its own (processes, up to `--concurrency` at
once, gasmon_local.functions), so these figures are for the stack as `make local` runs it.

Run alone with `python bench/bench_local.py`; it takes about 3 minutes (most of it loading the
10^6 readings).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion
from requests.adapters import HTTPAdapter

from gasmon_local.process import StackProcess

BATCH_DOCUMENTS = 25  # x 4 gases = 100 readings
CONCURRENCY = (1, 4, 16)
THROUGHPUT_SECONDS = 6.0
BASELINE_SECONDS = 3.0
LATENCY_SAMPLES = 100
DROPPED_DEVICES = 5
GRACE = 2
DASHBOARD_READINGS = int(os.environ.get("BENCH_DASHBOARD_READINGS", "1000000"))
DASHBOARD_REFRESH_SECONDS = 10.0
# Windows of one refresh period, half of them with the dashboard refreshing (at each window's start).
DASHBOARD_WINDOWS = 4
DASHBOARD_INGEST_CLIENTS = 4
DASHBOARD_GASES = ("no2", "co", "c2h5oh", "h2")


GASES = {
    "co": ("0005", "8", 26.2),
    "no2": ("0006", "9", 40.0),
    "c2h5oh": ("0007", "27", 26.1),
    "h2": ("0008", "30", 400),
}


def _document(groupid: str, no2: float = 40.0, only: str | None = None, tag: str = "") -> dict[str, Any]:
    """A seed-shaped document stamped now (all four gases, or `only` one of them); `tag` makes its
    sensor ids (so its readings) distinct from another's of the same device and second."""
    now = datetime.now(ZoneInfo("Asia/Seoul")).strftime("%Y-%m-%d %H:%M:%S")
    gases = GASES | {"no2": ("0006", "9", no2)}
    document: dict[str, Any] = {"groupid": groupid, "gps": "37.61, 126.99"}
    for gas, (sensorid, sensortype, value) in gases.items():
        if only is not None and gas != only:
            continue
        document[gas] = {
            "sensorid": f"{tag}{sensorid}",
            "sensortype": sensortype,
            "value": f"{value:.2f}",
            "createdtime": now,
        }
    return document


def _devices(process: StackProcess, count: int) -> list[tuple[str, str]]:
    """(group, key) of `count` devices provisioned through gasmon-admin's API (each its own group,
    so each reading over the line opens an alarm of its own and warns)."""
    from gasmon_admin import devices
    from gasmon_admin.target import from_endpoints

    target = from_endpoints(process.data_dir / "endpoints.json")
    made = []
    for _ in range(count):
        group = f"bench-{uuid.uuid4().hex[:8]}"
        done = devices.provision(target, f"pi-{group}", group, process.data_dir / "bench-devices" / group)
        made.append((group, done.api_key))
    return made


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _rate(post: Callable[[requests.Session, int], int], seconds: float, workers: int = 2) -> float:
    """Readings the API accepted per second while `workers` clients post back to back for `seconds`."""
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))
    lock = threading.Lock()

    def client() -> int:
        session = requests.Session()
        accepted = 0
        while time.monotonic() < stop_at:
            with lock:
                index = next(counter)
            accepted += post(session, index)
        return accepted

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(lambda _: client(), range(workers)))
    return total / (time.monotonic() - started)


def _warm(post: Callable[[requests.Session, int], int], workers: int) -> None:
    """Unmeasured: `workers` POSTs at once, twice, so the function has the environments (processes)
    that concurrency needs before the clock starts; each one's first INIT is a cold start."""
    sessions = [requests.Session() for _ in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(2):
            list(pool.map(lambda pair: post(pair[1], -1 - pair[0]), enumerate(sessions)))
    for session in sessions:
        session.close()


def _poster(endpoints: dict[str, Any], timeout: float) -> Callable[[requests.Session, Any], int]:
    """POST a body to /readings as the stack's device (sim-pi-01, group 1); the accepted count."""
    url = endpoints["api"] + "/readings"
    headers = {"x-api-key": endpoints["api_key"]}

    def post(session: requests.Session, body: Any) -> int:
        answer = session.post(url, json=body, headers=headers, timeout=timeout)
        answer.raise_for_status()
        return int(answer.json()["accepted"])

    return post


def _batch_poster(endpoints: dict[str, Any], kind: str, timeout: float) -> Callable[[requests.Session, int], int]:
    """POST number `index`: BATCH_DOCUMENTS seed documents (100 readings); `kind` and a run id
    keep each measurement's readings apart."""
    post, run_id = _poster(endpoints, timeout), uuid.uuid4().hex[:6]

    def batch(session: requests.Session, index: int) -> int:
        return post(session, [_document("1", tag=f"{run_id}{kind}{index}-{i}-") for i in range(BATCH_DOCUMENTS)])

    return batch


def _throughput(endpoints: dict[str, Any]) -> list[dict[str, Any]]:
    # One device (the stack's sim-pi-01, group 1) posts everything; its per-minute allowance is
    # lifted for this stack (see run), so the figure is the server's, counter write included.
    batch = _batch_poster(endpoints, "b", timeout=30)
    post, run_id = _poster(endpoints, timeout=30), uuid.uuid4().hex[:6]

    def single(session: requests.Session, index: int) -> int:
        return post(session, _document("1", tag=f"{run_id}s{index}-"))  # the seed's four-gas document

    _warm(batch, max(CONCURRENCY))
    one_by_one = _rate(single, BASELINE_SECONDS, workers=1)
    rates = {workers: _rate(batch, THROUGHPUT_SECONDS, workers=workers) for workers in CONCURRENCY}
    rows = [
        {
            "metric": "sustained readings/s over HTTP, 100-reading batches, 1 client",
            "value": round(rates[1]),
            "unit": "readings/s",
            "baseline": round(one_by_one),
            "baseline_label": "seed-shaped: one four-gas document per POST, 1 client, same stack",
            "target": ">= 2000",
        }
    ]
    rows.extend(
        {
            "metric": f"sustained readings/s over HTTP, 100-reading batches, {workers} concurrent clients",
            "value": round(rates[workers]),
            "unit": "readings/s",
            "baseline": round(rates[1]),
            "baseline_label": "the same POSTs from 1 client, same run",
            "target": ">= 10000" if workers == 4 else "report",
        }
        for workers in CONCURRENCY
        if workers != 1
    )
    return rows


class _Listener:
    """A paho subscriber that timestamps arrivals."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.arrivals: dict[str, float] = {}
        self.arrived = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        at = time.perf_counter()
        payload = json.loads(message.payload)
        with self.arrived:
            self.arrivals[str(payload.get("groupid") or payload.get("id"))] = at
            self.arrived.notify_all()

    def wait(self, key: str, timeout: float = 10.0) -> float:
        with self.arrived:
            self.arrived.wait_for(lambda: key in self.arrivals, timeout)
            return self.arrivals[key]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _warning_latency(process: StackProcess) -> list[dict[str, Any]]:
    endpoints = process.endpoints
    host, port = process.mqtt_address()
    listener = _Listener(host, port, "pi/1")
    echo = _Listener(host, port, "bench/echo")
    session = requests.Session()
    post_ms, echo_ms = [], []
    fleet = _devices(process, LATENCY_SAMPLES + 1)
    try:
        # One warning first, unmeasured: its first alarm write creates the function's DynamoDB
        # client (a cold start, ~0.15 s); the figures are for a warm stack.
        (warm_up, warm_key), *measured = fleet
        headers = {"x-api-key": warm_key}
        session.post(endpoints["api"] + "/readings", json=_document(warm_up, no2=95.0), headers=headers, timeout=10)
        listener.wait(warm_up)
        for groupid, key in measured:
            headers = {"x-api-key": key}
            started = time.perf_counter()
            session.post(endpoints["api"] + "/readings", json=_document(groupid, no2=95.0), headers=headers, timeout=10)
            post_ms.append((listener.wait(groupid) - started) * 1000)
        for _ in range(LATENCY_SAMPLES):
            key = uuid.uuid4().hex
            started = time.perf_counter()
            listener.client.publish("bench/echo", json.dumps({"id": key}), qos=1)
            echo_ms.append((echo.wait(key) - started) * 1000)
    finally:
        listener.close()
        echo.close()
    return [
        {
            "metric": f"POST -> warning on pi/1, {quantile}",
            "value": round(_percentile(post_ms, fraction), 1),
            "unit": "ms",
            "baseline": round(_percentile(echo_ms, fraction), 1),
            "baseline_label": f"MQTT publish -> receive, same broker, {quantile}",
            "target": "<= 50" if quantile == "p99" else "report (the target is on p99)",
        }
        for quantile, fraction in (("p50", 0.5), ("p99", 0.99))
    ]


def _email_latency(data_dir: Path) -> dict[str, Any]:
    with StackProcess(data_dir, "--no-devices", "--grace", str(GRACE)) as process:
        host, port = process.mqtt_address()
        mail_dir = Path(process.endpoints["mail_dir"])
        devices: dict[str, mqtt.Client] = {}
        for index in range(DROPPED_DEVICES):
            client_id = f"bench-drop-{index}-{uuid.uuid4().hex[:4]}"
            devices[client_id] = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
            devices[client_id].connect(host, port, keepalive=30)
            devices[client_id].loop_start()
        time.sleep(1.0)
        dropped: dict[str, float] = {}
        for client_id, client in devices.items():
            client.loop_stop()
            sock = client.socket()
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)  # no DISCONNECT: the connection is lost
            sock.close()
            dropped[client_id] = time.time()
        seen: dict[str, float] = {}
        deadline = time.monotonic() + GRACE + 20
        while len(seen) < len(dropped) and time.monotonic() < deadline:
            for path in mail_dir.glob("*.eml"):
                text = path.read_text(errors="replace")
                for client_id in dropped:
                    if client_id in text and client_id not in seen:
                        seen[client_id] = time.time()
            time.sleep(0.02)
    latencies = [seen[client_id] - dropped[client_id] for client_id in seen]
    if len(latencies) < len(dropped):
        raise RuntimeError(f"only {len(latencies)} of {len(dropped)} disconnect emails arrived:\n{process.log_tail()}")
    return {
        "metric": f"dropped connection -> email, median of {DROPPED_DEVICES}",
        "value": round(statistics.median(latencies), 2),
        "unit": "s",
        "baseline": GRACE,
        "baseline_label": "the grace period (--grace)",
        "target": f"<= grace + 1 ({GRACE + 1})",
    }


class _Dashboard:
    """One dashboard tab: the requests dashboard/app.js makes per refresh, every 10 s."""

    def __init__(self, api: str, key: str) -> None:
        self.api = api
        self.headers = {"x-api-key": key, "accept": "application/json"}
        self.session = requests.Session()
        # A browser opens up to six connections to one origin.
        self.session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=6))
        self.pool = ThreadPoolExecutor(6)
        self.refreshes: list[float] = []
        self.failures: list[str] = []

    def _get(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        answer = self.session.get(f"{self.api}/{path}", params=query, headers=self.headers, timeout=60)
        if answer.status_code != 200:
            self.failures.append(f"{path} {answer.status_code}")
            return {}
        return dict(answer.json())

    def _pages(self, path: str, query: dict[str, Any], key: str, most: int) -> None:
        cursor, items = None, 0
        while True:
            page = self._get(path, query | ({"cursor": cursor} if cursor else {}))
            items += len(page.get(key) or [])
            cursor = page.get("next_cursor")
            if not cursor or items >= most:
                return

    def refresh(self) -> None:
        since = datetime.fromtimestamp(time.time() - 86_400, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        started = time.perf_counter()
        first = [
            self.pool.submit(self._pages, "devices", {"limit": 200}, "devices", 2000),
            self.pool.submit(self._pages, "warnings", {"since": since, "limit": 1}, "warnings", 1),
            self.pool.submit(self._get, "alerts", {"limit": 20}),
            self.pool.submit(self._pages, "alarms", {"state": "open", "limit": 200}, "alarms", 200),
            self.pool.submit(self._pages, "alarms", {"state": "closed", "since": since, "limit": 20}, "alarms", 20),
        ]
        for future in first:
            future.result()
        series = [
            self.pool.submit(self._get, "series", {"gas": gas, "start": since, "interval": "15m"})
            for gas in DASHBOARD_GASES
        ]
        for future in series:
            future.result()
        self.refreshes.append(time.perf_counter() - started)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.refresh()
            stop.wait(DASHBOARD_REFRESH_SECONDS)

    def close(self) -> None:
        self.pool.shutdown()
        self.session.close()


def _ingest_with_dashboard(endpoints: dict[str, Any]) -> list[dict[str, Any]]:
    batch = _batch_poster(endpoints, "d", timeout=60)
    _warm(batch, DASHBOARD_INGEST_CLIENTS)
    dashboard = _Dashboard(endpoints["api"], endpoints["viewer_key"])
    try:
        dashboard.refresh()  # warm: the query function's first environment, as an open tab has
        dashboard.refreshes.clear()
        # Windows of one refresh period each, alone and shared alternating (alone, shared, shared,
        # alone, ...), so a neighbour's load drifting during the run falls on both sides alike.
        alone_rates, shared_rates = [], []
        for window in range(DASHBOARD_WINDOWS):
            with_dashboard = window % 4 in (1, 2)
            if not with_dashboard:
                alone_rates.append(_rate(batch, DASHBOARD_REFRESH_SECONDS, workers=DASHBOARD_INGEST_CLIENTS))
                continue
            stop = threading.Event()
            viewer = threading.Thread(target=dashboard.run, args=(stop,), name="dashboard")
            viewer.start()  # its refresh starts with the window: one per refresh period
            try:
                shared_rates.append(_rate(batch, DASHBOARD_REFRESH_SECONDS, workers=DASHBOARD_INGEST_CLIENTS))
            finally:
                stop.set()
                viewer.join()
        alone, shared = statistics.mean(alone_rates), statistics.mean(shared_rates)
    finally:
        dashboard.close()
    if dashboard.failures:
        raise RuntimeError(f"dashboard requests failed: {dashboard.failures[:5]}")
    store = f"{DASHBOARD_READINGS:,} stored readings"
    return [
        {
            "metric": f"ingest readings/s, {DASHBOARD_INGEST_CLIENTS} clients, while a dashboard refreshes every "
            f"{DASHBOARD_REFRESH_SECONDS:.0f} s over {store}",
            "value": round(shared),
            "unit": "readings/s",
            "baseline": round(alone),
            "baseline_label": "the same ingest with no dashboard, same stack and store, in alternating "
            f"{DASHBOARD_REFRESH_SECONDS:.0f} s windows",
            "target": ">= 0.9x",
        },
        {
            "metric": f"dashboard refresh (its 9+ requests) over {store}, while ingest runs, slowest of "
            f"{len(dashboard.refreshes)}",
            "value": round(max(dashboard.refreshes), 2),
            "unit": "s",
            "baseline": DASHBOARD_REFRESH_SECONDS,
            "baseline_label": "the refresh period",
            "target": "report",
        },
    ]


def _stored_readings(data_dir: Path, count: int) -> None:
    """`count` readings over the last 24 h in the stack's SQLite store (what `make local` opens)."""
    from bench.bench_queries import _load

    data_dir.mkdir(parents=True, exist_ok=True)
    _load(data_dir / "readings.sqlite3", count)


def run() -> list[dict[str, Any]]:
    """Start the stack, measure, stop; one dict per table row."""
    with tempfile.TemporaryDirectory(prefix="gasmon-bench-") as scratch:
        # Each measurement on a stack of its own, so one does not inherit the other's state.
        unthrottled = ("--parameter", "DeviceRequestsPerMinute=100000000")
        with StackProcess(Path(scratch) / "ingest", "--no-devices", *unthrottled) as process:
            rows = _throughput(process.endpoints)
        with StackProcess(Path(scratch) / "warnings", "--no-devices") as process:
            rows.extend(_warning_latency(process))
        rows.append(_email_latency(Path(scratch) / "presence"))
        _stored_readings(Path(scratch) / "dashboard", DASHBOARD_READINGS)
        with StackProcess(Path(scratch) / "dashboard", "--no-devices", *unthrottled) as process:
            rows.extend(_ingest_with_dashboard(process.endpoints))
    return rows


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['metric']:<75} {row['value']:>9} {row['unit']:<10} "
            f"baseline {row['baseline']} ({row['baseline_label']}), target {row['target']}"
        )
