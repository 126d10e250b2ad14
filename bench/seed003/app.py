"""The cold-start baseline: the seed's `gasdetector_api_py` Lambda as seed 003 shows it.

A boto3 `iot-data` client created at import; each document of the POST body stamped with the
time and sent to OpenSearch with `requests.post` (unsigned, as the seed does); a `pi/1` warning
when NO2 is at 88 or over. The seed also publishes a success message on every request: the cold
start leaves it out (the cheaper reading of the seed; the bench posts no reading over a level,
so neither side publishes there), the cost bench sets SEED_STATUS_MESSAGE=1 to count it. Run by
`bench/bench_cold.py` in a virtualenv of its own with only boto3 and requests, and in-process by
`bench/bench_cost.py`; it is not part of gasmon.
"""

import json
import os
from datetime import datetime

import boto3
import requests

client = boto3.client("iot-data")
url = os.environ["OPENSEARCH_ENDPOINT"] + "/gasdetect/_doc"


def lambda_handler(event, context):  # type: ignore[no-untyped-def]
    documents = json.loads(event["body"])
    for data in documents if isinstance(documents, list) else [documents]:
        data["date"] = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        headers = {"Content-type": "application/json"}
        requests.post(url, data=json.dumps(data), headers=headers, timeout=10).json()
        if "no2" in data and float(data["no2"]["value"]) >= 88:
            client.publish(topic="pi/1", qos=1, payload=json.dumps({"warning": "no2 warning"}))
    if os.environ.get("SEED_STATUS_MESSAGE") == "1":
        client.publish(topic="pi/1", qos=1, payload=json.dumps({"msg": "success"}))
    return {"statusCode": 200, "body": json.dumps({"msg": "success"})}
