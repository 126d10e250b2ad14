"""The alert subscriber against a real MQTT broker (amqtt, in-process on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from device_testkit import BrokerThread, Watcher, make_tls_files

from gasmon_device.config import DeviceConfig, MqttSettings
from gasmon_device.payload import WarningAlert
from gasmon_device.subscriber import AlertSubscriber

LWT = b'{"state":{"reported":{"connected":"false"}}}'
CONNECTED = b'{"state":{"reported":{"connected":"true"}}}'
SEED_WARNING = {
    "warning": "no2 warning",
    "gas": "no2",
    "value": 95.5,
    "threshold": 88.0,
    "sensorid": "0006",
    "groupid": "2",
    "createdtime": "2021-09-03 18:14:49",
    "gps": "37.61, 126.99",
    "level": "warning",
}


class RecordingHook:
    def __init__(self) -> None:
        self.alerts: list[WarningAlert] = []
        self.called = threading.Event()

    def __call__(self, alert: WarningAlert) -> None:
        self.alerts.append(alert)
        self.called.set()


def config_for(port: int, thing: str, **mqtt: object) -> DeviceConfig:
    settings = MqttSettings(
        host="127.0.0.1",
        port=port,
        tls=False,
        reconnect_base_seconds=0.05,
        reconnect_cap_seconds=0.2,
    )
    return DeviceConfig(thing_name=thing, groupid="2", mqtt=replace(settings, **mqtt))  # type: ignore[arg-type]


@pytest.fixture
def thing() -> str:
    return f"pi-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def watcher(broker: BrokerThread) -> Iterator[Watcher]:
    w = Watcher(broker.port, "my/things/+/update", "pi/1")
    yield w
    w.close()


def test_connect_reports_connected_true_and_a_warning_reaches_the_hook(broker, watcher, thing) -> None:
    # Given a subscriber for thing <thing> with a recording hook
    hook = RecordingHook()
    subscriber = AlertSubscriber(config_for(broker.port, thing), hook)
    topic = f"my/things/{thing}/update"

    # When it connects
    subscriber.start()
    try:
        assert subscriber.connection.wait_connected(5)

        # Then it reports connected=true on its presence topic, with the exact seed payload
        assert watcher.wait_for(topic, 1) == [CONNECTED]
        # and the broker sees client id = thing name with a 30 s keep-alive
        session = broker.broker.sessions[thing][0]
        assert session.keep_alive == 30

        # When the server publishes a warning on pi/1
        watcher.wait_for("pi/1", 0)
        watcher.publish("pi/1", json.dumps(SEED_WARNING).encode())

        # Then the hook gets it, parsed
        assert hook.called.wait(5)
        alert = hook.alerts[0]
        assert (alert.warning, alert.gas, alert.value, alert.threshold) == ("no2 warning", "no2", 95.5, 88.0)
        assert (alert.groupid, alert.sensorid, alert.topic) == ("2", "0006", "pi/1")
    finally:
        subscriber.stop()


def test_messages_that_are_not_warnings_do_not_reach_the_hook(broker, watcher, thing) -> None:
    # Given a connected subscriber
    hook = RecordingHook()
    subscriber = AlertSubscriber(config_for(broker.port, thing), hook)
    subscriber.start()
    try:
        assert subscriber.connection.wait_connected(5)
        watcher.wait_for(f"my/things/{thing}/update", 1)

        # When the seed's status message, garbage, and then a bare seed warning arrive
        watcher.publish("pi/1", b'{"msg": "success"}')
        watcher.publish("pi/1", b"not json")
        watcher.publish("pi/1", b'{"warning": "no2 warning"}')

        # Then only the warning reaches the hook
        assert hook.called.wait(5)
        assert [a.warning for a in hook.alerts] == ["no2 warning"]
        assert hook.alerts[0].value is None
    finally:
        subscriber.stop()


def test_a_dropped_connection_fires_the_last_will_and_the_reconnect_reports_connected_again(
    broker, watcher, thing
) -> None:
    # Given a connected subscriber
    subscriber = AlertSubscriber(config_for(broker.port, thing), RecordingHook())
    topic = f"my/things/{thing}/update"
    subscriber.start()
    try:
        assert watcher.wait_for(topic, 1) == [CONNECTED]

        # When its TCP connection drops without an MQTT DISCONNECT (lost Wi-Fi, a crash)
        subscriber.connection.drop()

        # Then the broker publishes its Last Will, byte for byte the seed's, on my/things/<thing>/update
        # and, once it reconnects by itself, it reports connected=true again
        assert watcher.wait_for(topic, 3) == [CONNECTED, LWT, CONNECTED]
        assert subscriber.connection.connects == 2
    finally:
        subscriber.stop()


def test_a_clean_stop_reports_connected_false_once_without_the_will(broker, watcher, thing) -> None:
    # Given a connected subscriber
    subscriber = AlertSubscriber(config_for(broker.port, thing), RecordingHook())
    topic = f"my/things/{thing}/update"
    subscriber.start()
    assert watcher.wait_for(topic, 1) == [CONNECTED]

    # When it is stopped (systemctl stop, Ctrl-C)
    subscriber.stop()

    # Then it reports connected=false itself, and the broker does not add the Last Will
    assert watcher.wait_for(topic, 2) == [CONNECTED, LWT]
    assert watcher.wait_for(topic, 3, timeout=0.5) == [CONNECTED, LWT]


def test_mutual_tls_uses_the_root_ca_certificate_and_key(tmp_path, thing) -> None:
    # Given a TLS broker that trusts one CA, and device files laid out as in the seeds
    files = make_tls_files(tmp_path / "certs")
    tls_broker = BrokerThread(tls=files)
    try:
        config = config_for(
            tls_broker.port, thing, tls=True, root_ca=files.ca, cert=files.client_cert, key=files.client_key
        )
        config.require_mqtt()
        subscriber = AlertSubscriber(config, RecordingHook())

        # When the subscriber connects over TLS with its certificate
        subscriber.start()
        try:
            # Then the connection is up
            assert subscriber.connection.wait_connected(10)
        finally:
            subscriber.stop()

        # Given a device certificate signed by a CA the broker does not trust
        rogue = make_tls_files(tmp_path / "rogue", client_ca_name="someone else")
        rogue_config = config_for(
            tls_broker.port,
            thing + "-rogue",
            tls=True,
            root_ca=files.ca,
            cert=rogue.client_cert,
            key=rogue.client_key,
        )
        rogue_subscriber = AlertSubscriber(rogue_config, RecordingHook())

        # When it tries to connect
        rogue_subscriber.start()
        try:
            # Then the handshake fails: the certificate really is presented and checked
            assert not rogue_subscriber.connection.wait_connected(1)
        finally:
            rogue_subscriber.stop()
    finally:
        tls_broker.stop()
