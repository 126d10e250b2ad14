"""OpenSearch reading store (Amazon OpenSearch Service in AWS, signed with SigV4).

One `_bulk` request per POST (split only past 10 MiB), `create` actions keyed by the
deterministic reading id: an item answered 409 was already stored, so a retried POST stores
nothing twice. Items the cluster could not take now (429, 5xx) are retried a few times; if some
still fail, the whole call raises `StoreUnavailableError` and the device retries later.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from gasmon.errors import StoreUnavailableError
from gasmon.models import Reading, StoreOutcome

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
    }
    if reading.lat is not None and reading.lon is not None:
        doc["gps"] = {"lat": reading.lat, "lon": reading.lon}
    return doc


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
            import boto3
            from opensearchpy import RequestsAWSV4SignerAuth

            auth = RequestsAWSV4SignerAuth(boto3.Session().get_credentials(), self.region, "es")
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
