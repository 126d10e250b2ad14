"""The timeout ladder: every client's timeouts and retries, in one place.

The adapters take their settings from here (`aws_client`, the OpenSearch store), and
tests/unit/test_timeout_ladder.py checks each function's clients against its Timeout in
template.yaml: a client's worst case plus `FALLBACK_MARGIN_SECONDS` (time left to answer 503, or
to send the e-mail without the group) must fit. Sequential calls of different clients in one
invocation are not summed: each failure path ends the invocation's use of that client.
"""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class ClientBudget:
    """How long one client may take: `calls` sequential requests (one adapter call's worst case),
    each up to `attempts` tries of `connect + read` seconds, plus `backoff` seconds of sleeps."""

    connect: float
    read: float
    attempts: int
    calls: int = 1
    backoff: float = 0.0

    @property
    def worst_case_seconds(self) -> float:
        return self.calls * self.attempts * (self.connect + self.read) + self.backoff


# boto3 clients: standard retry mode, `attempts` tries in all (boto3's `max_attempts`); its
# backoff between tries is at most 2**try seconds with jitter, so at most 1 s for two tries.
_AWS = ClientBudget(connect=1.0, read=2.0, attempts=2, backoff=1.0)
CLIENT_BUDGETS: dict[str, ClientBudget] = {
    "dynamodb": _AWS,
    "iot-data": _AWS,
    "iot": _AWS,
    "sns": _AWS,
    "sqs": _AWS,
    "firehose": _AWS,
    # opensearch-py: one timeout covers connect and read; no transport retry (the store retries
    # throttled items itself). A write on a cold start is: the seed-index probe, the ISM policy
    # (get, put), the readings' and the latest index's templates, 3 bulk rounds and 1 mget of
    # duplicates, with 0.1 + 0.2 s between the rounds; warm, only the bulk rounds and the mget.
    "opensearch-write": ClientBudget(connect=0.0, read=2.5, attempts=1, calls=9, backoff=0.3),
    # A search (the presence functions' device directory, the query API): one request.
    "opensearch-search": ClientBudget(connect=0.0, read=2.5, attempts=1),
}
OPENSEARCH_TIMEOUT_SECONDS = CLIENT_BUDGETS["opensearch-write"].read
OPENSEARCH_BULK_RETRIES = 2  # bulk rounds after the first, for throttled items

# Which clients each function of template.yaml uses (logical id -> client names).
FUNCTION_CLIENTS: dict[str, tuple[str, ...]] = {
    "IngestFunction": ("opensearch-write", "firehose", "dynamodb", "iot-data", "iot"),
    "SweepReadingsFunction": ("opensearch-search",),  # one bounded _delete_by_query
    "AlarmSweepFunction": ("dynamodb", "iot-data", "iot"),
    "RecordPresenceFunction": ("dynamodb", "sqs", "sns", "opensearch-search"),
    "CheckPresenceFunction": ("dynamodb", "sqs", "sns", "opensearch-search"),
    "QueryFunction": ("opensearch-search", "dynamodb"),
    "AuthorizeRequestFunction": ("dynamodb",),  # one GetItem by key hash (and last_seen)
}
