"""opensearch-py against an HTTP server that answers as OpenSearch's _bulk API does.

No OpenSearch can run on this machine (no Docker, no JVM distribution from the registries), so
this server keeps documents by `_id` and answers `create` with 201, or 409 for an id it has,
and can be told to throttle items with 429: the adapter's parsing and retries are real. `index`
actions with `version_type: external_gte` (the latest-per-device documents) are kept as
OpenSearch keeps them: written when their version is at least the stored one, else 409.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gasmon.adapters.opensearch_store import OpenSearchReadingStore, bulk_bodies
from gasmon.errors import StoreUnavailableError
from tests.integration.test_sqlite_store import make_readings


class FakeCluster:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.latest: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}  # (index, id) -> (version, doc)
        self.throttle_latest = 0
        self.requests: list[tuple[str, str]] = []
        self.throttle_next_items = 0
        self.down = False


def serve(cluster: FakeCluster) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:  # index template
            length = int(self.headers.get("Content-Length", 0))
            cluster.requests.append((self.path, self.rfile.read(length).decode()))
            self._answer(200, {"acknowledged": True})

        def do_POST(self) -> None:  # _bulk
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length).decode()
            cluster.requests.append((self.path, body))
            if cluster.down:
                self._answer(503, {"error": "unavailable"})
                return
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            items = []
            for action, doc in zip(lines[::2], lines[1::2], strict=True):
                if "index" in action:
                    meta = action["index"]
                    assert meta["version_type"] == "external_gte"
                    key, version = (meta["_index"], meta["_id"]), int(meta["version"])
                    if cluster.throttle_latest > 0:
                        cluster.throttle_latest -= 1
                        items.append({"index": {"_id": meta["_id"], "status": 429, "error": {"type": "rejected"}}})
                    elif key in cluster.latest and cluster.latest[key][0] > version:
                        error = {"type": "version_conflict_engine_exception"}
                        items.append({"index": {"_id": meta["_id"], "status": 409, "error": error}})
                    else:
                        cluster.latest[key] = (version, doc)
                        items.append({"index": {"_id": meta["_id"], "status": 201}})
                    continue
                doc_id = action["create"]["_id"]
                if cluster.throttle_next_items > 0:
                    cluster.throttle_next_items -= 1
                    items.append({"create": {"_id": doc_id, "status": 429, "error": {"type": "es_rejected"}}})
                elif doc_id in cluster.docs:
                    items.append({"create": {"_id": doc_id, "status": 409, "error": {"type": "conflict"}}})
                else:
                    cluster.docs[doc_id] = doc
                    items.append({"create": {"_id": doc_id, "status": 201}})
            errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
            self._answer(200, {"took": 1, "errors": errors, "items": items})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, OpenSearchReadingStore]]:
    state = FakeCluster()
    server = serve(state)
    store = OpenSearchReadingStore(
        f"http://127.0.0.1:{server.server_address[1]}", sign_requests=False, sleep=lambda _: None
    )
    yield state, store
    server.shutdown()


def test_one_bulk_request_per_post_and_a_retry_stores_nothing_twice(cluster: Any) -> None:
    state, store = cluster
    readings = make_readings(100)
    first = store.put_readings(readings)
    second = store.put_readings(readings)
    bulk_calls = [path for path, _ in state.requests if path.startswith("/_bulk")]
    assert len(first.created) == 100 and len(second.existing) == 100 and not second.created
    assert len(bulk_calls) == 2
    assert len(state.docs) == 100


def test_index_template_maps_geo_point_date_and_keywords_once(cluster: Any) -> None:
    state, store = cluster
    store.put_readings(make_readings(1))
    store.put_readings(make_readings(2))
    templates = {path: json.loads(body) for path, body in state.requests if path.startswith("/_index_template/")}
    assert sum(path.startswith("/_index_template/") for path, _ in state.requests) == 2  # once each
    props = templates["/_index_template/gasdetect"]["template"]["mappings"]["properties"]
    assert props["gps"]["type"] == "geo_point" and props["date"]["type"] == "date"
    assert props["sensorid"]["type"] == "keyword" and props["value"]["type"] == "float"
    # The latest index has its own template that outranks the readings' (whose pattern matches it)
    latest = templates["/_index_template/gasdetect-latest"]
    assert latest["index_patterns"] == ["gasdetect-latest"] and latest["priority"] > 100


def test_throttled_items_are_retried_then_reported_stored(cluster: Any) -> None:
    state, store = cluster
    state.throttle_next_items = 3
    outcome = store.put_readings(make_readings(10))
    assert len(outcome.created) == 10 and len(state.docs) == 10


def test_persistent_throttling_or_outage_is_store_unavailable(cluster: Any) -> None:
    state, store = cluster
    state.throttle_next_items = 10_000
    with pytest.raises(StoreUnavailableError):
        store.put_readings(make_readings(5))
    state.throttle_next_items = 0
    state.down = True
    with pytest.raises(StoreUnavailableError):
        store.put_readings(make_readings(5))


def test_documents_carry_gps_as_geo_point_and_the_reading_time() -> None:
    reading = make_readings(1)[0].model_copy(update={"lat": 37.6, "lon": 126.9, "gps": "37.6, 126.9"})
    [body] = list(bulk_bodies("gasdetect", [reading]))
    action, doc = (json.loads(line) for line in body.splitlines())
    assert action == {"create": {"_index": "gasdetect", "_id": reading.reading_id}}
    assert doc["gps"] == {"lat": 37.6, "lon": 126.9} and doc["date"] == "2026-01-01T00:00:00+00:00"


def test_bulk_bodies_are_split_at_the_size_limit() -> None:
    readings = make_readings(50)
    bodies = list(bulk_bodies("gasdetect", readings, limit=4096))
    assert len(bodies) > 1 and all(len(b.encode()) <= 4096 for b in bodies)
    assert sum(body.count('"create"') for body in bodies) == 50


def test_the_latest_reading_per_device_and_gas_rides_in_the_same_bulk_request(cluster: Any) -> None:
    state, store = cluster
    # Given a POST of 100 readings of one device and gas, a second apart
    readings = make_readings(100)
    # When they are stored
    store.put_readings(readings)
    # Then one _bulk request carried them and one latest document per (device, gas): the newest
    assert [path for path, _ in state.requests if path.startswith("/_bulk")] == ["/_bulk"]
    newest: dict[tuple[str, str], Any] = {}
    for r in readings:
        if (r.device, r.gas) not in newest or r.created_at > newest[(r.device, r.gas)].created_at:
            newest[(r.device, r.gas)] = r
    stored = {key[1]: doc["reading_id"] for key, (_, doc) in state.latest.items() if key[0] == "gasdetect-latest"}
    assert stored == {f"{d}#{g}": r.reading_id for (d, g), r in newest.items()}


def test_a_late_reading_never_replaces_a_newer_latest_document(cluster: Any) -> None:
    state, store = cluster
    [older, newer] = [r for r in make_readings(40) if r.gas == "no2"][:2]
    older, newer = sorted([older, newer], key=lambda r: r.created_at)
    # Given the newer reading was stored first
    store.put_readings([newer])
    # When the older one arrives late, in its own POST
    outcome = store.put_readings([older])
    # Then it is stored as a reading, and the device's latest no2 is still the newer one
    assert outcome.created == {older.reading_id}
    [(_, doc)] = [v for k, v in state.latest.items() if k[1] == f"{newer.device}#no2"]
    assert doc["reading_id"] == newer.reading_id


def test_a_throttled_latest_document_is_sent_again_and_the_reading_is_reported_once(cluster: Any) -> None:
    state, store = cluster
    state.throttle_latest = 1
    readings = make_readings(3)
    outcome = store.put_readings(readings)
    assert outcome.created == {r.reading_id for r in readings} and not outcome.existing
    assert len(state.latest) == len({(r.device, r.gas) for r in readings})
