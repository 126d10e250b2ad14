"""OpenSearch reading store (Amazon OpenSearch Service in AWS, signed with SigV4).

Writes: one `_bulk` request per POST (split only past 10 MiB), `create` actions keyed by the
deterministic reading id: an item answered 409 was already stored, so a retried POST stores
nothing twice. Items the cluster could not take now (429, 5xx) are retried a few times; if some
still fail, the whole call raises `StoreUnavailableError` and the device retries later.

Reads (`ReadingQueries`): one `_search` per call. Series are a fixed_interval date_histogram with
avg/min/max sub-aggregations; the device table is a composite aggregation on `device` (paged by
its after_key) with top_hits for the newest reading per gas; warnings are a bool query of
(gas, value >= threshold) pairs sorted by (date, reading_id) and paged with search_after. This
module is the only place OpenSearch query text is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from gasmon.errors import StoreUnavailableError
from gasmon.models import BucketStats, DeviceLatest, GasValue, Reading, SeriesQuery, StoreOutcome

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

MAX_BULK_BYTES = 10 * 1024 * 1024
INDEX_TEMPLATE: dict[str, Any] = {
    "priority": 100,
    "template": {
        "settings": {"number_of_shards": 1},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "reading_id": {"type": "keyword"},
                "device": {"type": "keyword"},
                "deviceid": {"type": "keyword"},
                "groupid": {"type": "keyword"},
                "sensorid": {"type": "keyword"},
                "sensortype": {"type": "keyword"},
                "gas": {"type": "keyword"},
                "value": {"type": "float"},
                "gps": {"type": "geo_point"},
                "createdtime": {"type": "keyword"},
                "date": {"type": "date"},
                "received_at": {"type": "date"},
            },
        },
    },
}
_RETRYABLE = {429, 500, 502, 503, 504}


def to_document(reading: Reading) -> dict[str, Any]:
    """The indexed form of a reading; `gps` becomes a geo_point, `date` is the reading time."""
    doc: dict[str, Any] = {
        "reading_id": reading.reading_id,
        "groupid": reading.groupid,
        "sensorid": reading.sensorid,
        "sensortype": reading.sensortype,
        "gas": reading.gas,
        "value": reading.value,
        "createdtime": reading.createdtime,
        "date": reading.created_at.isoformat(),
        "received_at": reading.received_at.isoformat(),
        "device": reading.device,
    }
    if reading.deviceid is not None:
        doc["deviceid"] = reading.deviceid
    if reading.lat is not None and reading.lon is not None:
        doc["gps"] = {"lat": reading.lat, "lon": reading.lon}
    return doc


def from_document(source: Mapping[str, Any]) -> Reading:
    """The reading an indexed document holds (the inverse of `to_document`)."""
    point = source.get("gps")
    lat = lon = None
    if isinstance(point, Mapping):
        lat, lon = float(point["lat"]), float(point["lon"])
    return Reading(
        reading_id=source["reading_id"],
        groupid=source["groupid"],
        gps=f"{lat}, {lon}" if lat is not None else None,
        lat=lat,
        lon=lon,
        gas=source["gas"],
        sensorid=source["sensorid"],
        sensortype=source["sensortype"],
        value=source["value"],
        createdtime=source["createdtime"],
        created_at=_parse_time(source["date"]),
        received_at=_parse_time(source.get("received_at", source["date"])),
        deviceid=source.get("deviceid"),
    )


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _date_range(gte: datetime, lt: datetime | None = None) -> dict[str, Any]:
    bounds: dict[str, Any] = {"gte": _epoch_ms(gte), "format": "epoch_millis"}
    if lt is not None:
        bounds["lt"] = _epoch_ms(lt)
    return {"range": {"date": bounds}}


def series_body(query: SeriesQuery) -> dict[str, Any]:
    """The `_search` body for `bucket_stats`: filter, then a date_histogram with avg/min/max."""
    filters: list[dict[str, Any]] = [{"term": {"gas": query.gas}}, _date_range(query.start, query.end)]
    for field in ("groupid", "sensorid", "deviceid"):
        value = getattr(query, field)
        if value is not None:
            filters.append({"term": {field: value}})
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": filters}},
        "aggs": {
            "buckets": {
                "date_histogram": {
                    "field": "date",
                    "fixed_interval": f"{query.interval_seconds}s",
                    "min_doc_count": 1,
                },
                "aggs": {
                    "avg_value": {"avg": {"field": "value"}},
                    "min_value": {"min": {"field": "value"}},
                    "max_value": {"max": {"field": "value"}},
                },
            }
        },
    }


_NEWEST_FIRST = [{"date": {"order": "desc"}}]


def latest_body(after: str | None, limit: int, groupid: str | None) -> dict[str, Any]:
    """The `_search` body for `latest_by_device`: a composite page of devices, top_hits per gas."""
    composite: dict[str, Any] = {"size": limit, "sources": [{"device": {"terms": {"field": "device"}}}]}
    if after is not None:
        composite["after"] = {"device": after}
    body: dict[str, Any] = {
        "size": 0,
        "track_total_hits": False,
        "aggs": {
            "devices": {
                "composite": composite,
                "aggs": {
                    "newest": {
                        "top_hits": {
                            "size": 1,
                            "sort": _NEWEST_FIRST,
                            "_source": {"includes": ["deviceid", "groupid", "gps", "date"]},
                        }
                    },
                    "gases": {
                        "terms": {"field": "gas", "size": 100},
                        "aggs": {
                            "newest": {
                                "top_hits": {
                                    "size": 1,
                                    "sort": _NEWEST_FIRST,
                                    "_source": {"includes": ["value", "date", "sensorid", "createdtime"]},
                                }
                            }
                        },
                    },
                },
            }
        },
    }
    if groupid is not None:
        body["query"] = {"bool": {"filter": [{"term": {"groupid": groupid}}]}}
    return body


def latest_reading_body(devices: Sequence[str]) -> dict[str, Any]:
    """The `_search` body for `latest_reading`: the newest reading of any of these device keys."""
    return {
        "size": 1,
        "track_total_hits": False,
        "query": {"bool": {"filter": [{"terms": {"device": list(devices)}}]}},
        "sort": [*_NEWEST_FIRST, {"reading_id": {"order": "desc"}}],
    }


def crossings_body(
    thresholds: Mapping[str, float],
    since: datetime,
    limit: int,
    before: tuple[datetime, str] | None,
    groupid: str | None,
) -> dict[str, Any]:
    """The `_search` body for `readings_at_or_above`: (gas, value >= threshold) pairs, newest first."""
    pairs = [
        {"bool": {"filter": [{"term": {"gas": gas}}, {"range": {"value": {"gte": level}}}]}}
        for gas, level in thresholds.items()
    ]
    filters: list[dict[str, Any]] = [_date_range(since), {"bool": {"should": pairs, "minimum_should_match": 1}}]
    if groupid is not None:
        filters.append({"term": {"groupid": groupid}})
    body: dict[str, Any] = {
        "size": limit,
        "track_total_hits": False,
        "query": {"bool": {"filter": filters}},
        "sort": [{"date": {"order": "desc"}}, {"reading_id": {"order": "desc"}}],
    }
    if before is not None:
        body["search_after"] = [_epoch_ms(before[0]), before[1]]
    return body


def bulk_bodies(index: str, readings: Sequence[Reading], limit: int = MAX_BULK_BYTES) -> Iterator[str]:
    """NDJSON `_bulk` bodies of `create` actions, each at most `limit` bytes."""
    lines: list[str] = []
    size = 0
    for reading in readings:
        pair = (
            json.dumps({"create": {"_index": index, "_id": reading.reading_id}})
            + "\n"
            + json.dumps(to_document(reading))
            + "\n"
        )
        if lines and size + len(pair.encode()) > limit:
            yield "".join(lines)
            lines, size = [], 0
        lines.append(pair)
        size += len(pair.encode())
    if lines:
        yield "".join(lines)


class OpenSearchReadingStore:
    """A `ReadingStore` on an OpenSearch domain; the client is built on first use."""

    def __init__(
        self,
        endpoint: str,
        index: str = "gasdetect",
        region: str = "ap-northeast-2",
        sign_requests: bool = True,
        client_factory: Callable[[], OpenSearch] | None = None,
        retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self.index = index
        self.region = region
        self.sign_requests = sign_requests
        self._client_factory = client_factory
        self._client: OpenSearch | None = None
        self._template_ready = False
        self.retries = retries
        self._sleep = sleep
        self.requests = 0  # `_bulk` round trips, for `make bench`

    def _build_client(self) -> OpenSearch:
        from urllib.parse import urlparse

        from opensearchpy import OpenSearch, RequestsHttpConnection

        url = self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"
        parsed = urlparse(url)
        auth = None
        if self.sign_requests:
            from opensearchpy import RequestsAWSV4SignerAuth

            from gasmon.adapters.aws import aws_credentials

            auth = RequestsAWSV4SignerAuth(aws_credentials(), self.region, "es")
        return OpenSearch(
            hosts=[{"host": parsed.hostname, "port": parsed.port or (443 if parsed.scheme == "https" else 80)}],
            http_auth=auth,
            use_ssl=parsed.scheme == "https",
            verify_certs=parsed.scheme == "https",
            connection_class=RequestsHttpConnection,
            timeout=10,
            max_retries=1,
            retry_on_status=(502, 503, 504),
        )

    @property
    def client(self) -> OpenSearch:
        if self._client is None:
            self._client = self._client_factory() if self._client_factory else self._build_client()
        return self._client

    def ensure_index_template(self) -> None:
        """Install the index template (date, geo_point, keyword ids, float value) once per process."""
        if self._template_ready:
            return
        self._call(
            lambda: self.client.indices.put_index_template(
                name=self.index, body={"index_patterns": [f"{self.index}*"], **INDEX_TEMPLATE}
            )
        )
        self._template_ready = True

    def _call(self, request: Callable[[], Any]) -> Any:
        from opensearchpy.exceptions import ConnectionError as OSConnectionError
        from opensearchpy.exceptions import TransportError

        try:
            return request()
        except OSConnectionError as exc:
            raise StoreUnavailableError(f"OpenSearch is unreachable: {exc}", retry_after_seconds=5) from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 503
            if status in _RETRYABLE or status in (401, 403):
                raise StoreUnavailableError(f"OpenSearch answered {status}", retry_after_seconds=5) from exc
            raise

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        """Bulk-create readings; 409 means already stored; retry what the cluster throttled."""
        self.ensure_index_template()
        created: set[str] = set()
        existing: set[str] = set()
        pending = list({r.reading_id: r for r in readings}.values())
        for attempt in range(self.retries + 1):
            failed: list[Reading] = []
            by_id = {r.reading_id: r for r in pending}
            for body in bulk_bodies(self.index, pending):
                self.requests += 1
                answer = self._call(partial(self.client.bulk, body=body))
                for item in answer.get("items", []):
                    result = item.get("create", {})
                    status = int(result.get("status", 500))
                    reading_id = str(result.get("_id"))
                    if status in (200, 201):
                        created.add(reading_id)
                    elif status == 409:
                        existing.add(reading_id)
                    elif status in _RETRYABLE and reading_id in by_id:
                        failed.append(by_id[reading_id])
                    else:
                        reason = result.get("error", {})
                        raise StoreUnavailableError(
                            f"OpenSearch refused reading {reading_id}: {reason}", retry_after_seconds=30
                        )
            if not failed:
                return StoreOutcome(created=frozenset(created), existing=frozenset(existing))
            pending = failed
            if attempt < self.retries:
                self._sleep(0.1 * 2**attempt)
        raise StoreUnavailableError(
            f"OpenSearch is throttling: {len(pending)} readings not stored", retry_after_seconds=5
        )

    # ---- ReadingQueries ----

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1

        # ignore_unavailable: before the first reading is stored the index does not exist yet.
        def request() -> Any:
            return self.client.search(index=self.index, body=body, ignore_unavailable=True)

        return dict(self._call(request))

    def bucket_stats(self, query: SeriesQuery) -> list[BucketStats]:
        """Count/avg/min/max per fixed_interval bucket (epoch-aligned, UTC), non-empty only."""
        answer = self._search(series_body(query))
        buckets = answer.get("aggregations", {}).get("buckets", {}).get("buckets", [])
        return [
            BucketStats(
                start=datetime.fromtimestamp(int(bucket["key"]) / 1000, tz=UTC),
                count=int(bucket["doc_count"]),
                avg=float(bucket["avg_value"]["value"]),
                min=float(bucket["min_value"]["value"]),
                max=float(bucket["max_value"]["value"]),
            )
            for bucket in buckets
            if bucket.get("doc_count")
        ]

    def latest_reading(self, devices: Sequence[str]) -> Reading | None:
        """The newest stored reading (by `date`, the device's `createdtime`) of any of these device
        keys (a reading's `deviceid`, else its `groupid`): the presence e-mails' device directory."""
        wanted = list(dict.fromkeys(d for d in devices if d))
        if not wanted:
            return None
        hits = self._search(latest_reading_body(wanted)).get("hits", {}).get("hits", [])
        return from_document(hits[0]["_source"]) if hits else None

    def latest_by_device(self, after: str | None, limit: int, groupid: str | None = None) -> list[DeviceLatest]:
        """One composite-aggregation page of devices with the newest reading per gas."""
        answer = self._search(latest_body(after, limit, groupid))
        devices = []
        for bucket in answer.get("aggregations", {}).get("devices", {}).get("buckets", []):
            newest = bucket["newest"]["hits"]["hits"][0]["_source"]
            point = newest.get("gps")
            lat = lon = None
            if isinstance(point, Mapping):
                lat, lon = float(point["lat"]), float(point["lon"])
            values = {}
            for gas_bucket in bucket["gases"]["buckets"]:
                hit = gas_bucket["newest"]["hits"]["hits"][0]["_source"]
                values[str(gas_bucket["key"])] = GasValue(
                    value=hit["value"],
                    at=_parse_time(hit["date"]),
                    sensorid=hit["sensorid"],
                    createdtime=hit["createdtime"],
                )
            devices.append(
                DeviceLatest(
                    device=str(bucket["key"]["device"]),
                    deviceid=newest.get("deviceid"),
                    groupid=newest["groupid"],
                    gps=f"{lat}, {lon}" if lat is not None else None,
                    lat=lat,
                    lon=lon,
                    last_seen=_parse_time(newest["date"]),
                    values=values,
                )
            )
        return devices

    def readings_at_or_above(
        self,
        thresholds: Mapping[str, float],
        since: datetime,
        limit: int,
        before: tuple[datetime, str] | None = None,
        groupid: str | None = None,
    ) -> list[Reading]:
        """Threshold crossings newest first, paged with search_after on (date, reading_id)."""
        if not thresholds:
            return []
        answer = self._search(crossings_body(thresholds, since, limit, before, groupid))
        return [from_document(hit["_source"]) for hit in answer.get("hits", {}).get("hits", [])]
