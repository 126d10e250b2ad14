"""The local AWS IoT Core over real sockets: paho clients, boto3 iot-data, the production publisher.

The broker runs on its own event loop in a thread, as in `gasmon-local`; a recording stand-in
takes the rules' Lambda invocations.
"""

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gasmon.adapters.iot_publisher import IotDataPublisher
from gasmon_local.broker import IotCore
from gasmon_local.iot_data import IotDataApp
from gasmon_local.lifecycle import VersionCounter
from gasmon_local.rules import RuleEngine, load_rules
from gasmon_local.servers import ServerThread
from gasmon_local.shadows import ShadowStore
from gasmon_local.template import TopicRuleSpec

WAIT = 15.0  # generous: a busy 2-core machine must not make these flaky
WILL = {"state": {"reported": {"connected": "false"}}}


class Targets:
    def __init__(self, core: IotCore) -> None:
        self.core = core
        self.invoked: list[Any] = []

    def invoke_lambda(self, function_arn: str, event: Any, source: str) -> None:
        self.invoked.append(event)

    async def republish(self, topic: str, payload: bytes, qos: int) -> None:
        await self.core.publish(topic, payload, qos)

    def sns_publish(self, topic_arn: str, message: str) -> None: ...

    def sqs_send(self, queue_url: str, body: str) -> None: ...


@dataclass
class Running:
    core: IotCore
    targets: Targets
    iot_data_url: str

    @property
    def port(self) -> int:
        return self.core.port


@pytest.fixture(scope="module")
def iot() -> Iterator[Running]:
    core = IotCore(ShadowStore(), VersionCounter(), port=0)
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
    targets = Targets(core)
    core.rules = RuleEngine(
        load_rules(
            [
                TopicRuleSpec(
                    "Lifecycle",
                    "Lifecycle",
                    "SELECT * FROM '$aws/events/presence/+/+'",
                    "2016-03-23",
                    False,
                    ({"Lambda": {"FunctionArn": "arn:aws:lambda:ap-northeast-2:123456789012:function:presence"}},),
                ),
                TopicRuleSpec(
                    "LastWill",
                    "LastWill",
                    "SELECT * FROM 'my/things/+/update'",
                    "2016-03-23",
                    False,
                    ({"Republish": {"Topic": "$$aws/things/${topic(3)}/shadow/update", "Qos": 1}},),
                ),
            ]
        ),
        targets,
    )
    server = ServerThread(IotDataApp(core), "127.0.0.1", 0, "iot-data").start()
    yield Running(core, targets, server.url)
    server.stop()
    asyncio.run_coroutine_threadsafe(core.stop(), loop).result(WAIT)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)


class Subscriber:
    """A paho client that collects what arrives on its subscriptions."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[tuple[str, Any]] = []
        self._lock = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert subscribed.wait(WAIT)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            try:
                payload = json.loads(message.payload)
            except ValueError:
                payload = message.payload
            self.messages.append((message.topic, payload))
            self._lock.notify_all()

    def wait_for(self, predicate: Callable[[str, Any], bool], timeout: float = WAIT) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for topic, payload in self.messages:
                    if predicate(topic, payload):
                        return topic, payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"nothing matched in {timeout} s; got {self.messages}")
                self._lock.wait(remaining)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(iot: Running) -> Iterator[Subscriber]:
    subscriber = Subscriber(iot.port, "$aws/events/presence/#", "$aws/things/+/shadow/#", "my/things/+/update", "pi/1")
    yield subscriber
    subscriber.close()


def device(port: int, client_id: str, keepalive: int = 60, will: bool = False, clean: bool = True) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if will:
        client.will_set(f"my/things/{client_id}/update", json.dumps(WILL), qos=1)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port, keepalive=keepalive)
    client.loop_start()
    assert connected.wait(WAIT)
    return client


def drop(client: mqtt.Client) -> None:
    """Close the TCP connection with no DISCONNECT packet, as a device losing power does."""
    client.loop_stop()
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def lifecycle_of(client_id: str, event_type: str) -> Callable[[str, Any], bool]:
    return lambda topic, payload: topic == f"$aws/events/presence/{event_type}/{client_id}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_clean_disconnect_publishes_client_initiated_events_and_no_will(iot: Running, watcher: Subscriber) -> None:
    # Given a device with a Last Will, When it sends DISCONNECT
    name = unique("clean")
    client = device(iot.port, name, will=True)
    client.disconnect()
    client.loop_stop()
    # Then connected and disconnected events carry AWS's fields and the reason
    _, connected = watcher.wait_for(lifecycle_of(name, "connected"))
    _, disconnected = watcher.wait_for(lifecycle_of(name, "disconnected"))
    assert set(connected) == {
        "clientId",
        "timestamp",
        "eventType",
        "sessionIdentifier",
        "principalIdentifier",
        "ipAddress",
        "versionNumber",
    }
    assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert disconnected["clientInitiatedDisconnect"] is True
    assert disconnected["sessionIdentifier"] == connected["sessionIdentifier"]
    assert disconnected["timestamp"] >= connected["timestamp"]
    assert disconnected["versionNumber"] > connected["versionNumber"]
    # And the rule's function got both, and no Last Will was sent
    assert [e["eventType"] for e in iot.targets.invoked if e.get("clientId") == name] == ["connected", "disconnected"]
    assert not any(topic == f"my/things/{name}/update" for topic, _ in watcher.messages)


def test_dropped_socket_is_connection_lost_and_the_will_reaches_the_shadow(iot: Running, watcher: Subscriber) -> None:
    # Given a device with the seed's Last Will, When its socket closes without DISCONNECT
    name = unique("dropper")
    drop(device(iot.port, name, will=True))
    # Then the disconnect is CONNECTION_LOST, the will is delivered and republished to the shadow
    _, event = watcher.wait_for(lifecycle_of(name, "disconnected"))
    assert (event["disconnectReason"], event["clientInitiatedDisconnect"]) == ("CONNECTION_LOST", False)
    watcher.wait_for(lambda topic, payload: topic == f"my/things/{name}/update" and payload == WILL)
    _, accepted = watcher.wait_for(lambda topic, _: topic == f"$aws/things/{name}/shadow/update/accepted")
    assert accepted["state"] == WILL["state"]


def test_silence_past_one_and_a_half_keep_alives_is_a_keep_alive_timeout(iot: Running, watcher: Subscriber) -> None:
    # Given a device with a 1 s keep-alive that stops talking (no PINGREQ: its network loop is stopped)
    name = unique("silent")
    client = device(iot.port, name, keepalive=1, will=True)
    client.loop_stop()
    # Then the broker drops it as AWS does, with the reason, and sends its will
    _, event = watcher.wait_for(lifecycle_of(name, "disconnected"))
    assert event["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert event["clientInitiatedDisconnect"] is False
    watcher.wait_for(lambda topic, _: topic == f"my/things/{name}/update")


def test_a_second_connection_with_the_same_client_id_drops_the_first(iot: Running, watcher: Subscriber) -> None:
    name = unique("twin")
    first = device(iot.port, name)
    first.reconnect_delay_set(60, 60)  # keep the first one from fighting back
    second = device(iot.port, name)
    _, first_event = watcher.wait_for(lifecycle_of(name, "connected"))
    _, event = watcher.wait_for(lifecycle_of(name, "disconnected"))
    assert event["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert event["sessionIdentifier"] == first_event["sessionIdentifier"]
    # the new connection's event follows, with a higher version number
    watcher.wait_for(
        lambda topic, payload: (
            lifecycle_of(name, "connected")(topic, payload) and payload["versionNumber"] > first_event["versionNumber"]
        )
    )
    first.loop_stop()
    second.disconnect()
    second.loop_stop()


def test_devices_may_publish_to_their_shadow_topics_but_not_other_reserved_topics(
    iot: Running, watcher: Subscriber
) -> None:
    name = unique("shadowy")
    client = device(iot.port, name)
    client.publish("$aws/events/presence/connected/forged", "{}", qos=1)
    client.publish(f"$aws/things/{name}/shadow/update", json.dumps({"state": {"reported": {"fw": "1.2"}}}), qos=1)
    _, accepted = watcher.wait_for(lambda topic, _: topic == f"$aws/things/{name}/shadow/update/accepted")
    assert accepted["state"] == {"reported": {"fw": "1.2"}}
    client.publish(f"$aws/things/{name}/shadow/get", "{}", qos=1)
    _, document = watcher.wait_for(lambda topic, _: topic == f"$aws/things/{name}/shadow/get/accepted")
    assert document["state"]["reported"] == {"fw": "1.2"} and document["version"] == 1
    assert client.is_connected()
    assert not any(topic.endswith("/forged") for topic, _ in watcher.messages)
    client.disconnect()
    client.loop_stop()


def iot_data(iot: Running) -> Any:
    return boto3.client(
        "iot-data",
        endpoint_url=iot.iot_data_url,
        region_name="ap-northeast-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_iot_data_publish_reaches_subscribers(iot: Running, watcher: Subscriber) -> None:
    iot_data(iot).publish(topic="pi/1", qos=1, payload=b'{"warning": "no2 warning"}')
    assert watcher.wait_for(lambda topic, _: topic == "pi/1")[1] == {"warning": "no2 warning"}


def test_the_production_publisher_reaches_the_broker_unchanged(
    iot: Running, watcher: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given gasmon's own iot-data adapter pointed here by endpoint (with the stack's fake credentials)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # When it publishes a warning, Then the warning arrives on pi/1
    publisher = IotDataPublisher(endpoint_url=iot.iot_data_url, region="ap-northeast-2")
    marker = uuid.uuid4().hex
    publisher.publish("pi/1", {"warning": "no2 warning", "marker": marker}, qos=1)
    watcher.wait_for(lambda topic, payload: topic == "pi/1" and payload.get("marker") == marker)


def test_thing_shadows_over_iot_data(iot: Running, watcher: Subscriber) -> None:
    client = iot_data(iot)
    name = unique("thing")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_thing_shadow(thingName=name)
    answer = client.update_thing_shadow(thingName=name, payload=json.dumps({"state": {"desired": {"led": "on"}}}))
    assert json.loads(answer["payload"].read())["version"] == 1
    shadow = json.loads(client.get_thing_shadow(thingName=name)["payload"].read())
    assert shadow["state"] == {"desired": {"led": "on"}, "delta": {"led": "on"}}
    watcher.wait_for(lambda topic, _: topic == f"$aws/things/{name}/shadow/update/delta")
    client.update_thing_shadow(thingName=name, shadowName="cfg", payload=b'{"state": {"reported": {"a": 1}}}')
    assert client.list_named_shadows_for_thing(thingName=name)["results"] == ["cfg"]
    with pytest.raises(client.exceptions.ConflictException):
        client.update_thing_shadow(thingName=name, payload=b'{"state": {"reported": {}}, "version": 9}')
    client.delete_thing_shadow(thingName=name)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_thing_shadow(thingName=name)


def test_a_persistent_session_keeps_its_session_identifier_across_connections(
    iot: Running, watcher: Subscriber
) -> None:
    name = unique("persistent")
    for _ in range(2):
        client = device(iot.port, name, clean=False)
        client.disconnect()
        client.loop_stop()
        watcher.wait_for(lambda topic, _: topic == f"$aws/events/presence/disconnected/{name}")
    clean = device(iot.port, name)
    clean.disconnect()
    clean.loop_stop()
    watcher.wait_for(
        lambda topic, _: (
            topic == f"$aws/events/presence/connected/{name}"
            and len([t for t, _ in watcher.messages if t == topic]) == 3
        )
    )
    sessions = [p["sessionIdentifier"] for t, p in watcher.messages if t == f"$aws/events/presence/connected/{name}"]
    versions = [p["versionNumber"] for t, p in watcher.messages if t.endswith(f"/{name}")]
    assert sessions[0] == sessions[1] != sessions[2]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
