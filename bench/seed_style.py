"""The warm-path baseline: an ingest handler shaped like the seed's `gasdetector_api_py`.

The same loop as seed 003 (`bench/seed003/app.py`): each document of the body stamped with the
time and sent to the store as one request, a warning check on NO2. Where seed 003 POSTs each
document to OpenSearch, this one commits each document as one INSERT into a SQLite file opened
the way gasmon's SQLite store opens its file (WAL, synchronous=NORMAL), so both sides of a bench
row pay for the same durable store. Like the seed, it validates nothing, keys nothing (a retried
POST is stored twice) and keeps nothing but the document. Used only by `bench/bench_ingest.py`.
"""

import json
import sqlite3
from datetime import datetime

conn: sqlite3.Connection | None = None
requests_made = 0


def open_store(path: str) -> None:
    """Open (or create) the baseline's store file; call once before `lambda_handler`."""
    global conn
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: one commit per request
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-32000")
    conn.execute("CREATE TABLE IF NOT EXISTS gasdetect (doc TEXT NOT NULL)")


def lambda_handler(event, context):  # type: ignore[no-untyped-def]
    global requests_made
    assert conn is not None, "open_store() first"
    documents = json.loads(event["body"])
    for data in documents if isinstance(documents, list) else [documents]:
        data["date"] = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        conn.execute("INSERT INTO gasdetect (doc) VALUES (?)", (json.dumps(data),))
        requests_made += 1
        if "no2" in data and float(data["no2"]["value"]) >= 88:
            pass  # the seed publishes a warning here; the benchmarks post no over-threshold reading
    return {"statusCode": 200, "body": json.dumps({"msg": "success"})}
