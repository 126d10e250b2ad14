"""opensearch-py against an HTTP server that answers as OpenSearch's _bulk API does.

No OpenSearch can run on this machine (no Docker, no JVM distribution from the registries), so
this server keeps documents by `_id` and answers `create` with 201, or 409 for an id it has,
and can be told to throttle items with 429: the adapter's parsing and retries are real.
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
            if "/_mget" in self.path:  # the ids a POST met again: their stored values
                wanted = json.loads(body)["ids"]
                docs = [
                    {"_id": i, "found": True, "_source": {"value": cluster.docs[i]["value"]}}
                    if i in cluster.docs
                    else {"_id": i, "found": False}
                    for i in wanted
                ]
                self._answer(200, {"docs": docs})
                return
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            items = []
            for action, doc in zip(lines[::2], lines[1::2], strict=True):
                doc_id = action["create"]["_id"]
                if cluster.throttle_next_items > 0:
                    cluster.throttle_next_items -= 1
                    items.append({"create": {"_id": doc_id, "status": 429, "error": {"type": "es_rejected"}}})
                elif doc_id in cluster.docs:
                    items.append({"create": {"_id": doc_id, "status": 409, "error": {"type": "conflict"}}})
                else:
                    cluster.docs[doc_id] = doc
                    items.append({"create": {"_id": doc_id, "status": 201}})
            self._answer(200, {"took": 1, "errors": any(i["create"]["status"] >= 300 for i in items), "items": items})

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


def test_a_re_post_with_another_value_is_a_conflict_and_the_stored_value_stays(cluster: Any) -> None:
    # Given readings stored once
    state, store = cluster
    readings = make_readings(3)
    store.put_readings(readings)
    # When the same identities are posted again, one with a different value
    changed = [readings[0].model_copy(update={"value": readings[0].value + 1}), *readings[1:]]
    outcome = store.put_readings(changed)
    # Then all three were there, one is a conflict, and the first value is what is stored
    assert outcome.existing == {r.reading_id for r in readings} and not outcome.created
    assert outcome.conflicts == {readings[0].reading_id}
    assert state.docs[readings[0].reading_id]["value"] == readings[0].value
    assert [p for p, _ in state.requests if "/_mget" in p], "duplicates are compared with one _mget"


def test_index_template_maps_geo_point_date_and_keywords_once(cluster: Any) -> None:
    state, store = cluster
    store.put_readings(make_readings(1))
    store.put_readings(make_readings(2))
    templates = [json.loads(body) for path, body in state.requests if path.startswith("/_index_template/")]
    assert len(templates) == 1
    props = templates[0]["template"]["mappings"]["properties"]
    assert props["gps"]["type"] == "geo_point" and props["date"]["type"] == "date"
    assert props["sensorid"]["type"] == "keyword" and props["value"]["type"] == "float"


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
