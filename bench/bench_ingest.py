"""Ingest benchmarks: warm latency, batch throughput, store requests per reading (cold start: bench_cold)."""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEED_EVENT = json.loads((ROOT / "events" / "ingest_seed_document.json").read_text())
SEED_DOC = json.loads(SEED_EVENT["body"])
GASES = ("co", "no2", "c2h5oh", "h2")


def documents(count: int, start: datetime, value: str = "52.00") -> list[dict[str, Any]]:
    """`count` seed-shaped documents one second apart, all below every threshold."""
    docs = []
    for i in range(count):
        doc = copy.deepcopy(SEED_DOC)
        stamp = (start + timedelta(seconds=i)).isoformat()
        for gas in GASES:
            doc[gas]["createdtime"] = stamp
        doc["no2"]["value"] = value
        docs.append(doc)
    return docs


def event_for(body: Any) -> dict[str, Any]:
    event = copy.deepcopy(SEED_EVENT)
    event["path"] = event["resource"] = "/readings"
    event["body"] = json.dumps(body)
    return event


class _Ctx:
    function_name = "bench"
    memory_limit_in_mb = 512
    aws_request_id = "r"
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:123456789012:function:bench"


# Both sides of every row run in this process, interleaved: request by request for latency, round
# by round (ROUNDS rounds of BATCHES_PER_ROUND batches each) for throughput, so a noisy neighbour
# on this shared machine slows both alike. Throughput is the median of the rounds.
ROUNDS = 10
BATCHES_PER_ROUND = 20
BASELINE = "seed 003 shape: one committed INSERT per document into SQLite (same file settings), no validation"


def warm(requests: int = 2000) -> list[dict[str, Any]]:
    """In-process warm calls: one-reading latency p50/p99 and 100-reading batch throughput."""
    sys.path.insert(0, str(ROOT / "bench"))
    import seed_style  # noqa: E402  (the baseline lives beside this file)

    from bench.in_process import load_function
    from gasmon.adapters.sqlite_store import SqliteReadingStore
    from tests.fakes import MemoryPublisher

    handler = load_function("functions/ingest_readings")
    start = datetime.now(UTC) - timedelta(days=20)
    one = {"groupid": "2", "no2": {"sensorid": "0006", "sensortype": "9", "value": "52.0", "createdtime": ""}}

    def single_events(offset: int, count: int = requests) -> list[dict[str, Any]]:
        events = []
        for i in range(count):
            doc = copy.deepcopy(one)
            doc["no2"]["createdtime"] = (start + timedelta(seconds=offset + i)).isoformat()
            events.append(event_for(doc))
        return events

    def batch_events(hour: int) -> list[dict[str, Any]]:
        # 25 four-gas documents: 100 readings per POST, as the seed's Pi would send them in a batch.
        return [
            event_for(documents(25, start + timedelta(hours=hour, seconds=25 * b)))
            for b in range(ROUNDS * BATCHES_PER_ROUND)
        ]

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteReadingStore(f"{tmp}/r.sqlite3")
        seed_style.open_store(f"{tmp}/seed.sqlite3")
        publisher = MemoryPublisher()
        latencies, seed_latencies = [], []
        gas_events, seed_events = single_events(0), single_events(1_000_000)
        devnull = open(os.devnull, "w")
        real_stdout = sys.stdout
        sys.stdout = devnull  # the metrics decorator prints one EMF line per call
        try:
            for ev_g, ev_s in zip(single_events(500_000, 200), single_events(1_500_000, 200), strict=True):  # warm up
                handler(ev_g, _Ctx(), store=store, publisher=publisher)
                seed_style.lambda_handler(ev_s, None)
            for ev_g, ev_s in zip(gas_events, seed_events, strict=True):
                t = time.perf_counter()
                handler(ev_g, _Ctx(), store=store, publisher=publisher)
                latencies.append(time.perf_counter() - t)
                t = time.perf_counter()
                seed_style.lambda_handler(ev_s, None)
                seed_latencies.append(time.perf_counter() - t)

            ours, theirs = batch_events(1), batch_events(2)
            requests_before = store.requests
            seed_requests_before = seed_style.requests_made
            gasmon_rates, seed_rates = [], []
            for r in range(ROUNDS):
                chunk = slice(r * BATCHES_PER_ROUND, (r + 1) * BATCHES_PER_ROUND)
                t = time.perf_counter()
                for event in ours[chunk]:
                    handler(event, _Ctx(), store=store, publisher=publisher)
                gasmon_rates.append(BATCHES_PER_ROUND * 100 / (time.perf_counter() - t))
                t = time.perf_counter()
                for event in theirs[chunk]:
                    seed_style.lambda_handler(event, None)
                seed_rates.append(BATCHES_PER_ROUND * 100 / (time.perf_counter() - t))
        finally:
            sys.stdout = real_stdout
            devnull.close()
        readings = ROUNDS * BATCHES_PER_ROUND * 100
        store_requests = store.requests - requests_before
        seed_store_requests = seed_style.requests_made - seed_requests_before
    q = statistics.quantiles
    return [
        {
            "metric": "warm one-reading POST p50 (in-process, SQLite file)",
            "value": q(latencies, n=100)[49] * 1000,
            "unit": "ms",
            "baseline": q(seed_latencies, n=100)[49] * 1000,
            "baseline_label": f"{BASELINE}, interleaved",
            "target": "p99 <= 1 ms",
        },
        {
            "metric": "warm one-reading POST p99 (in-process, SQLite file)",
            "value": q(latencies, n=100)[98] * 1000,
            "unit": "ms",
            "baseline": q(seed_latencies, n=100)[98] * 1000,
            "baseline_label": f"{BASELINE}, interleaved",
            "target": "<= 1 ms",
        },
        {
            "metric": f"readings/s, 100-reading batches (in-process, SQLite file; median of {ROUNDS} rounds)",
            "value": statistics.median(gasmon_rates),
            "unit": "readings/s",
            "baseline": statistics.median(seed_rates),
            "baseline_label": f"{BASELINE}, rounds interleaved",
            "target": ">= 60,000/s",
        },
        {
            "metric": "store requests per 1,000 readings (100-reading batches)",
            "value": store_requests * 1000 / readings,
            "unit": "requests",
            "baseline": seed_store_requests * 1000 / readings,
            "baseline_label": "seed 003 shape: one per document, counted in the same run",
            "target": "<= 10 (0.01/reading)",
        },
    ]


def run() -> list[dict[str, Any]]:
    return warm()
