"""`gasmon-local` end to end: started as a user starts it, driven over HTTP and MQTT as a Pi drives it.

Every scenario runs against gasmon's own template.yaml with its real functions (lifecycle rule ->
RecordPresenceFunction -> SQS delay queue -> CheckPresenceFunction -> SNS -> e-mail; Last Will
-> rule -> shadow). A scenario whose resources the template lacks fails and says which: that is a
regression of the template, not something to skip.
"""

import gzip
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import paho.mqtt.client as mqtt
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion

from gasmon_local.functions import ROOT
from gasmon_local.process import StackProcess
from gasmon_local.rules import load_rules
from gasmon_local.stack import Options, local_parameter_overrides
from gasmon_local.template import Stack, load
from tests.e2e.conftest import WAIT, device, drop, mails_naming, provision, wait_for_mail

pytestmark = pytest.mark.e2e

GRACE = 2
AUTHORIZER_CACHE = 1
TEMPLATES = {"gasmon": ROOT / "template.yaml"}
WILL = {"state": {"reported": {"connected": "false"}}}


@dataclass(frozen=True)
class Wiring:
    """Which scenarios a template can run."""

    ingest: bool
    presence: bool
    last_will: bool


def wiring(template: Path) -> Wiring:
    raw = load(template)
    overrides, _ = local_parameter_overrides(raw, Options(grace=GRACE))
    stack = Stack(raw, parameter_overrides=overrides, base_dir=template.parent)
    routes = {(r.method, r.path) for spec in stack.functions().values() for r in spec.api_routes}
    rules = load_rules(stack.topic_rules())
    lifecycle_rule = any(rule.query.matches("$aws/events/presence/disconnected/x") for rule in rules)
    email = any(s.protocol == "email" for s in stack.subscriptions())
    last_will = any(
        rule.query.matches("my/things/x/update")
        and any("/shadow/update" in str(action.get("Republish", {}).get("Topic", "")) for action in rule.actions)
        for rule in rules
    )
    return Wiring(ingest=("POST", "/gasdetector") in routes, presence=lifecycle_rule and email, last_will=last_will)


@dataclass
class Running:
    name: str
    process: StackProcess
    wiring: Wiring

    @property
    def endpoints(self) -> dict[str, Any]:
        return self.process.endpoints

    def require(self, feature: str) -> None:
        if not getattr(self.wiring, feature):
            reasons = {
                "ingest": "has no POST /gasdetector route",
                "presence": "has no presence resources (a rule on $aws/events/presence and an SNS email subscription)",
                "last_will": "has no rule republishing my/things/+/update into the thing shadow",
            }
            pytest.fail(f"{self.name} template {reasons[feature]}")


@pytest.fixture(scope="module", params=sorted(TEMPLATES))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    template = TEMPLATES[request.param]
    data_dir = tmp_path_factory.mktemp(request.param)
    # A one-second authorizer cache, so that a revoked key stops working within the test.
    arguments = ["--template", str(template), "--no-devices", "--grace", str(GRACE)]
    arguments += ["--parameter", f"AuthorizerCacheSeconds={AUTHORIZER_CACHE}"]
    with StackProcess(data_dir, *arguments) as process:
        yield Running(request.param, process, wiring(template))


class Subscriber:
    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[Any] = []
        self.arrived = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-sub-{uuid.uuid4().hex[:6]}")
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(WAIT)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.messages.append(json.loads(message.payload))
            self.arrived.notify_all()

    def wait_for(self, check: Any) -> Any:
        deadline = time.monotonic() + WAIT
        with self.arrived:
            while not any(check(m) for m in self.messages):
                assert self.arrived.wait(max(0.0, deadline - time.monotonic())), f"nothing matched: {self.messages}"
            return next(m for m in self.messages if check(m))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def seed_document(groupid: str, no2: str) -> dict[str, Any]:
    """What the seed's pub.py POSTs, stamped now in Korean wall time."""
    now = datetime.now(ZoneInfo("Asia/Seoul")).strftime("%Y-%m-%d %H:%M:%S")
    gases = {
        "co": ("0005", "8", "26.20"),
        "no2": ("0006", "9", no2),
        "c2h5oh": ("0007", "27", "26.11"),
        "h2": ("0008", "30", "400"),
    }
    document: dict[str, Any] = {"groupid": groupid, "gps": "37.61002501514269, 126.99636868892937"}
    for gas, (sensorid, sensortype, value) in gases.items():
        document[gas] = {"sensorid": sensorid, "sensortype": sensortype, "value": value, "createdtime": now}
    return document


def test_a_seed_post_warns_on_pi_1_and_is_stored(stack: Running) -> None:
    stack.require("ingest")
    host, port = stack.process.mqtt_address()
    subscriber = Subscriber(host, port, "pi/1")
    groupid = f"e2e-{uuid.uuid4().hex[:8]}"
    key = provision(stack.process, f"pi-{groupid}", groupid)["api_key"]
    url = stack.endpoints["api"] + "/gasdetector"
    try:
        # Given no API key, Then API Gateway's answer (the authorizer's identity source is missing)
        assert requests.post(url, json=seed_document(groupid, "95.00"), timeout=WAIT).status_code == 401
        # When a Pi posts a reading with NO2 over 88 with its own key, as the seed's pub.py does
        answer = requests.post(url, json=seed_document(groupid, "95.00"), headers={"x-api-key": key}, timeout=WAIT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 4
        # Then the seed's warning arrives on pi/1
        warning = subscriber.wait_for(lambda m: m.get("groupid") == groupid)
        assert warning["warning"] == "no2 warning" and warning["value"] == 95.0
    finally:
        subscriber.close()
    # And the reading is in the store
    with sqlite3.connect(stack.endpoints["sqlite_path"]) as db:
        rows = dict(db.execute("SELECT gas, value FROM readings WHERE groupid = ?", (groupid,)).fetchall())
    assert rows == {"co": 26.2, "no2": 95.0, "c2h5oh": 26.11, "h2": 400.0}


def test_a_dropped_connection_is_mailed_once_after_the_grace_period(stack: Running) -> None:
    stack.require("presence")
    client_id = f"e2e-drop-{uuid.uuid4().hex[:6]}"
    client = device(stack.process, client_id)
    time.sleep(0.5)  # connected for a moment, as a real device would be
    # When the device's TCP connection drops without a DISCONNECT
    dropped_at = time.monotonic()
    drop(client)
    # Then one e-mail names it, not before the grace period
    mails = wait_for_mail(stack.process, client_id, GRACE + WAIT)
    assert len(mails) == 1, stack.process.log_tail()
    assert time.monotonic() - dropped_at >= GRACE
    time.sleep(GRACE + 1)
    assert len(mails_naming(stack.process, client_id)) == 1


def test_a_clean_disconnect_is_not_mailed(stack: Running) -> None:
    stack.require("presence")
    client_id = f"e2e-clean-{uuid.uuid4().hex[:6]}"
    client = device(stack.process, client_id)
    time.sleep(0.5)
    # When the device says goodbye (MQTT DISCONNECT, as on Ctrl-C)
    client.disconnect()
    client.loop_stop()
    # Then no e-mail follows, even well after the grace period
    time.sleep(GRACE + 3)
    assert mails_naming(stack.process, client_id) == []


def test_a_last_will_marks_the_shadow_disconnected(stack: Running) -> None:
    stack.require("last_will")
    thing = f"e2e-lwt-{uuid.uuid4().hex[:6]}"
    # Given a device with the seed's Last Will, When it drops off
    drop(device(stack.process, thing, will=WILL))
    # Then its shadow reports connected=false, read through iot-data as an operator would
    iot = boto3.client(
        "iot-data",
        endpoint_url=stack.endpoints["iot_data"],
        region_name="ap-northeast-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    deadline = time.monotonic() + WAIT
    while True:
        try:
            shadow = json.loads(iot.get_thing_shadow(thingName=thing)["payload"].read())
            break
        except iot.exceptions.ResourceNotFoundException:
            assert time.monotonic() < deadline, stack.process.log_tail()
            time.sleep(0.1)
    assert shadow["state"]["reported"]["connected"] == "false"


def test_data_and_the_api_key_survive_a_restart(tmp_path: Path) -> None:
    # Given a stack that stored a reading posted with its device key (sim-pi-01, group 1)
    document = seed_document("1", "20.00")
    with StackProcess(tmp_path, "--no-devices") as first:
        key = first.endpoints["api_key"]
        headers = {"x-api-key": key}
        answer = requests.post(first.endpoints["api"] + "/readings", json=document, headers=headers, timeout=WAIT)
        assert answer.json()["accepted"] == 4
    # Then Ctrl-C stopped it cleanly
    assert first.process is not None and first.process.returncode == 0, first.log_tail()
    # When it starts again on the same data directory
    with StackProcess(tmp_path, "--no-devices") as second:
        # Then the key is the same and the reading is still there (posting it again is a duplicate)
        assert second.endpoints["api_key"] == key
        again = requests.post(second.endpoints["api"] + "/readings", json=document, headers=headers, timeout=WAIT)
        assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 4)


def test_readings_past_retention_leave_the_query_api_and_stay_in_the_archive(stack: Running, tmp_path: Path) -> None:
    stack.require("ingest")
    endpoints = stack.endpoints
    groupid = f"old-{uuid.uuid4().hex[:8]}"
    device = {"x-api-key": provision(stack.process, f"pi-{groupid}", groupid)["api_key"]}
    headers = {"x-api-key": endpoints["viewer_key"]}
    # Given a reading taken two days ago, below every threshold
    taken = datetime.now(ZoneInfo("UTC")) - timedelta(days=2)
    document = {"groupid": groupid, "co": {"sensorid": "0005", "sensortype": "8", "value": "3.25",
                "createdtime": taken.strftime("%Y-%m-%dT%H:%M:%SZ")}}  # fmt: skip
    answer = requests.post(endpoints["api"] + "/readings", json=document, headers=device, timeout=WAIT)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    (reading_id,) = [r["id"] for r in answer.json()["results"][0]["readings"]]

    def series() -> requests.Response:
        params = {"gas": "co", "groupid": groupid, "start": (taken - timedelta(hours=1)).isoformat(), "interval": "1d"}
        return requests.get(endpoints["api"] + "/series", params=params, headers=headers, timeout=WAIT)

    before = series()
    assert before.status_code == 200 and sum(p["count"] for p in before.json()["points"]) == 1, before.text
    # Then it is in the archive bucket named in endpoints.json, under today's partition, gzip
    s3 = boto3.client("s3", endpoint_url=endpoints["aws"], region_name=endpoints["region"],
                      aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip

    def archived() -> set[str]:
        ids = set()
        for item in s3.list_objects_v2(Bucket=endpoints["archive_bucket"], Prefix="readings/dt=").get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=endpoints["archive_bucket"], Key=item["Key"])["Body"].read())
            ids |= {json.loads(line)["reading_id"] for line in body.splitlines()}
        return ids

    deadline = time.monotonic() + WAIT  # Firehose buffers (about a second locally)
    while reading_id not in archived() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reading_id in archived()
    # When the retention sweep runs with RetentionDays=1 (make invoke, as the hourly schedule would)
    env = tmp_path / "env.json"
    variables = {"READING_STORE": "sqlite", "SQLITE_PATH": endpoints["sqlite_path"], "RETENTION_DAYS": "1"}
    env.write_text(json.dumps({"Parameters": variables | {"POWERTOOLS_TRACE_DISABLED": "true"}}))
    event = str(ROOT / "events" / "sweep_scheduled.json")
    command = [sys.executable, "-m", "gasmon_local.invoke", "SweepReadingsFunction", event, "--env-vars", str(env)]
    command += ["--data-dir", str(stack.process.data_dir)]
    swept = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert swept.returncode == 0, swept.stderr[-2000:]
    assert json.loads(swept.stdout)["deleted"] >= 1
    # Then the query API no longer has it (a 422 if the range is past the API's retention), the archive does
    after = series()
    assert after.status_code in (200, 422), after.text
    if after.status_code == 200:
        assert sum(p["count"] for p in after.json()["points"]) == 0
    assert reading_id in archived()


# ---- device identity: the "done when", against the running stack ----


def test_a_provisioned_pi_posts_its_own_group_only_and_a_revoked_key_stops(stack: Running) -> None:
    # Given `gasmon-admin --local provision pi-x --group 5 --out DIR`
    thing = f"pi-x-{uuid.uuid4().hex[:6]}"
    done = provision(stack.process, thing, "5")
    assert set(done) == {"thing", "group", "api_key", "config_dir", "certificate_id"}
    assert (Path(done["config_dir"]) / "device.toml").exists()
    url, headers = stack.endpoints["api"] + "/gasdetector", {"x-api-key": done["api_key"]}
    # When the seed's document is posted with that key and groupid 5, Then 200
    answer = requests.post(url, json=seed_document("5", "20.00"), headers=headers, timeout=WAIT)
    assert answer.status_code == 200, answer.text
    # ... with groupid 6, Then 403 with a JSON body naming the field
    refused = requests.post(url, json=seed_document("6", "20.00"), headers=headers, timeout=WAIT)
    assert refused.status_code == 403
    assert [detail["path"] for detail in refused.json()["details"]] == ["groupid"]
    # ... and the device key cannot read the query API
    devices_url = stack.endpoints["api"] + "/devices"
    assert requests.get(devices_url, headers=headers, timeout=WAIT).status_code == 403
    # When the operator revokes it, Then within the authorizer's cache period the key gets 403
    command = [str(Path(sys.executable).with_name("gasmon-admin")), "--endpoints-file"]
    command += [str(stack.process.data_dir / "endpoints.json"), "revoke", thing]
    assert subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    time.sleep(AUTHORIZER_CACHE + 0.5)
    revoked = requests.post(url, json=seed_document("5", "21.00"), headers=headers, timeout=WAIT)
    assert revoked.status_code == 403


def test_the_viewer_key_reads_and_cannot_post(stack: Running) -> None:
    viewer = {"x-api-key": stack.endpoints["viewer_key"]}
    assert stack.endpoints["viewer_url"].endswith(f"/#key={stack.endpoints['viewer_key']}")
    assert requests.get(stack.endpoints["api"] + "/devices", headers=viewer, timeout=WAIT).status_code == 200
    answer = requests.post(stack.endpoints["api"] + "/readings", json=seed_document("1", "20.00"), headers=viewer)
    assert answer.status_code == 403
    # And the dashboard itself needs no key
    assert requests.get(stack.endpoints["viewer_url"], timeout=WAIT).status_code == 200


def test_the_seeds_rpi_is_shown_and_mailed_with_its_group_and_location(stack: Running) -> None:
    # Given the seed's Pi provisioned as thing RPI-<n> in group 2 at the seed's location
    thing, group = f"RPI-{uuid.uuid4().hex[:6]}", f"g{uuid.uuid4().hex[:6]}"
    key = provision(stack.process, thing, group, "37.61,126.99")["api_key"]
    # When it posts the seed's document (no deviceid) and connects over MQTT as its thing
    answer = requests.post(
        stack.endpoints["api"] + "/readings",
        json=seed_document(group, "20.00"),
        headers={"x-api-key": key},
        timeout=WAIT,
    )
    assert answer.status_code == 200, answer.text
    client = device(stack.process, thing)
    # Then the query API lists its readings under its thing, with its group
    viewer = {"x-api-key": stack.endpoints["viewer_key"]}
    listed = requests.get(stack.endpoints["api"] + f"/devices?groupid={group}", headers=viewer, timeout=WAIT).json()
    [entry] = listed["devices"]
    assert (entry["device"], entry["groupid"]) == (thing, group)
    # And when it drops off, the e-mail names its group and location from the registry
    time.sleep(0.5)
    drop(client)
    [mail] = wait_for_mail(stack.process, thing, GRACE + WAIT)
    text = mail.read_text()
    assert re.search(rf"Group:\s+{group}\b", text) and "37.61" in text, text
