"""The local AWS IoT Core as strict as the real one, over real sockets.

TLS listener with X.509 client certificates from the local CA, checked against moto's IoT registry
(moto's server, as `gasmon-local` runs it); the template's own IoT policies, created in moto as the
stack creates them; clients nobody here wrote (paho with `tls_set`, the AWS IoT Device SDK's
`mtls_from_path`), unchanged. Shared subscriptions on the plain listener.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gasmon_local import aws, iot_policy
from gasmon_local.broker import IotCore, TlsListener
from gasmon_local.iot_identity import MotoIotRegistry
from gasmon_local.lifecycle import VersionCounter
from gasmon_local.local_ca import LocalCA
from gasmon_local.rules import RuleEngine, load_rules
from gasmon_local.shadows import ShadowStore
from gasmon_local.template import ACCOUNT_ID, REGION, Stack, StackContext, TopicRuleSpec, load
from tests.integration.test_local_iot_core import WAIT, Subscriber, Targets, unique
from tests.iot_devices import DeviceFiles, TlsDevice, provision, revoke, tls_handshake_refused

ROOT = Path(__file__).resolve().parents[2]
WILL = {"state": {"reported": {"connected": "false"}}}


@dataclass
class Strict:
    core: IotCore
    iot: Any
    ca: LocalCA
    files: Path

    @property
    def plain_port(self) -> int:
        return self.core.port

    @property
    def tls_port(self) -> int:
        return self.core.tls_port

    def device(self, name: str | None = None) -> DeviceFiles:
        return provision(self.iot, self.ca, name or unique("pi"), self.files)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Strict]:
    data_dir = tmp_path_factory.mktemp("strict-iot")
    moto = aws.MotoServer("127.0.0.1", 0)
    endpoint = moto.start()
    iot = aws.client("iot", endpoint, REGION)
    stack = Stack(load(ROOT / "template.yaml"), StackContext(aws_endpoint=endpoint), {})
    for spec in stack.iot_policies():  # as the stack creates them (aws.create_resources)
        iot.create_policy(policyName=spec.name, policyDocument=json.dumps(spec.document))
    ca = LocalCA(data_dir)
    server = ca.issue_server_certificate()
    (data_dir / "broker.pem").write_text(server.certificate_pem)
    (data_dir / "broker.key").write_text(server.private_key_pem)
    tls = TlsListener(0, data_dir / "broker.pem", data_dir / "broker.key", ca.ensure())
    core = IotCore(
        ShadowStore(),
        VersionCounter(),
        port=0,
        tls=tls,
        registry=MotoIotRegistry(endpoint, REGION),
        arns=iot_policy.Arns(REGION, ACCOUNT_ID),
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(core.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(WAIT)
    core.rules = RuleEngine(
        load_rules(
            [
                TopicRuleSpec(
                    "LastWill",
                    "LastWill",
                    "SELECT * FROM 'my/things/+/update'",
                    "2016-03-23",
                    False,
                    ({"Republish": {"Topic": "$$aws/things/${topic(3)}/shadow/update", "Qos": 1}},),
                )
            ]
        ),
        Targets(core),
    )
    yield Strict(core, iot, ca, data_dir / "devices")
    asyncio.run_coroutine_threadsafe(core.stop(), loop).result(WAIT)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    moto.stop()


@pytest.fixture
def watcher(strict: Strict) -> Iterator[Subscriber]:
    subscriber = Subscriber(strict.plain_port, "$aws/events/presence/#", "$aws/things/+/shadow/#", "my/things/+/update")
    yield subscriber
    subscriber.close()


def event(watcher: Subscriber, kind: str, client_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = watcher.wait_for(lambda t, _: t == f"$aws/events/presence/{kind}/{client_id}")[1]
    return payload


def test_a_provisioned_device_connects_with_paho_tls_set_and_is_known_by_its_certificate(
    strict: Strict, watcher: Subscriber
) -> None:
    # Given a provisioned Pi, When paho connects with tls_set(ca, cert, key) as the thing
    files = strict.device()
    device = TlsDevice(files, strict.tls_port)
    assert device.connect() == 0
    # Then its connected event names the certificate id as principal, as AWS does
    assert event(watcher, "connected", files.thing)["principalIdentifier"] == files.certificate_id
    # And what its policy allows works: its own update topic, subscribing to its shadow and pi/1
    assert device.subscribe(f"$aws/things/{files.thing}/shadow/update/accepted") == [1]
    assert device.subscribe("pi/1") == [1]
    warnings: list[bytes] = []
    warned = threading.Event()
    device.client.on_message = lambda c, u, m: (warnings.append(m.payload), warned.set())
    strict.core.publish_threadsafe("pi/1", b'{"warning": "no2 warning"}', qos=1)  # as ingest's iot-data publish
    assert warned.wait(WAIT) and warnings == [b'{"warning": "no2 warning"}']
    device.client.publish(f"my/things/{files.thing}/update", json.dumps(WILL), qos=1)
    watcher.wait_for(lambda t, _: t == f"$aws/things/{files.thing}/shadow/update/accepted")
    device.close()
    assert event(watcher, "disconnected", files.thing)["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"


def test_a_client_id_that_is_not_its_thing_name_is_refused_at_connect(strict: Strict, watcher: Subscriber) -> None:
    # Given two provisioned Pis, When one connects with the other's client id
    mine, other = strict.device(), strict.device()
    impostor = TlsDevice(mine, strict.tls_port, client_id=other.thing)
    # Then CONNACK refuses it (not authorized) and AWS's connect_failed event names its certificate
    assert impostor.connect() == "Not authorized"
    failed = event(watcher, "connect_failed", other.thing)
    assert failed["failureType"] == "AUTHORIZATION_FAILED"
    assert failed["principalIdentifier"] == mine.certificate_id
    impostor.client.loop_stop()
    assert not any(t == f"$aws/events/presence/connected/{other.thing}" for t, _ in watcher.messages)


def test_publishing_to_another_things_shadow_disconnects_with_auth_error_and_sends_the_will(
    strict: Strict, watcher: Subscriber, caplog: pytest.LogCaptureFixture
) -> None:
    mine, other = strict.device(), strict.device()
    device = TlsDevice(mine, strict.tls_port, will=WILL)
    assert device.connect() == 0
    # When it publishes to the other thing's shadow
    device.client.publish(f"$aws/things/{other.thing}/shadow/update", json.dumps({"state": {}}), qos=1)
    # Then it is disconnected (MQTT 3.1.1 has no PUBACK error code), reason AUTH_ERROR
    assert device.disconnected.wait(WAIT)
    assert event(watcher, "disconnected", mine.thing)["disconnectReason"] == "AUTH_ERROR"
    # And its Last Will reaches its own shadow (AWS sends the LWT on AUTH_ERROR), the other's is untouched
    _, accepted = watcher.wait_for(lambda t, _: t == f"$aws/things/{mine.thing}/shadow/update/accepted")
    assert accepted["state"] == WILL["state"]
    assert not any(t.startswith(f"$aws/things/{other.thing}/") for t, _ in watcher.messages)
    device.client.loop_stop()
    # And the denial is one log line naming the client, the action, the resource and the policy
    denials = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("DENIED") and mine.thing in r.getMessage()
    ]
    assert len(denials) == 1, denials
    assert "iot:Publish" in denials[0] and f"topic/$aws/things/{other.thing}/shadow/update" in denials[0]
    assert "gasmon-device" in denials[0]


def test_subscribing_to_lifecycle_events_without_a_policy_for_them_gets_suback_0x80(strict: Strict) -> None:
    files = strict.device()
    device = TlsDevice(files, strict.tls_port)
    assert device.connect() == 0
    assert device.subscribe("$aws/events/#") == [0x80]
    assert device.subscribe(f"$aws/things/{unique('other')}/shadow/#") == [0x80]
    assert device.client.is_connected()  # a refused SUBSCRIBE does not disconnect
    device.close()


def test_the_monitor_policy_lets_a_monitor_watch_lifecycle_events(strict: Strict) -> None:
    # Given a certificate with the template's presence-monitor policy
    monitor = provision(strict.iot, strict.ca, "gasmon-monitor-1", strict.files, policy="gasmon-presence-monitor")
    client = TlsDevice(monitor, strict.tls_port)
    assert client.connect() == 0
    assert client.subscribe("$aws/events/presence/connected/+") == [1]
    received = threading.Event()
    client.client.on_message = lambda *args: received.set()
    device = TlsDevice(strict.device(), strict.tls_port)
    assert device.connect() == 0
    assert received.wait(WAIT)
    device.close()
    client.close()


def test_a_revoked_certificate_is_refused(strict: Strict, watcher: Subscriber) -> None:
    files = strict.device()
    revoke(strict.iot, files)
    assert TlsDevice(files, strict.tls_port).connect() == "Not authorized"
    assert event(watcher, "connect_failed", files.thing)["principalIdentifier"] == files.certificate_id


def test_a_certificate_from_another_ca_or_none_is_refused_at_the_tls_handshake(strict: Strict, tmp_path: Path) -> None:
    files = strict.device()
    stranger = LocalCA(tmp_path / "elsewhere").issue_device_certificate(files.thing)
    (tmp_path / "s.pem").write_text(stranger.certificate_pem)
    (tmp_path / "s.key").write_text(stranger.private_key_pem)
    assert tls_handshake_refused(files, strict.tls_port, tmp_path / "s.pem", tmp_path / "s.key")
    assert tls_handshake_refused(files, strict.tls_port, None, None)
    assert not tls_handshake_refused(files, strict.tls_port, files.cert, files.key)


def test_an_unregistered_certificate_from_the_local_ca_is_refused_at_connect(strict: Strict, tmp_path: Path) -> None:
    files = strict.device()
    unregistered = strict.ca.issue_device_certificate(files.thing)
    (tmp_path / "u.pem").write_text(unregistered.certificate_pem)
    (tmp_path / "u.key").write_text(unregistered.private_key_pem)
    loose = DeviceFiles(files.thing, unregistered.certificate_id, "", tmp_path / "u.pem", tmp_path / "u.key", files.ca)
    assert TlsDevice(loose, strict.tls_port).connect() == "Not authorized"


SDK_DEVICE = textwrap.dedent(
    """
    import json, sys, time
    from awscrt import mqtt
    from awsiot import mqtt_connection_builder

    port, cert, key, ca, thing = sys.argv[1:6]
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint="127.0.0.1",
        port=int(port),
        cert_filepath=cert,
        pri_key_filepath=key,
        ca_filepath=ca,
        client_id=thing,
        clean_session=False,
        keep_alive_secs=30,
        will=mqtt.Will(
            topic="my/things/" + thing + "/update",
            qos=mqtt.QoS.AT_LEAST_ONCE,
            payload=json.dumps({"state": {"reported": {"connected": "false"}}}).encode(),
            retain=False,
        ),
    )
    try:
        connection.connect().result(15)
    except Exception as exc:
        print("REFUSED", type(exc).__name__, exc, flush=True)
        sys.exit(3)
    print("CONNECTED", flush=True)
    time.sleep(60)  # until the test kills it, as a Pi losing power
    """
)


def sdk_device(strict: Strict, files: DeviceFiles, client_id: str | None = None) -> subprocess.Popen[str]:
    arguments = [str(strict.tls_port), str(files.cert), str(files.key), str(files.ca), client_id or files.thing]
    return subprocess.Popen(
        [sys.executable, "-c", SDK_DEVICE, *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_the_aws_iot_device_sdk_builder_connects_unchanged_and_its_last_will_reaches_the_shadow(
    strict: Strict, watcher: Subscriber
) -> None:
    # Given a provisioned Pi running seed 001's mtls_from_path with its Last Will
    files = strict.device()
    process = sdk_device(strict, files)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "CONNECTED"
        assert event(watcher, "connected", files.thing)["principalIdentifier"] == files.certificate_id
    finally:
        process.kill()  # the socket closes with no DISCONNECT
        process.wait(WAIT)
    # Then the connection is lost, the will is sent and the rule republishes it to the shadow
    assert event(watcher, "disconnected", files.thing)["disconnectReason"] == "CONNECTION_LOST"
    _, accepted = watcher.wait_for(lambda t, _: t == f"$aws/things/{files.thing}/shadow/update/accepted")
    assert accepted["state"] == WILL["state"]


def test_the_aws_iot_device_sdk_is_refused_with_another_things_client_id(strict: Strict, watcher: Subscriber) -> None:
    mine, other = strict.device(), strict.device()
    process = sdk_device(strict, mine, client_id=other.thing)
    output, _ = process.communicate(timeout=30)
    # The SDK's connect fails (aws-c-mqtt turns CONNACK 0x05 into AWS_ERROR_MQTT_PROTOCOL_ERROR)
    assert process.returncode == 3, output
    assert output.startswith("REFUSED"), output
    assert event(watcher, "connect_failed", other.thing)["principalIdentifier"] == mine.certificate_id


# ---- shared subscriptions (plain listener: no policies involved) ----


class Counter:
    def __init__(self, port: int, topic: str, name: str) -> None:
        self.payloads: list[bytes] = []
        self.retained: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique(name))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, 1)
        assert self.subscribed.wait(WAIT)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        (self.retained if message.retain else self.payloads).append(message.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_shared_subscriptions_split_messages_within_a_group_and_every_group_gets_all(strict: Strict) -> None:
    topic = f"test/{uuid.uuid4().hex[:8]}"
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("publisher"))
    publisher.connect("127.0.0.1", strict.plain_port)
    publisher.loop_start()
    # Given a retained message on the topic before anyone subscribes
    publisher.publish(topic, b"retained", qos=1, retain=True).wait_for_publish(WAIT)
    # And two groups of two shared subscribers, and one plain subscriber
    g = [Counter(strict.plain_port, f"$share/g/{topic}", "g") for _ in range(2)]
    h = [Counter(strict.plain_port, f"$share/h/{topic}", "h") for _ in range(2)]
    plain = Counter(strict.plain_port, topic, "plain")
    # When ten messages are published at QoS 1
    sent = [f"m{i}".encode() for i in range(10)]
    for payload in sent:
        publisher.publish(topic, payload, qos=1).wait_for_publish(WAIT)
    everyone = [*g, *h, plain]
    deadline = threading.Event()
    for _ in range(int(WAIT * 10)):
        if sum(len(c.payloads) for c in everyone) >= 30:
            break
        deadline.wait(0.1)
    # Then each group gets each message exactly once, split between its members; the plain one gets all
    for group in (g, h):
        assert sorted(p for c in group for p in c.payloads) == sorted(sent)
        assert all(len(c.payloads) == 5 for c in group)  # round robin
    assert plain.payloads == sent
    # And the retained message went to the plain subscriber only
    assert plain.retained == [b"retained"]
    assert all(not c.retained for c in [*g, *h])
    publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(WAIT)  # clear it
    for counter in everyone:
        counter.close()
    publisher.disconnect()
    publisher.loop_stop()


def test_an_unsubscribed_or_gone_member_gets_nothing_more(strict: Strict) -> None:
    topic = f"test/{uuid.uuid4().hex[:8]}"
    first, second = (Counter(strict.plain_port, f"$share/solo/{topic}", "m") for _ in range(2))
    second.close()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("publisher"))
    publisher.connect("127.0.0.1", strict.plain_port)
    publisher.loop_start()
    for i in range(4):
        publisher.publish(topic, f"{i}".encode(), qos=1).wait_for_publish(WAIT)
    waiter = threading.Event()
    for _ in range(int(WAIT * 10)):
        if len(first.payloads) >= 4:
            break
        waiter.wait(0.1)
    assert first.payloads == [b"0", b"1", b"2", b"3"]
    assert second.payloads == []
    first.close()
    publisher.disconnect()
    publisher.loop_stop()


def test_mqtt_5_is_refused_with_a_connack_and_a_log_line(strict: Strict, caplog: pytest.LogCaptureFixture) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("v5"), protocol=MQTTProtocolVersion.MQTTv5)
    answered = threading.Event()
    codes: list[Any] = []

    def on_connect(*args: Any) -> None:
        codes.append(args[3])
        answered.set()

    client.on_connect = on_connect
    client.reconnect_delay_set(60, 60)
    client.connect("127.0.0.1", strict.plain_port)
    client.loop_start()
    assert answered.wait(WAIT)
    client.loop_stop()
    assert codes[0] != 0  # "Unsupported protocol version" (MQTT 3.1.1's CONNACK 0x01)
    assert any("MQTT 5 is not supported" in r.getMessage() for r in caplog.records)


def test_receive_is_checked_for_retained_and_live_messages(strict: Strict) -> None:
    # Given a policy that lets a client subscribe to r/# but receive only r/open
    prefix = uuid.uuid4().hex[:6]
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT_ID}"
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/${{iot:ClientId}}"},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/{prefix}/#"},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{arn}:topic/{prefix}/open"},
        ],
    }
    strict.iot.create_policy(policyName=f"receive-{prefix}", policyDocument=json.dumps(document))
    files = provision(strict.iot, strict.ca, unique("reader"), strict.files, policy=f"receive-{prefix}")
    # And retained messages on both topics, published on the plain listener
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("retainer"))
    publisher.connect("127.0.0.1", strict.plain_port)
    publisher.loop_start()
    for topic in (f"{prefix}/open", f"{prefix}/secret"):
        publisher.publish(topic, b"retained", qos=1, retain=True).wait_for_publish(WAIT)
    reader = TlsDevice(files, strict.tls_port)
    got: list[tuple[str, bool]] = []
    arrived = threading.Condition()

    def on_message(client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with arrived:
            got.append((message.topic, bool(message.retain)))
            arrived.notify_all()

    reader.client.on_message = on_message
    assert reader.connect() == 0
    # When it subscribes to r/# and live messages follow on both topics
    assert reader.subscribe(f"{prefix}/#") == [1]
    for topic in (f"{prefix}/secret", f"{prefix}/open"):
        publisher.publish(topic, b"live", qos=1).wait_for_publish(WAIT)
    with arrived:
        assert arrived.wait_for(lambda: (f"{prefix}/open", False) in got, WAIT)
    # Then only r/open arrived, retained and live; r/secret never did
    assert sorted(got) == [(f"{prefix}/open", False), (f"{prefix}/open", True)]
    for topic in (f"{prefix}/open", f"{prefix}/secret"):
        publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(WAIT)
    reader.close()
    publisher.disconnect()
    publisher.loop_stop()


def test_an_attached_policy_the_evaluator_cannot_read_is_reported_and_not_applied(
    strict: Strict, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a certificate whose only policy uses NotAction (allow everything but Publish)
    odd = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "iot:Publish", "Resource": "*"}]}
    name = f"odd-{uuid.uuid4().hex[:6]}"
    strict.iot.create_policy(policyName=name, policyDocument=json.dumps(odd))
    files = provision(strict.iot, strict.ca, unique("odd"), strict.files, policy=name)
    # When it connects, Then it is not let in on a guess, and the log says why
    assert TlsDevice(files, strict.tls_port).connect() == "Not authorized"
    assert any("NOT APPLIED" in r.getMessage() and name in r.getMessage() for r in caplog.records)
