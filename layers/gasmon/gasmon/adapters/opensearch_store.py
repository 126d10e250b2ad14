"""OpenSearch reading store (Amazon OpenSearch Service in AWS, signed with SigV4).

Layout: readings live in daily indices `<index>-YYYY.MM.DD` (by the reading's UTC date, so a
retried reading always lands in the same index and its `create` is answered 409), joined to the
`<index>` alias by an index template, and deleted by an ISM policy once older than
`retention_days`. A concrete index already named `<index>` (a seed user's, or gasmon's own before
daily indices) is detected at the first write and left alone: the alias is then not created
(an alias cannot share an index's name), new readings still go to the daily indices, and reads
target `<index>,<index>-2*`, which covers both (`gasmon-admin reindex-seed` converts the old
documents). Setup (mapping probe, ISM policy, template) runs once per process; a 403 there (fine-
grained access control without the role mapping) is one clear error in the log, not an outage.

Writes (and the index setup before the first one) go out as SigV4-signed HTTP requests
(`gasmon.adapters.signed_http`), not through opensearch-py: importing opensearch-py (and the
requests library it imports) was the largest part of ingest's cold start. Reads, the sweep and
`gasmon-admin` keep opensearch-py, loaded only by the functions that use them.

Writes: one `POST /<daily index>/_bulk` request per POST (split only past 10 MiB), `create`
actions keyed by the deterministic reading id: an item answered 409 was already stored, so a
retried POST stores nothing twice. Items the cluster could not take now (429, 5xx) and whole
answers 502/503/504 are retried a few times in the call (the client itself never retries, so a
retry it hid cannot turn "stored by us" into "already there"); if some still fail, the call
raises `StoreUnavailableError` and the device retries later. An item refused for good (400, 404:
e.g. a mapping conflict) is reported in `StoreOutcome.refused`, and the device is told.

The same `_bulk` request also keeps the newest reading of each (device, gas) as its own document
in the latest index (`<index>-latest`, id `<device>#<gas>`): an `index` action with external
versioning by the reading's time in epoch ms (`version_type: external_gte`), so OpenSearch itself
refuses (409) a late reading that would replace a newer one, and a retry rewrites the same
document. No extra request per POST.

Reads (`ReadingQueries`): one `_search` per call. Series are a fixed_interval date_histogram with
avg/min/max sub-aggregations; the device table is a composite aggregation on `device` (paged by
its after_key) over the latest index, which holds one document per device and gas, so its work
follows the number of devices, not of readings; warnings are a bool query of
(gas, value >= threshold) pairs sorted by (date, reading_id) and paged with search_after. This
module is the only place OpenSearch query text is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from gasmon.adapters.timeouts import OPENSEARCH_BULK_RETRIES, OPENSEARCH_TIMEOUT_SECONDS
from gasmon.errors import StoreUnavailableError
from gasmon.models import BucketStats, DeviceLatest, GasValue, Reading, SeriesQuery, StoreOutcome
from gasmon.ports import SweepOutcome

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

    from gasmon.adapters.signed_http import SignedHttp

log = logging.getLogger(__name__)

MAX_BULK_BYTES = 10 * 1024 * 1024
DEFAULT_RETENTION_DAYS = 90
# Daily indices are `<index>-YYYY.MM.DD`; `<index>-2*` matches them and nothing else gasmon names
# `<index>-...` (e.g. a latest-per-device index), until the year 3000.
DAILY_PATTERN = "{index}-2*"
INDEX_TEMPLATE: dict[str, Any] = {
    "priority": 100,
    "template": {
        # number_of_replicas is set per domain (OPENSEARCH_REPLICAS): 0 on one node.
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
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
                # double, not float: float32 turns 87.99999999 into 88.0 and 1234.56 into 1234.5601
                "value": {"type": "double"},
                "gps": {"type": "geo_point"},
                "createdtime": {"type": "keyword"},
                "date": {"type": "date"},
                "received_at": {"type": "date"},
            },
        },
    },
}
LATEST_INDEX_TEMPLATE: dict[str, Any] = {**INDEX_TEMPLATE, "priority": 200}
_RETRYABLE = {429, 500, 502, 503, 504}
# The API specification's content type for `_bulk` (opensearch-py would send application/json).
_NDJSON = "application/x-ndjson"
# Whole-request answers after which the cluster may have stored the body: a later 409 is ours.
_AMBIGUOUS = {500, 502, 503, 504}


def daily_index(index: str, day: date) -> str:
    """The index a reading of this UTC day is stored in."""
    return f"{index}-{day:%Y.%m.%d}"


def read_target(index: str) -> str:
    """What searches name: the alias (or a seed index of that name) and every daily index."""
    return f"{index},{DAILY_PATTERN.format(index=index)}"


def retention_policy_id(index: str) -> str:
    return f"{index}-retention"


def index_template_body(index: str, with_alias: bool, replicas: int = 0) -> dict[str, Any]:
    """The template of the daily indices: gasmon's mapping, the domain's replica count (0 on one
    node, so a single-node domain is green), and the alias unless an index has its name."""
    template = json.loads(json.dumps(INDEX_TEMPLATE))
    template["template"]["settings"]["number_of_replicas"] = replicas
    if with_alias:
        template["template"]["aliases"] = {index: {}}
    return {"index_patterns": [DAILY_PATTERN.format(index=index)], **template}


def setup_marker(index: str, latest_index: str, retention_days: int, replicas: int, with_alias: bool = True) -> str:
    """A digest of everything gasmon's index setup installs: the retention policy carries it, so a
    cold start that finds its own marker there knows the templates and the policy are current.
    A setup made beside a seed index (no alias) never matches what a cold start looks for, so the
    seed index is probed again at each cold start until it is gone and the alias can be added."""
    installed = [index, latest_index, retention_days, replicas, with_alias, INDEX_TEMPLATE, LATEST_INDEX_TEMPLATE]
    return hashlib.sha256(json.dumps(installed, sort_keys=True).encode()).hexdigest()[:16]


def retention_policy_body(index: str, retention_days: int, marker: str = "") -> dict[str, Any]:
    """An ISM policy deleting a daily index `retention_days` after its creation, attached by pattern;
    its description ends with the setup marker (`setup_marker`)."""
    setup = f" (setup {marker})" if marker else ""
    return {
        "policy": {
            "description": f"gasmon: delete daily reading indices after {retention_days} days{setup}",
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [],
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{retention_days}d"}}],
                },
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [{"index_patterns": [DAILY_PATTERN.format(index=index)], "priority": 100}],
        }
    }


def has_gasmon_mapping(mapping: Mapping[str, Any]) -> bool:
    """True if an index's mapping is gasmon's (the fields queries filter and aggregate on)."""
    properties = mapping.get("mappings", {}).get("properties", {})
    wanted = {"reading_id": "keyword", "device": "keyword", "gas": "keyword", "date": "date"}
    types_match = all(properties.get(field, {}).get("type") == kind for field, kind in wanted.items())
    return types_match and properties.get("value", {}).get("type") in ("double", "float")


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
    for field in ("groupid", "sensorid", "deviceid", "device"):
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


def retention_body(cutoff: datetime) -> dict[str, Any]:
    """The `_delete_by_query` body for readings dated before `cutoff`."""
    return {"query": {"range": {"date": {"lt": _epoch_ms(cutoff), "format": "epoch_millis"}}}}


def latest_id(reading: Reading) -> str:
    """The id of the latest index's document for the reading's (device, gas)."""
    return f"{reading.device}#{reading.gas}"


def newest_per_device_gas(readings: Sequence[Reading]) -> dict[str, Reading]:
    """The newest of `readings` for each (device, gas), by latest-document id."""
    newest: dict[str, Reading] = {}
    for reading in readings:
        key = latest_id(reading)
        known = newest.get(key)
        if known is None or (reading.created_at, reading.reading_id) > (known.created_at, known.reading_id):
            newest[key] = reading
    return newest


def latest_action(latest_index: str, reading: Reading) -> str:
    """The `_bulk` lines that make `reading` its (device, gas)'s latest document unless a newer one is."""
    meta = {
        "_index": latest_index,
        "_id": latest_id(reading),
        "version": _epoch_ms(reading.created_at),
        "version_type": "external_gte",
    }
    return json.dumps({"index": meta}) + "\n" + json.dumps(to_document(reading)) + "\n"


def bulk_bodies(
    index: str, readings: Sequence[Reading], limit: int = MAX_BULK_BYTES, latest_index: str | None = None
) -> Iterator[str]:
    """NDJSON `_bulk` bodies of `create` actions into each reading's daily index, each at most `limit`
    bytes; with `latest_index`,
    the newest reading per (device, gas) is followed by its `latest_action` in the same body."""
    newest = {r.reading_id for r in newest_per_device_gas(readings).values()} if latest_index else set()
    lines: list[str] = []
    size = 0
    for reading in readings:
        target = daily_index(index, reading.created_at.astimezone(UTC).date())
        pair = (
            json.dumps({"create": {"_index": target, "_id": reading.reading_id}})
            + "\n"
            + json.dumps(to_document(reading))
            + "\n"
        )
        if latest_index and reading.reading_id in newest:
            pair += latest_action(latest_index, reading)
        if lines and size + len(pair.encode()) > limit:
            yield "".join(lines)
            lines, size = [], 0
        lines.append(pair)
        size += len(pair.encode())
    if lines:
        yield "".join(lines)


def _path_index(body: str) -> str:
    """The `_index` of a bulk body's first action: the index its `POST /<index>/_bulk` names."""
    first = json.loads(body.split("\n", 1)[0])
    return str(next(iter(first.values()))["_index"])


def _action_ids(body: str) -> list[str]:
    """The `_id`s of a bulk body's action lines (every other line, starting with the first)."""
    actions = (json.loads(line) for line in body.split("\n")[::2] if line)
    return [str(meta["_id"]) for action in actions for meta in action.values() if "_id" in meta]


def _error_type(error: Any) -> str:
    """The `type` of an OpenSearch error (`error.type`, or the root cause's)."""
    if isinstance(error, Mapping):
        inner = error.get("error", error)
        if isinstance(inner, Mapping):
            return str(inner.get("type", ""))
        return str(inner)
    return str(error or "")


def _unavailable(status: int, info: Any) -> StoreUnavailableError | None:
    """What an OpenSearch error answer means to the device, on the write path (`_send`) and through
    opensearch-py (`_call`) alike: 401/403/429/5xx are an outage (retry later), None otherwise."""
    if status == 403:
        # cluster_block_exception (disk full: writes blocked) or a missing permission.
        return StoreUnavailableError(
            f"OpenSearch refused the request (403 {_error_type(info)})", retry_after_seconds=30
        )
    if status in _RETRYABLE or status == 401:
        return StoreUnavailableError(f"OpenSearch answered {status}", retry_after_seconds=5)
    return None


class OpenSearchHttpError(Exception):
    """An OpenSearch answer of 300 or more on the write path: its status and its JSON body."""

    def __init__(self, status_code: int, info: Any) -> None:
        super().__init__(f"OpenSearch answered {status_code}: {_error_type(info) or info}")
        self.status_code = status_code
        self.info = info


class OpenSearchReadingStore:
    """A `ReadingStore` on an OpenSearch domain; the client is built on first use."""

    def __init__(
        self,
        endpoint: str,
        index: str = "gasdetect",
        region: str = "ap-northeast-2",
        sign_requests: bool = True,
        client_factory: Callable[[], OpenSearch] | None = None,
        retries: int = OPENSEARCH_BULK_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        timeout: float = OPENSEARCH_TIMEOUT_SECONDS,
        latest_index: str | None = None,
        replicas: int = 0,
    ) -> None:
        self.endpoint = endpoint
        self.index = index
        self.latest_index = latest_index or f"{index}-latest"
        self.region = region
        self.sign_requests = sign_requests
        self._client_factory = client_factory
        self._client: OpenSearch | None = None
        self._http: SignedHttp | None = None
        self._template_ready = False
        self.retries = retries
        self._sleep = sleep
        self.retention_days = retention_days
        self.timeout = timeout
        self.seed_index = False  # a concrete index named `index` exists (set by the first write)
        self.replicas = replicas
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
            # The timeout ladder (gasmon.adapters.timeouts): short enough that the presence
            # functions' fallback and ingest's 503 still run inside the Lambda timeout.
            timeout=self.timeout,
            # No retries inside the client: a bulk it re-sent after a 504 would come back 409 for
            # readings this very call stored. `put_readings` retries, knowing what it sent.
            max_retries=0,
        )

    @property
    def client(self) -> OpenSearch:
        if self._client is None:
            self._client = self._client_factory() if self._client_factory else self._build_client()
        return self._client

    @property
    def http(self) -> SignedHttp:
        """The write path's signed HTTP client (no opensearch-py, no botocore client)."""
        if self._http is None:
            from gasmon.adapters.signed_http import SignedHttp

            self._http = SignedHttp(self.endpoint, "es", self.region, self.sign_requests, timeout=self.timeout)
        return self._http

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One write-path request; its JSON answer. Failures map as `_call` maps opensearch-py's:
        no answer, 401/403/429/5xx are `StoreUnavailableError` (the device retries later), the
        HTTP error as its cause; other statuses raise `OpenSearchHttpError`."""
        from gasmon.adapters.signed_http import HttpConnectionError

        try:
            status, answer = self.http.request(method, path, body, params, content_type)
        except HttpConnectionError as exc:
            raise StoreUnavailableError(f"OpenSearch is unreachable: {exc}", retry_after_seconds=5) from exc
        if status < 300:
            return answer
        error = OpenSearchHttpError(status, answer)
        unavailable = _unavailable(status, answer)
        if unavailable is not None:
            raise unavailable from error
        raise error

    def _send_json(self, method: str, path: str, body: Any, params: Mapping[str, str] | None = None) -> Any:
        return self._send(method, path, json.dumps(body).encode(), params)

    # ---- index setup: once per process, before the first write ----

    def marker(self, with_alias: bool = True) -> str:
        return setup_marker(self.index, self.latest_index, self.retention_days, self.replicas, with_alias)

    def ensure_index_template(self) -> None:
        """Make sure the retention policy and the daily and latest indices' templates are installed.

        One request on a domain already set up by this configuration: the retention policy is
        written last and carries the setup marker, so finding the marker means the rest is there.
        Otherwise: probe for a seed index, install both templates, then the policy (created, or
        replaced guarded by the version read). A 403 (fine-grained access control: the role is
        not mapped to manage templates and ISM policies) is logged once as an error and the write
        goes ahead: an operator may have installed both already. Unreachable or overloaded: the
        POST is retried later.
        """
        if self._template_ready:
            return
        try:
            current = self._current_policy()
            if current is not None and f"(setup {self.marker()})" in str(current.get("policy", {}).get("description")):
                self._template_ready = True
                return
            self._detect_seed_index()
            body = index_template_body(self.index, with_alias=not self.seed_index, replicas=self.replicas)
            self._send_json("PUT", f"/_index_template/{self.index}", body)
            # Its own template, at a higher priority, so the readings' template (and any alias it
            # adds) never applies to the latest index: searches of the readings never count it.
            latest_body = {"index_patterns": [self.latest_index], **LATEST_INDEX_TEMPLATE}
            self._send_json("PUT", f"/_index_template/{self.latest_index}", latest_body)
            self._put_retention_policy(current)
        except StoreUnavailableError as exc:
            if not isinstance(exc.__cause__, OpenSearchHttpError) or exc.__cause__.status_code != 403:
                raise
            log.error(
                "OpenSearch refused gasmon's index setup with 403 (%s). With fine-grained access control, "
                "map this function's IAM role to a role allowed cluster:admin/opendistro/ism/policy/*, "
                "indices:admin/index_template/put and indices:admin/mappings/get (docs/operating.md, "
                "Existing OpenSearch domain). Until then readings are written without gasmon's template "
                "and retention policy.",
                _error_type(exc.__cause__.info),
            )
        self._template_ready = True

    def _detect_seed_index(self) -> None:
        mappings = self._send("GET", f"/{self.index}/_mapping", params={"ignore_unavailable": "true"})
        existing = mappings.get(self.index) if isinstance(mappings, Mapping) else None
        if existing is None:
            return  # nothing, or the alias over daily indices
        self.seed_index = True
        if has_gasmon_mapping(existing):
            log.warning(
                "index %s holds readings from before daily indices: left as it is and still read; "
                "new readings go to %s (gasmon-admin reindex-seed moves the old ones)",
                self.index,
                daily_index(self.index, datetime.now(UTC).date()),
            )
        else:
            log.warning(
                "index %s exists without gasmon's mapping (a seed index): left alone; new readings go to %s "
                "and queries read both; convert its documents with gasmon-admin reindex-seed",
                self.index,
                daily_index(self.index, datetime.now(UTC).date()),
            )

    def _current_policy(self) -> Mapping[str, Any] | None:
        """The stored retention policy as GET answers it (with its version), or None if there is none."""
        try:
            current = self._send("GET", f"/_plugins/_ism/policies/{retention_policy_id(self.index)}")
        except OpenSearchHttpError as exc:
            if exc.status_code != 404:
                raise
            return None
        return current if isinstance(current, Mapping) else {}

    def _put_retention_policy(self, current: Mapping[str, Any] | None) -> None:
        """Create the policy, or replace it guarded by the version read (a conflict means another
        cold start just did the same)."""
        policy_id = retention_policy_id(self.index)
        path = f"/_plugins/_ism/policies/{policy_id}"
        wanted = retention_policy_body(self.index, self.retention_days, self.marker(with_alias=not self.seed_index))
        if current is not None and ("_seq_no" not in current or "_primary_term" not in current):
            # Not the answer the API specifies: nothing to guard the replacement with.
            log.warning("retention policy %s answered without its version: replaced unguarded", policy_id)
            self._send_json("PUT", path, wanted)
            return
        params = None
        if current is not None:
            params = {"if_seq_no": str(current["_seq_no"]), "if_primary_term": str(current["_primary_term"])}
        try:
            self._send_json("PUT", path, wanted, params)
        except OpenSearchHttpError as conflict:
            if conflict.status_code != 409:
                raise
            log.info("retention policy %s was written by another writer", policy_id)

    def _call(self, request: Callable[[], Any]) -> Any:
        from opensearchpy.exceptions import ConnectionError as OSConnectionError
        from opensearchpy.exceptions import TransportError

        try:
            return request()
        except OSConnectionError as exc:
            raise StoreUnavailableError(f"OpenSearch is unreachable: {exc}", retry_after_seconds=5) from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 503
            unavailable = _unavailable(status, exc.info)
            if unavailable is not None:
                raise unavailable from exc
            raise

    # ---- writes ----

    def put_readings(self, readings: Sequence[Reading]) -> StoreOutcome:
        """Bulk-create readings; 409 means already stored; retry what the cluster throttled."""
        self.ensure_index_template()
        created: set[str] = set()
        existing: set[str] = set()
        refused: dict[str, str] = {}
        ambiguous: set[str] = set()  # sent in an attempt whose answer was lost: a 409 later is ours
        pending = list({r.reading_id: r for r in readings}.values())
        for attempt in range(self.retries + 1):
            failed: list[Reading] = []
            by_id = {r.reading_id: r for r in pending}
            by_latest_id = newest_per_device_gas(pending)
            for body in bulk_bodies(self.index, pending, latest_index=self.latest_index):
                self.requests += 1
                ids = [i for i in _action_ids(body) if i in by_id]
                try:
                    answer = self._send("POST", f"/{_path_index(body)}/_bulk", body.encode(), content_type=_NDJSON)
                except StoreUnavailableError as exc:
                    cause = exc.__cause__
                    if not isinstance(cause, OpenSearchHttpError) or cause.status_code not in _RETRYABLE:
                        raise
                    if cause.status_code in _AMBIGUOUS:
                        ambiguous.update(ids)
                    failed.extend(by_id[i] for i in ids)
                    continue
                for item in (answer or {}).get("items", []):
                    if "create" not in item:  # a latest-document action
                        result: dict[str, Any] = next(iter(item.values()), {})
                        reading = by_latest_id.get(str(result.get("_id")))
                        # 409: a newer reading is already the latest. Throttled: send the reading
                        # again (its create then answers 409). Anything else leaves the reading stored.
                        if int(result.get("status", 500)) in _RETRYABLE and reading is not None:
                            failed.append(reading)
                        continue
                    result = item.get("create", {})
                    status = int(result.get("status", 500))
                    reading_id = str(result.get("_id"))
                    if status in (200, 201) or (status == 409 and reading_id in ambiguous):
                        created.add(reading_id)
                    elif status == 409:
                        existing.add(reading_id)
                    elif status in _RETRYABLE and reading_id in by_id:
                        failed.append(by_id[reading_id])
                    elif status == 403:
                        kind = _error_type(result.get("error"))
                        log.error("OpenSearch refused reading %s with 403 %s", reading_id, kind)
                        raise StoreUnavailableError(
                            f"OpenSearch is not accepting writes now (403 {kind})", retry_after_seconds=30
                        )
                    else:
                        error = result.get("error", {})
                        reason = error.get("reason", "") if isinstance(error, Mapping) else str(error)
                        log.warning("OpenSearch refused reading %s for good: %s", reading_id, error)
                        refused[reading_id] = f"the store refused it ({_error_type(error) or status}): {reason}"
            if not failed:
                conflicts = self._conflicts(existing - created, readings) if existing - created else frozenset()
                return StoreOutcome(
                    created=frozenset(created),
                    existing=frozenset(existing - created),
                    conflicts=conflicts,
                    refused=refused,
                )
            pending = list({r.reading_id: r for r in failed}.values())
            if attempt < self.retries:
                self._sleep(0.1 * 2**attempt)
        raise StoreUnavailableError(
            f"OpenSearch is throttling: {len(pending)} readings not stored", retry_after_seconds=5
        )

    # ---- RetentionSweeper ----

    def delete_older_than(self, cutoff: datetime, batch_size: int, max_batches: int) -> SweepOutcome:
        """One `_delete_by_query` on `<index>*` for documents dated before `cutoff`.

        ISM deletes gasmon's own time-based indices whole; this catches what it does not manage
        (the seed's own index, indices made before the policy). `max_docs` bounds one run;
        `conflicts=proceed` skips documents changed meanwhile, the next run takes them.
        """
        limit = batch_size * max_batches

        def request() -> Any:
            return self.client.delete_by_query(
                index=f"{self.index}*",
                body=retention_body(cutoff),
                conflicts="proceed",
                max_docs=limit,
                ignore_unavailable=True,
            )

        answer = dict(self._call(request))
        deleted = int(answer.get("deleted", 0))
        return SweepOutcome(deleted=deleted, complete=deleted < limit)

    def _conflicts(self, existing: set[str], readings: Sequence[Reading]) -> frozenset[str]:
        """Which already-stored ids hold a different value than posted: one `_mget` of their values,
        made only when a POST met readings it had stored before (a retry, or a re-post)."""
        posted: dict[str, float] = {}
        for r in readings:
            posted.setdefault(r.reading_id, r.value)
        self.requests += 1
        # Each id is looked up in its own day's index (named in the body), so a seed index of the
        # alias's name does not hide them; the path names gasmon's index, as the role allows.
        days = {r.reading_id: daily_index(self.index, r.created_at.astimezone(UTC).date()) for r in readings}
        docs = [
            {"_index": days[reading_id], "_id": reading_id} for reading_id in sorted(existing) if reading_id in days
        ]
        answer = self._send_json("POST", f"/{self.index}/_mget", {"docs": docs}, {"_source_includes": "value"})
        conflicts = set()
        for doc in (answer or {}).get("docs", []):
            value = doc.get("_source", {}).get("value") if doc.get("found") else None
            if value is not None and doc.get("_id") in posted and float(value) != posted[doc["_id"]]:
                conflicts.add(str(doc["_id"]))
        return frozenset(conflicts)

    # ---- ReadingQueries ----

    def _search(self, body: dict[str, Any], index: str | None = None) -> dict[str, Any]:
        self.requests += 1

        # ignore_unavailable: before the first reading is stored the index does not exist yet.
        def request() -> Any:
            return self.client.search(index=index or read_target(self.index), body=body, ignore_unavailable=True)

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
        """One composite-aggregation page of devices over the latest index (one document per device
        and gas, so top_hits picks among a device's gases, never among its history)."""
        answer = self._search(latest_body(after, limit, groupid), index=self.latest_index)
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
