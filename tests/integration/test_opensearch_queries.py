"""The OpenSearch store's read side against a small HTTP server answering canned OpenSearch JSON.

No OpenSearch can run here, so the test checks both halves of the contract: the request the
adapter sends (path, date_histogram, composite/top_hits, search_after) and what it makes of
answers shaped as OpenSearch 2.x gives them.
"""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gasmon.adapters.opensearch_store import OpenSearchReadingStore
from gasmon.errors import StoreUnavailableError
from gasmon.models import SeriesQuery
from tests.opensearch_contract import problems_with_request, problems_with_response

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


class CannedOpenSearch:
    """Records every request; answers with the next canned (status, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.violations: list[str] = []  # what the OpenSearch API specification does not allow
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else None
                body = json.loads(raw) if raw else None
                canned.requests.append({"method": self.command, "path": self.path, "body": body})
                status, answer = canned.answers.pop(0) if canned.answers else (200, {})
                content_type = self.headers.get("Content-Type")
                canned.violations += problems_with_request(self.command, self.path, raw, content_type)
                canned.violations += problems_with_response(self.command, self.path, status, answer, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        return Handler

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def opensearch() -> Iterator[CannedOpenSearch]:
    canned = CannedOpenSearch()
    thread = threading.Thread(target=canned.server.serve_forever, daemon=True)
    thread.start()
    yield canned
    canned.server.shutdown()
    canned.server.server_close()
    assert not canned.violations, "\n".join(canned.violations)


def search_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A `_search` answer as OpenSearch 2.x gives it: `body` in the envelope every answer has."""
    hits = {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": [], **body.get("hits", {})}
    shards = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
    return {"took": 3, "timed_out": False, "_shards": shards, **body, "hits": hits}


def store_for(opensearch: CannedOpenSearch) -> OpenSearchReadingStore:
    return OpenSearchReadingStore(opensearch.url, index="gasdetect", sign_requests=False, retries=0)


def test_series_is_a_date_histogram_with_avg_min_max(opensearch: CannedOpenSearch) -> None:
    # Given OpenSearch answers two buckets (float fields come back as float32 sums)
    opensearch.answers.append(
        (
            200,
            search_answer(
                {
                    "took": 3,
                    "timed_out": False,
                    "hits": {"hits": []},
                    "aggregations": {
                        "buckets": {
                            "buckets": [
                                {
                                    "key_as_string": "2025-03-14T09:00:00.000Z",
                                    "key": T0_MS,
                                    "doc_count": 2,
                                    "avg_value": {"value": 26.200000762939453},
                                    "min_value": {"value": 26.200000762939453},
                                    "max_value": {"value": 26.200000762939453},
                                },
                                {
                                    "key": T0_MS + 600_000,
                                    "doc_count": 1,
                                    "avg_value": {"value": 90.0},
                                    "min_value": {"value": 90.0},
                                    "max_value": {"value": 90.0},
                                },
                            ]
                        }
                    },
                }
            ),
        )
    )
    query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(minutes=15), interval_seconds=300, deviceid="pi-1")
    # When the adapter asks for 5-minute buckets of pi-1's NO2
    buckets = store_for(opensearch).bucket_stats(query)
    # Then it searched the index with a filtered fixed_interval histogram
    request = opensearch.requests[0]
    assert request["path"].startswith("/gasdetect,gasdetect-2*/_search")
    assert "ignore_unavailable=true" in request["path"]
    body = request["body"]
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"] == [
        {"term": {"gas": "no2"}},
        {"range": {"date": {"gte": T0_MS, "lt": T0_MS + 900_000, "format": "epoch_millis"}}},
        {"term": {"deviceid": "pi-1"}},
    ]
    histogram = body["aggs"]["buckets"]
    assert histogram["date_histogram"] == {"field": "date", "fixed_interval": "300s", "min_doc_count": 1}
    assert histogram["aggs"] == {
        "avg_value": {"avg": {"field": "value"}},
        "min_value": {"min": {"field": "value"}},
        "max_value": {"max": {"field": "value"}},
    }
    # ... and read the buckets back as times and numbers
    assert [(b.start, b.count, round(b.avg, 4)) for b in buckets] == [
        (T0, 2, 26.2),
        (T0 + timedelta(minutes=10), 1, 90.0),
    ]


def top_hit(source: dict[str, Any]) -> dict[str, Any]:
    hit = {"_index": "gasdetect-2025.03.14", "_id": "r-1", "_score": None, "_source": source, "sort": [T0_MS]}
    return {"hits": {"total": {"value": 1, "relation": "eq"}, "max_score": None, "hits": [hit]}}


def test_latest_per_device_is_a_composite_page_with_top_hits(opensearch: CannedOpenSearch) -> None:
    # Given OpenSearch answers one device with two gases
    opensearch.answers.append(
        (
            200,
            search_answer(
                {
                    "aggregations": {
                        "devices": {
                            "after_key": {"device": "pi-1"},
                            "buckets": [
                                {
                                    "key": {"device": "pi-1"},
                                    "doc_count": 9,
                                    "newest": top_hit(
                                        {
                                            "deviceid": "pi-1",
                                            "groupid": "2",
                                            "gps": {"lat": 37.61, "lon": 126.99},
                                            "date": "2025-03-14T09:05:00+00:00",
                                        }
                                    ),
                                    "gases": {
                                        "buckets": [
                                            {
                                                "key": "no2",
                                                "doc_count": 5,
                                                "newest": top_hit(
                                                    {
                                                        "value": 95.5,
                                                        "date": "2025-03-14T09:05:00+00:00",
                                                        "sensorid": "0006",
                                                        "createdtime": "2025-03-14 18:05:00",
                                                    }
                                                ),
                                            },
                                            {
                                                "key": "co",
                                                "doc_count": 4,
                                                "newest": top_hit(
                                                    {
                                                        "value": 3.5,
                                                        "date": "2025-03-14T09:04:00+00:00",
                                                        "sensorid": "0005",
                                                        "createdtime": "2025-03-14 18:04:00",
                                                    }
                                                ),
                                            },
                                        ]
                                    },
                                }
                            ],
                        }
                    }
                }
            ),
        )
    )
    # When the page after "1" is read, two devices at most, for group 2
    devices = store_for(opensearch).latest_by_device("1", 2, groupid="2")
    # Then the request searches the latest index (one document per device and gas, never the
    # readings) with a composite aggregation on `device` continuing after that key
    assert opensearch.requests[0]["path"].startswith("/gasdetect-latest/_search")
    body = opensearch.requests[0]["body"]
    composite = body["aggs"]["devices"]["composite"]
    assert composite == {
        "size": 2,
        "sources": [{"device": {"terms": {"field": "device"}}}],
        "after": {"device": "1"},
    }
    sub = body["aggs"]["devices"]["aggs"]
    assert sub["newest"]["top_hits"]["sort"] == [{"date": {"order": "desc"}}]
    assert sub["gases"]["terms"]["field"] == "gas"
    assert sub["gases"]["aggs"]["newest"]["top_hits"]["size"] == 1
    assert body["query"] == {"bool": {"filter": [{"term": {"groupid": "2"}}]}}
    # ... and the answer is the device with its newest value per gas
    [pi1] = devices
    assert (pi1.device, pi1.deviceid, pi1.groupid, pi1.lat, pi1.lon) == ("pi-1", "pi-1", "2", 37.61, 126.99)
    assert pi1.last_seen == T0 + timedelta(minutes=5)
    assert {gas: v.value for gas, v in pi1.values.items()} == {"no2": 95.5, "co": 3.5}


def test_crossings_are_a_bool_query_sorted_and_paged_with_search_after(opensearch: CannedOpenSearch) -> None:
    # Given OpenSearch answers one hit
    source = {
        "reading_id": "abc",
        "device": "pi-1",
        "deviceid": "pi-1",
        "groupid": "2",
        "sensorid": "0006",
        "sensortype": "9",
        "gas": "no2",
        "value": 95.5,
        "gps": {"lat": 37.61, "lon": 126.99},
        "createdtime": "2025-03-14 18:05:00",
        "date": "2025-03-14T09:05:00+00:00",
        "received_at": "2025-03-14T09:05:01+00:00",
    }
    hit = {
        "_index": "gasdetect-2025.03.14",
        "_id": "abc",
        "_score": None,
        "_source": source,
        "sort": [T0_MS + 300_000, "abc"],
    }
    opensearch.answers.append((200, search_answer({"hits": {"hits": [hit]}})))
    # When crossings of NO2 >= 88 and CO >= 35 since T0 are read after a cursor position
    found = store_for(opensearch).readings_at_or_above(
        {"no2": 88.0, "co": 35.0}, T0, 11, before=(T0 + timedelta(minutes=9), "zzz")
    )
    # Then the query pairs each gas with its threshold and continues after the position
    body = opensearch.requests[0]["body"]
    assert body["size"] == 11
    assert body["sort"] == [{"date": {"order": "desc"}}, {"reading_id": {"order": "desc"}}]
    assert body["search_after"] == [T0_MS + 540_000, "zzz"]
    date_range, crossing = body["query"]["bool"]["filter"]
    assert date_range == {"range": {"date": {"gte": T0_MS, "format": "epoch_millis"}}}
    assert crossing["bool"]["minimum_should_match"] == 1
    assert crossing["bool"]["should"] == [
        {"bool": {"filter": [{"term": {"gas": "no2"}}, {"range": {"value": {"gte": 88.0}}}]}},
        {"bool": {"filter": [{"term": {"gas": "co"}}, {"range": {"value": {"gte": 35.0}}}]}},
    ]
    # ... and the hit is read back as a reading
    [r] = found
    assert (r.reading_id, r.device, r.gas, r.value, r.gps) == ("abc", "pi-1", "no2", 95.5, "37.61, 126.99")
    assert r.created_at == T0 + timedelta(minutes=5)


def test_no_index_yet_means_no_data(opensearch: CannedOpenSearch) -> None:
    # Given a cluster without the index (ignore_unavailable gives an empty answer)
    opensearch.answers.append((200, search_answer({"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}})))
    query = SeriesQuery(gas="no2", start=T0, end=T0 + timedelta(hours=1), interval_seconds=60)
    assert store_for(opensearch).bucket_stats(query) == []


def test_a_throttling_cluster_is_store_unavailable(opensearch: CannedOpenSearch) -> None:
    rejected = {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}
    opensearch.answers.append((429, {"error": {"root_cause": [rejected], **rejected}, "status": 429}))
    with pytest.raises(StoreUnavailableError):
        store_for(opensearch).latest_by_device(None, 10)


def test_a_devices_newest_reading_is_one_sorted_search_over_its_device_keys(opensearch: CannedOpenSearch) -> None:
    # Given OpenSearch answers one hit, as the index holds it (gps as a geo_point)
    source = {
        "reading_id": "r-9",
        "device": "2",
        "groupid": "2",
        "sensorid": "0005",
        "sensortype": "8",
        "gas": "co",
        "value": 26.2,
        "createdtime": "2025-03-14 18:05:00",
        "date": "2025-03-14T09:05:00+00:00",
        "received_at": "2025-03-14T09:05:01+00:00",
        "gps": {"lat": 37.61, "lon": 126.99},
    }
    hit = {"_index": "gasdetect-2025.03.14", "_id": "r-9", "_score": None, "_source": source}
    opensearch.answers.append((200, search_answer({"hits": {"hits": [hit]}})))
    # When the presence e-mail asks for a device known by two keys
    reading = store_for(opensearch).latest_reading(["RPI", "2", "RPI"])
    # Then one search, filtered on both keys (once each), newest first, one hit
    (request,) = opensearch.requests
    assert request["path"].startswith("/gasdetect,gasdetect-2*/_search")
    assert request["body"]["size"] == 1
    assert request["body"]["query"] == {"bool": {"filter": [{"terms": {"device": ["RPI", "2"]}}]}}
    assert request["body"]["sort"][0] == {"date": {"order": "desc"}}
    # And the hit comes back as the reading it was
    assert reading is not None
    assert (reading.groupid, reading.gps, reading.created_at) == ("2", "37.61, 126.99", T0 + timedelta(minutes=5))


def test_a_device_without_indexed_readings_is_none_and_no_keys_ask_nothing(opensearch: CannedOpenSearch) -> None:
    opensearch.answers.append((200, search_answer({})))
    store = store_for(opensearch)
    assert store.latest_reading(["RPI"]) is None
    assert store.latest_reading(["", ""]) is None
    assert len(opensearch.requests) == 1


def test_one_devices_series_filters_on_the_device_field(opensearch: CannedOpenSearch) -> None:
    # Given OpenSearch answers no bucket
    opensearch.answers.append((200, search_answer({"aggregations": {"buckets": {"buckets": []}}})))
    query = SeriesQuery(gas="co", start=T0, end=T0 + timedelta(minutes=15), interval_seconds=60, device="7")
    # When the dashboard's per-device line for device 7 (a seed document's group) is asked for
    buckets = store_for(opensearch).bucket_stats(query)
    # Then the search filters on the indexed `device` keyword, as the spec allows, and finds nothing
    filters = opensearch.requests[0]["body"]["query"]["bool"]["filter"]
    assert filters[-1] == {"term": {"device": "7"}}
    assert buckets == [] and opensearch.violations == []
