"""The query function's HTTP contract: 4xx in gasmon's error format, 503 with Retry-After."""

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from gasmon.adapters.presence_status import NullDeviceStatusSource
from gasmon.errors import StoreUnavailableError
from gasmon.models import BucketStats, DeviceLatest, Reading, SeriesQuery
from gasmon.query import encode_cursor
from gasmon_local.functions import load_handler

handler = load_handler("functions/query_readings")
NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


class EmptyStore:
    def bucket_stats(self, query: SeriesQuery) -> list[BucketStats]:
        return []

    def latest_by_device(self, after: str | None, limit: int, groupid: str | None = None) -> list[DeviceLatest]:
        return []

    def readings_at_or_above(
        self,
        thresholds: Mapping[str, float],
        since: datetime,
        limit: int,
        before: tuple[datetime, str] | None = None,
        groupid: str | None = None,
    ) -> list[Reading]:
        return []


class DownStore(EmptyStore):
    def bucket_stats(self, query: SeriesQuery) -> list[BucketStats]:
        raise StoreUnavailableError("OpenSearch answered 503", retry_after_seconds=7)


def call(api_event: Callable[..., dict[str, Any]], context: Any, path: str, query: dict[str, str], store: Any = None):
    result = handler(
        api_event("GET", path, query),
        context,
        queries=store or EmptyStore(),
        presence=NullDeviceStatusSource(),
        clock=lambda: NOW,
    )
    return result["statusCode"], json.loads(result["body"]), result


@pytest.mark.parametrize(
    ("path", "query", "field", "words"),
    [
        ("/series", {}, "gas", "is required"),
        ("/series", {"gas": "NO2"}, "gas", "lower case"),
        ("/series", {"gas": "no2", "interval": "5 minutes"}, "interval", "30s, 5m"),
        ("/series", {"gas": "no2", "start": "yesterday"}, "start", "datetime"),
        ("/series", {"gas": "no2", "interval": "1s", "start": "2025-03-10T00:00:00Z"}, "interval", "buckets"),
        # times the store cannot hold: before the retention period (90 days), or far in the future
        ("/series", {"gas": "no2", "start": "2024-01-01T00:00:00Z"}, "start", "90 days"),
        ("/series", {"gas": "no2", "start": "0001-01-01T00:00:00Z"}, "start", "retention"),
        ("/series", {"gas": "no2", "end": "9999-12-31T23:59:59Z"}, "end", "at or before"),
        ("/warnings", {"since": "0096-12-27T00:00:00Z"}, "since", "retention"),
        ("/alerts", {"since": "9999-01-01T00:00:00+14:00"}, "since", "at or before"),
        # cursors the server did not issue: unsigned, signed with another key, another list's
        ("/warnings", {"cursor": "eyJrIjoidyIsInQiOjEsImlkIjoieCJ9"}, "cursor", "next_cursor"),
        ("/devices", {"cursor": encode_cursor("d", {"d": "pi"}, key=b"another key")}, "cursor", "next_cursor"),
        ("/alerts", {"cursor": encode_cursor("w", {"t": 1, "id": "x"})}, "cursor", "next_cursor"),
        ("/devices", {"limit": "0"}, "limit", "greater than or equal to 1"),
        ("/devices", {"limit": "lots"}, "limit", "integer"),
        ("/devices", {"cursor": "bm9wZQ"}, "cursor", "next_cursor"),
        ("/warnings", {"limit": "501"}, "limit", "less than or equal to 500"),
        ("/alerts", {"since": "soon"}, "since", "datetime"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(
    api_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
    path: str,
    query: dict[str, str],
    field: str,
    words: str,
) -> None:
    # When a query has one bad parameter
    status, body, _ = call(api_event, lambda_context, path, query)
    # Then the answer is gasmon's error body naming that parameter and what would fit
    assert status == 422
    assert body["code"] == "invalid_query"
    assert [d["path"] for d in body["details"]] == [field]
    assert words in body["details"][0]["problem"]


def test_a_store_outage_is_a_503_with_retry_after(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    status, body, result = call(api_event, lambda_context, "/series", {"gas": "no2"}, store=DownStore())
    assert status == 503
    assert body["code"] == "store_unavailable"
    headers = {
        **(result.get("headers") or {}),
        **{k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()},
    }
    assert headers["Retry-After"] == "7"


def test_an_unknown_route_is_a_404_in_the_same_format(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    status, body, _ = call(api_event, lambda_context, "/nothing", {})
    assert status == 404 and body["code"] == "not_found"


def test_an_empty_store_still_answers_every_bucket(
    api_event: Callable[..., dict[str, Any]], lambda_context: Any
) -> None:
    status, body, _ = call(
        api_event, lambda_context, "/series", {"gas": "no2", "start": "2025-03-14T08:00:00Z", "interval": "15m"}
    )
    assert status == 200
    assert [p["count"] for p in body["points"]] == [0, 0, 0, 0]
    assert body["threshold"] == 88.0
