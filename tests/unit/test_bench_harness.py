"""The bench's own machinery at tiny sizes: verdicts, the README table, the SigV4 stub, cost sums.

Speed is never asserted here (that is `make bench`); these check that the harness reports what it
measured: a missed target says MISSED, a badly signed request is refused, counts add up.
"""

from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import BEGIN, END, rewrite_readme, table, verdict
from bench.bench_cold import SigV4Stub
from bench.bench_cost import monthly, per_thousand


def row(value: float, baseline: float, target: str) -> dict[str, Any]:
    return {"metric": "m", "value": value, "unit": "ms", "baseline": baseline, "baseline_label": "b", "target": target}


@pytest.mark.parametrize(
    ("value", "baseline", "target", "expected"),
    [
        (70, 100, "<= 0.8x", "met"),
        (90, 100, "<= 0.8x", "MISSED"),
        (0.9, 1, "<= 1 ms", "met"),
        (1.2, 1, "<= 1 ms", "MISSED"),
        (59_000, 1, ">= 60,000/s", "MISSED"),
        (61_000, 1, ">= 60,000/s", "met"),
        (5, 1, "report only", ""),
        (5, 1, "p99 <= 1 ms", ""),
    ],
)
def test_a_target_that_is_a_bound_is_checked(value: float, baseline: float, target: str, expected: str) -> None:
    assert verdict(row(value, baseline, target)) == expected


def test_the_readme_table_is_replaced_between_its_markers_only(tmp_path: Path) -> None:
    # Given a README with an old table between the markers
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\nold table\n{END}\nafter\n")
    # When the bench rewrites it
    rewrite_readme(readme, table([row(90, 100, "<= 0.8x")]), "make bench", 0.0, (1.0, 1.0, 1.0))
    text = readme.read_text()
    # Then the new rows, the command and the machine are there, the old table and nothing else is gone
    assert "old table" not in text
    assert text.startswith("intro\n") and text.endswith(f"{END}\nafter\n")
    assert "| m | 90.00 ms | 100 ms (b) | 0.900x | <= 0.8x | MISSED |" in text
    assert "`make bench` on " in text and "cores" in text


def test_the_opensearch_stub_accepts_a_signed_bulk_and_refuses_a_wrong_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from gasmon.adapters import aws
    from gasmon.adapters.opensearch_store import OpenSearchReadingStore
    from gasmon.errors import StoreUnavailableError
    from gasmon.models import Reading

    now = datetime.now(UTC)
    reading = Reading(
        reading_id="r1",
        groupid="2",
        gas="no2",
        sensorid="0006",
        sensortype="9",
        value=52.0,
        createdtime="2026-01-01 00:00:00",
        created_at=now,
        received_at=now,
    )
    credentials = {"AWS_ACCESS_KEY_ID": "testing-stub", "AWS_SECRET_ACCESS_KEY": "right"}
    monkeypatch.setattr(aws, "_session", None)
    with SigV4Stub(credentials, region="ap-northeast-2") as stub:
        # Given the store signs with the credentials the stub knows
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-stub")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "right")
        store = OpenSearchReadingStore(endpoint=stub.url, region="ap-northeast-2", retries=0)
        # When it indexes a reading, Then the stub checks the signature and creates it
        assert store.put_readings([reading]).created == {"r1"}
        assert stub.counts["refused"] == 0 and stub.counts["bulk"] == 1
        # Given a store whose secret is wrong
        monkeypatch.setattr(aws, "_session", None)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        other = OpenSearchReadingStore(endpoint=stub.url, region="ap-northeast-2", retries=0)
        # Then the stub refuses it, as a domain would (403), and the store says retry later
        with pytest.raises(StoreUnavailableError):
            other.put_readings([reading])
        assert stub.counts["refused"] >= 1
    monkeypatch.setattr(aws, "_session", None)


def test_cost_counts_scale_to_a_thousand_readings_and_a_month() -> None:
    # Given a run of 100 POSTs of four readings, one bulk request each
    counts = {
        "posts": 100,
        "readings": 400,
        "gb_seconds": 1.0,
        "opensearch_requests": 100,
        "opensearch_bytes": 100_000,
        "read_units": 400,
        "write_units": 2,
        "iot_messages": 1,
        "sns_emails": 0,
        "log_bytes": 10_000,
    }
    prices = {
        "prices": {
            name: {"usd": 1.0}
            for name in (
                "api_gateway_rest_request",
                "lambda_request",
                "lambda_arm64_gb_second",
                "lambda_x86_gb_second",
                "dynamodb_read_request_unit",
                "dynamodb_write_request_unit",
                "iot_message",
                "iot_connection_minute",
                "opensearch_t3_small_hour",
                "opensearch_gp3_gb_month",
                "sns_email",
                "cloudwatch_logs_ingest_gb",
                "xray_trace_recorded",
            )
        }
    }
    # Then per 1,000 readings there are 250 requests and invocations
    scaled = per_thousand(counts)
    assert scaled["API Gateway requests"] == 250 and scaled["Lambda invocations"] == 250
    assert scaled["DynamoDB read units"] == 1000
    # And a month of one Pi at one document per 5 s is 525,946 POSTs at a price of 1 each
    bill = monthly(counts, 1, prices)
    assert bill["API Gateway"] == pytest.approx(30.44 * 86400 / 5)
