"""The baseline: an ingest Lambda written the way the seed's `gasdetector_api_py` is.

A boto3 client created at import, and one store request per reading (the seed POSTs each
document to OpenSearch; here each reading is one committed SQLite insert, so both sides use the
same store). Used only by the benchmarks.
"""

import json
import sqlite3
import sys

import boto3

client = boto3.client("iot-data", region_name="ap-northeast-2", endpoint_url="http://127.0.0.1:9")
DB_PATH = sys.argv[1] if len(sys.argv) > 1 and __name__ == "__main__" else ":memory:"
conn = sqlite3.connect(DB_PATH, isolation_level=None)
conn.execute("CREATE TABLE IF NOT EXISTS readings (id TEXT PRIMARY KEY, doc TEXT)")
requests_made = 0


def lambda_handler(event, context):  # type: ignore[no-untyped-def]
    global requests_made
    documents = json.loads(event["body"])
    documents = documents if isinstance(documents, list) else [documents]
    for document in documents:
        for gas in ("co", "no2", "c2h5oh", "h2"):
            if gas in document:
                value = float(document[gas]["value"])
                key = f"{document['groupid']}|{document[gas]['sensorid']}|{gas}|{document[gas]['createdtime']}"
                conn.execute("INSERT OR IGNORE INTO readings VALUES (?, ?)", (key, json.dumps(document[gas])))
                requests_made += 1
                if gas == "no2" and value >= 88:
                    pass  # the seed publishes here; the benchmarks post no over-threshold readings
    return {"statusCode": 200, "body": json.dumps({"msg": "success"})}


if __name__ == "__main__":
    event = json.loads(sys.stdin.read())
    print(lambda_handler(event, None)["statusCode"])
