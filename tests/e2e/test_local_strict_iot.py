"""`gasmon-local --strict`: AWS IoT Core as strict as the real one, driven the way Pis and people drive it.

Only the TLS listener runs. Devices are provisioned in the stack's IoT registry (moto) with
certificates from the stack's local CA, the template's own IoT policies (created by the stack)
decide what they may do, and the clients are paho and the AWS IoT Device SDK, unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest

from gasmon_local import aws
from gasmon_local.local_ca import LocalCA
from gasmon_local.process import StackProcess
from tests.integration.test_local_iot_core_strict import SDK_DEVICE
from tests.iot_devices import DeviceFiles, TlsDevice, provision

WAIT = 20.0
WILL = {"state": {"reported": {"connected": "false"}}}
# Seed 004's policy (test/topic for test-* clients), plus the shared subscription filter AWS
# authorizes a `$share/g/test/topic` SUBSCRIBE against.
SEED_004_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": ["arn:aws:iot:*:*:topic/test/topic"]},
        {
            "Effect": "Allow",
            "Action": ["iot:Subscribe"],
            "Resource": ["arn:aws:iot:*:*:topicfilter/test/topic", "arn:aws:iot:*:*:topicfilter/$share/g/test/topic"],
        },
        {"Effect": "Allow", "Action": ["iot:Connect"], "Resource": ["arn:aws:iot:*:*:client/test-*"]},
    ],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with StackProcess(tmp_path_factory.mktemp("strict"), "--no-devices", "--strict") as running:
        yield running


def registry(stack: StackProcess) -> Any:
    return aws.client("iot", stack.endpoints["aws"], stack.endpoints["region"])


def provisioned(stack: StackProcess, thing: str, policy: str = "gasmon-device") -> DeviceFiles:
    """A Pi as an operator provisions it (`gasmon-admin provision`: the stack's device policy);
    other policies (a monitor console, seed 004's test client) through the same IoT calls."""
    ca = LocalCA(stack.data_dir)
    assert ca.ca_file == Path(stack.endpoints["ca_file"])
    if policy != "gasmon-device":
        return provision(registry(stack), ca, thing, stack.data_dir / "devices", policy)
    out = stack.data_dir / "devices" / thing
    command = [str(Path(sys.executable).with_name("gasmon-admin")), "--endpoints-file"]
    command += [str(stack.data_dir / "endpoints.json"), "provision", thing, "--group", "5", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    described = registry(stack).describe_certificate(certificateId=answer["certificate_id"])["certificateDescription"]
    return DeviceFiles(
        thing=thing,
        certificate_id=answer["certificate_id"],
        certificate_arn=described["certificateArn"],
        cert=out / "certificate.pem.crt",
        key=out / "private.pem.key",
        ca=out / "root-CA.pem",
    )


class Monitor:
    """A console watching lifecycle events over TLS with the template's presence-monitor policy."""

    def __init__(self, stack: StackProcess) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Condition()
        files = provisioned(stack, "gasmon-monitor-e2e", "gasmon-presence-monitor")
        self.device = TlsDevice(files, stack.mqtts_address()[1])
        self.device.client.on_message = self._on_message
        assert self.device.connect() == 0
        assert self.device.subscribe("$aws/events/presence/#") == [1]

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.events.append(json.loads(message.payload))
            self.lock.notify_all()

    def wait(self, event_type: str, client_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        with self.lock:
            while True:
                for event in self.events:
                    if event.get("eventType") == event_type and event.get("clientId") == client_id:
                        return event
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {event_type} event for {client_id}: {self.events}"
                self.lock.wait(remaining)


@pytest.fixture(scope="module")
def monitor(stack: StackProcess) -> Iterator[Monitor]:
    watching = Monitor(stack)
    yield watching
    watching.device.close()


def test_strict_runs_only_the_tls_listener(stack: StackProcess) -> None:
    assert "mqtt" not in stack.endpoints
    assert str(stack.endpoints["mqtts"]).startswith("mqtts://127.0.0.1:")
    log = stack.log_path.read_text()
    assert "UNAUTHENTICATED" not in log and "NOT WIRED" not in log


def test_a_provisioned_pi_lives_as_in_aws(stack: StackProcess, monitor: Monitor) -> None:
    port = stack.mqtts_address()[1]
    pi, other = provisioned(stack, "pi-e2e-1"), provisioned(stack, "pi-e2e-2")
    # Given the Pi connects with the AWS IoT Device SDK's builder, unchanged, with seed 001's Last Will
    arguments = [str(port), str(pi.cert), str(pi.key), str(pi.ca), pi.thing]
    sdk = subprocess.Popen(
        [sys.executable, "-c", SDK_DEVICE, *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert sdk.stdout is not None
        assert sdk.stdout.readline().strip() == "CONNECTED"
        assert monitor.wait("connected", pi.thing)["principalIdentifier"] == pi.certificate_id
        # When another Pi's certificate connects with this Pi's thing name as client id, Then it is refused
        assert TlsDevice(other, port, client_id=pi.thing).connect() == "Not authorized"
        assert monitor.wait("connect_failed", pi.thing)["principalIdentifier"] == other.certificate_id
        # When the other Pi publishes to this Pi's shadow, Then it is disconnected (AUTH_ERROR)
        intruder = TlsDevice(other, port)
        assert intruder.connect() == 0
        intruder.client.publish(f"$aws/things/{pi.thing}/shadow/update", json.dumps({"state": {}}), qos=1)
        assert intruder.disconnected.wait(WAIT)
        assert monitor.wait("disconnected", other.thing)["disconnectReason"] == "AUTH_ERROR"
        intruder.client.loop_stop()
    finally:
        sdk.kill()  # the Pi loses power: no DISCONNECT
        sdk.wait(WAIT)
    # Then its Last Will reaches its shadow through the template's rule
    assert monitor.wait("disconnected", pi.thing)["disconnectReason"] == "CONNECTION_LOST"
    shadows = boto3.client(
        "iot-data",
        endpoint_url=stack.endpoints["iot_data"],
        region_name=stack.endpoints["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    deadline = time.monotonic() + WAIT
    while True:
        try:
            shadow = json.loads(shadows.get_thing_shadow(thingName=pi.thing)["payload"].read())
            break
        except shadows.exceptions.ResourceNotFoundException:
            assert time.monotonic() < deadline, "the Last Will never reached the shadow"
            time.sleep(0.2)
    assert shadow["state"]["reported"] == WILL["state"]["reported"]


def test_two_shared_subscribers_split_ten_messages(stack: StackProcess) -> None:
    registry(stack).create_policy(policyName="seed-004", policyDocument=json.dumps(SEED_004_POLICY))
    port = stack.mqtts_address()[1]
    received: list[list[bytes]] = [[], []]
    subscribers = []
    for index in range(2):
        files = provisioned(stack, f"test-{index}", "seed-004")
        device = TlsDevice(files, port)
        device.client.on_message = lambda c, u, m, index=index: received[index].append(m.payload)
        assert device.connect() == 0
        assert device.subscribe("$share/g/test/topic") == [1]
        subscribers.append(device)
    publisher = TlsDevice(provisioned(stack, "test-publisher", "seed-004"), port)
    assert publisher.connect() == 0
    for i in range(10):
        publisher.client.publish("test/topic", f"m{i}".encode(), qos=1).wait_for_publish(WAIT)
    deadline = time.monotonic() + WAIT
    while sum(map(len, received)) < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # a duplicate would arrive now
    assert sorted(received[0] + received[1]) == sorted(f"m{i}".encode() for i in range(10))
    assert received[0] and received[1]
    for device in [*subscribers, publisher]:
        device.close()
