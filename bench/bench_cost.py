"""The cost of running gasmon: AWS requests per 1,000 readings, counted from this run, and a month's bill.

Both designs serve the same traffic in-process: `DEVICES` Pis posting the seed's four-gas
document every 5 s for `MINUTES` simulated minutes, one of them with NO2 over the warning level
for the first half. gasmon's ingest handler runs with its real adapters: OpenSearch on the SigV4
stub of `bench_cold`, the alarm table on moto's server, warnings through the iot-data client to
moto. The seed design is `bench/seed003/app.py` (one OpenSearch request per document, its
success message on every request). What is counted, per service: API Gateway requests and
Lambda invocations (one per POST), Lambda GB-seconds (each invocation's measured duration on
this machine, rounded up to the millisecond, times the memory size), OpenSearch requests and
bytes, DynamoDB read and write request units (from the requests the client sent: items read
with ConsistentRead are one unit each, a written item one unit, two inside a transaction, for
items under 1 KB), IoT messages, SNS emails, CloudWatch Logs bytes (what the handler printed).

`monthly()` turns the counts into a month for 100 and 10,000 devices with `bench/prices.json`.
Not modelled: the OpenSearch cluster size 10,000 devices need (the template's single
t3.small.search is priced; it will not index 8,000 readings/s), S3/Firehose (the archive is not on
this branch), CloudWatch custom-metric charges, data transfer, free tiers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRICES = ROOT / "bench" / "prices.json"
DEVICES = 10
MINUTES = 5
INTERVAL = 5  # seconds between a Pi's documents
GASES = ("co", "no2", "c2h5oh", "h2")
MONTH_SECONDS = 30.44 * 86400
GASMON_MEMORY_GB = 0.5  # template.yaml Globals MemorySize: 512
SEED_MEMORY_GB = 0.125  # seed 003 sets none: Lambda's default, 128 MB


def _documents(start: datetime) -> list[dict[str, Any]]:
    sample = json.loads(json.loads((ROOT / "events" / "ingest_seed_document.json").read_text())["body"])
    out = []
    steps = MINUTES * 60 // INTERVAL
    for step in range(steps):
        at = start + timedelta(seconds=step * INTERVAL)
        stamp = (at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")  # the seed's zone-less Seoul time
        for device in range(DEVICES):
            doc = json.loads(json.dumps(sample))
            doc["groupid"] = f"cost-{device}"
            for gas in GASES:
                doc[gas]["createdtime"] = stamp
            doc["no2"]["value"] = "90.00" if device == 0 and step < steps // 2 else "52.00"
            out.append(doc)
    return out


def _event(document: dict[str, Any]) -> dict[str, Any]:
    """The sample API event carrying `document`, with what the authorizer hands ingest for the
    device of the document's group (each simulated Pi posts with its own key)."""
    sample = json.loads((ROOT / "events" / "ingest_seed_document.json").read_text())
    group = str(document["groupid"])
    identity = {"role": "device", "name": group, "groupid": group, "principalId": f"device:{group}"}
    context = sample["requestContext"] | {"authorizer": identity}
    return sample | {
        "path": "/readings",
        "resource": "/readings",
        "body": json.dumps(document),
        "requestContext": context,
    }


class _CountingPublisher:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.messages = 0

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        self.inner.publish(topic, payload, qos)
        self.messages += 1


class _Context:
    function_name = "gasmon-ingest"
    memory_limit_in_mb = 512
    aws_request_id = "bench-cost"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:gasmon-ingest"


def _count_units(client: Any, units: dict[str, float]) -> None:
    def reads(params: dict[str, Any], **_: Any) -> None:
        for request in params.get("RequestItems", {}).values():
            units["read_units"] += len(request.get("Keys", [])) * (1 if request.get("ConsistentRead") else 0.5)

    def put(params: dict[str, Any], **_: Any) -> None:
        units["write_units"] += 1

    def transact(params: dict[str, Any], **_: Any) -> None:
        units["write_units"] += 2 * len(params.get("TransactItems", []))

    client.meta.events.register("before-parameter-build.dynamodb.BatchGetItem", reads)
    client.meta.events.register("before-parameter-build.dynamodb.PutItem", put)
    client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", transact)


def _billed_gb_seconds(durations: list[float], memory_gb: float) -> float:
    return sum(math.ceil(d * 1000) / 1000 for d in durations) * memory_gb


def _gasmon(documents: list[dict[str, Any]], stub: Any, moto: str, region: str) -> dict[str, float]:
    from gasmon.adapters.dynamodb_alarms import DynamoDbAlarmStore
    from gasmon.adapters.iot_publisher import IotDataPublisher
    from gasmon.adapters.opensearch_store import OpenSearchReadingStore
    from gasmon_local.functions import load_handler

    handler = load_handler("functions/ingest_readings")
    store = OpenSearchReadingStore(endpoint=stub.url, region=region)
    alarms = DynamoDbAlarmStore(f"bench-cost-{uuid.uuid4().hex[:6]}", region=region, endpoint_url=moto)
    alarms.create_table()
    units = {"read_units": 0.0, "write_units": 0.0}
    _count_units(alarms.client, units)
    publisher = _CountingPublisher(IotDataPublisher(endpoint_url=moto, region=region))
    before = dict(stub.counts)
    durations: list[float] = []
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for document in documents:
            started = time.perf_counter()
            answer = handler(_event(document), _Context(), store=store, publisher=publisher, alarm_store=alarms)
            durations.append(time.perf_counter() - started)
            if answer["statusCode"] != 200:
                raise RuntimeError(f"gasmon refused a cost-run document: {answer['body']}")
    return {
        "posts": len(documents),
        "opensearch_requests": stub.counts["signed"] - before["signed"],
        "opensearch_bytes": stub.counts["bytes"] - before["bytes"],
        "gb_seconds": _billed_gb_seconds(durations, GASMON_MEMORY_GB),
        "iot_messages": publisher.messages,
        "sns_emails": 0,  # ingest never emails; presence does, on unexpected disconnects only
        "log_bytes": len(printed.getvalue().encode()),
        **units,
    }


def _seed(documents: list[dict[str, Any]], stub: Any, moto: str) -> dict[str, float]:
    os.environ.update(
        {
            "OPENSEARCH_ENDPOINT": stub.url,
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE": moto,
            "SEED_STATUS_MESSAGE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        spec = importlib.util.spec_from_file_location("bench_seed003_app", ROOT / "bench" / "seed003" / "app.py")
        assert spec is not None and spec.loader is not None
        seed = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(seed)
    finally:
        for name in ("OPENSEARCH_ENDPOINT", "AWS_ENDPOINT_URL_IOT_DATA_PLANE", "AWS_DEFAULT_REGION"):
            os.environ.pop(name, None)
    messages = {"count": 0}
    seed.client.meta.events.register(
        "before-call.iot-data.Publish", lambda **_: messages.__setitem__("count", messages["count"] + 1)
    )
    before = dict(stub.counts)
    durations = []
    try:
        for document in documents:
            started = time.perf_counter()
            seed.lambda_handler(_event(document), None)
            durations.append(time.perf_counter() - started)
    finally:
        os.environ.pop("SEED_STATUS_MESSAGE", None)
    return {
        "posts": len(documents),
        "opensearch_requests": stub.counts["unsigned"] - before["unsigned"],
        "opensearch_bytes": stub.counts["bytes"] - before["bytes"],
        "gb_seconds": _billed_gb_seconds(durations, SEED_MEMORY_GB),
        "iot_messages": messages["count"],
        "sns_emails": 0,
        "log_bytes": 0,  # the seed prints nothing; Lambda's own START/END/REPORT lines are left out of both
        "read_units": 0,
        "write_units": 0,
    }


def measure(region: str = "us-east-1") -> dict[str, dict[str, float]]:
    from bench.bench_cold import CREDENTIALS, SigV4Stub
    from gasmon_local.aws import MotoServer

    saved = {k: os.environ.get(k) for k in (*CREDENTIALS, "POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_METRICS_NAMESPACE")}
    os.environ.update(CREDENTIALS | {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "gasmon"})
    moto = MotoServer(port=0)
    moto_url = moto.start()
    documents = _documents(datetime.now(UTC) - timedelta(minutes=MINUTES + 1))
    try:
        with SigV4Stub(CREDENTIALS, region=region) as stub:
            result = {"gasmon": _gasmon(documents, stub, moto_url, region), "seed": _seed(documents, stub, moto_url)}
            if stub.counts["refused"]:
                raise RuntimeError(f"the OpenSearch stub refused requests: {stub.counts}")
    finally:
        moto.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    readings = len(documents) * len(GASES)
    for counts in result.values():
        counts["readings"] = readings
    return result


def per_thousand(counts: dict[str, float]) -> dict[str, float]:
    """Each service's count per 1,000 readings."""
    scale = 1000 / counts["readings"]
    return {
        "API Gateway requests": counts["posts"] * scale,
        "Lambda invocations": counts["posts"] * scale,
        "Lambda GB-seconds": counts["gb_seconds"] * scale,
        "OpenSearch requests": counts["opensearch_requests"] * scale,
        "DynamoDB read units": counts["read_units"] * scale,
        "DynamoDB write units": counts["write_units"] * scale,
        "IoT messages": counts["iot_messages"] * scale,
        "SNS emails": counts["sns_emails"] * scale,
        "CloudWatch Logs KB": counts["log_bytes"] / 1024 * scale,
    }


def monthly(counts: dict[str, float], devices: int, prices: dict[str, Any], arm64: bool = True) -> dict[str, float]:
    """A month's bill in USD by service for `devices` Pis at one document per 5 s."""
    p = {name: entry["usd"] for name, entry in prices["prices"].items()}
    posts = devices * MONTH_SECONDS / INTERVAL
    per_post = {k: v / counts["posts"] for k, v in counts.items()}
    hours = MONTH_SECONDS / 3600
    # Default X-Ray sampling with Tracing: Active: the first request each second, then 5%.
    post_rate = posts / MONTH_SECONDS
    traces = (min(post_rate, 1) + 0.05 * max(post_rate - 1, 0)) * MONTH_SECONDS
    stored_gb = per_post["opensearch_bytes"] * posts / 1e9  # one month of documents, before replicas/overhead
    gb_second = p["lambda_arm64_gb_second"] if arm64 else p["lambda_x86_gb_second"]
    return {
        "API Gateway": posts * p["api_gateway_rest_request"],
        "Lambda": posts * p["lambda_request"] + posts * per_post["gb_seconds"] * gb_second,
        "OpenSearch (1 x t3.small.search + a month of documents on gp3)": hours * p["opensearch_t3_small_hour"]
        + max(stored_gb, 10) * p["opensearch_gp3_gb_month"],
        "DynamoDB": posts * (per_post["read_units"] * p["dynamodb_read_request_unit"])
        + posts * (per_post["write_units"] * p["dynamodb_write_request_unit"]),
        "IoT Core (messages + each Pi connected all month)": posts * per_post["iot_messages"] * p["iot_message"]
        + devices * MONTH_SECONDS / 60 * p["iot_connection_minute"],
        "SNS": posts * per_post["sns_emails"] * p["sns_email"],
        "CloudWatch Logs": posts * per_post["log_bytes"] / 1e9 * p["cloudwatch_logs_ingest_gb"],
        "X-Ray": traces * p["xray_trace_recorded"] if counts.get("traced", 1) else 0.0,
    }


def run() -> list[dict[str, Any]]:
    counts = measure()
    prices = json.loads(PRICES.read_text())
    gasmon, seed = per_thousand(counts["gasmon"]), per_thousand(counts["seed"])
    counts["seed"]["traced"] = 0  # the seed's function has no tracing
    rows = [
        {
            "metric": f"cost: {service} per 1,000 readings (counted, {DEVICES} Pis x {MINUTES} min)",
            "value": gasmon[service],
            "unit": "",
            "baseline": seed[service],
            "baseline_label": "seed 003 design, same documents",
            "target": "report",
        }
        for service in gasmon
    ]
    for devices in (100, 10_000):
        ours = monthly(counts["gasmon"], devices, prices)
        theirs = monthly(counts["seed"], devices, prices, arm64=False)
        rows.append(
            {
                "metric": f"cost: a month for {devices:,} Pis at one document per 5 s ({prices['region']} list prices, "
                "bench/prices.json); gasmon: " + ", ".join(f"{k} {v:,.2f}" for k, v in ours.items()),
                "value": sum(ours.values()),
                "unit": "USD",
                "baseline": sum(theirs.values()),
                "baseline_label": "seed 003 design (x86_64, 128 MB, no tracing, no alarm table)",
                "target": "report",
            }
        )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory():
        for row in run():
            print(f"{row['metric']}: {row['value']:.4g} vs {row['baseline']:.4g} {row['unit']}")
