"""What the agent logs when the broker refuses or ends its connection: the broker's reason, not
paho's "Unspecified error" alone (issue 15)."""

from __future__ import annotations

import logging
import uuid

import pytest
from device_testkit import BrokerThread
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gasmon_device.config import MqttSettings
from gasmon_device.mqtt import DeviceConnection, loss_message, refusal_message


def settings(port: int) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=port, tls=False, reconnect_base_seconds=0.05, reconnect_cap_seconds=0.2)


def test_a_refused_connect_logs_the_connack_code_the_broker_sent(caplog: pytest.LogCaptureFixture) -> None:
    # Given a real broker that accepts no anonymous client
    broker = BrokerThread(allow_anonymous=False)
    connection = DeviceConnection(settings(broker.port), f"pi-{uuid.uuid4().hex[:6]}")
    try:
        # When the device connects without credentials
        with caplog.at_level(logging.INFO, logger="gasmon_device"):
            connection.start()
            assert not connection.wait_connected(1.5)
    finally:
        connection.stop(1.0)
        broker.stop()

    # Then the log names the broker's refusal (CONNACK 4 or 5 by name) and what to check, and
    # never only paho's "Unspecified error"
    refusals = [r.getMessage() for r in caplog.records if "refused by the broker" in r.getMessage()]
    assert refusals, [r.getMessage() for r in caplog.records]
    assert "CONNACK 5 (Not authorized)" in refusals[0] or "CONNACK 4 (Bad user name or password)" in refusals[0]
    assert f"127.0.0.1:{broker.port}" in refusals[0]
    assert not [r for r in caplog.records if r.getMessage().endswith("Unspecified error")]


def test_every_mqtt_311_refusal_is_named_with_its_wire_code() -> None:
    # Given each refusal paho can hand over for an MQTT 3.1.1 CONNACK
    names = {
        1: "Unsupported protocol version",
        2: "Client identifier not valid",
        3: "Server unavailable",
        4: "Bad user name or password",
        5: "Not authorized",
    }
    for code, name in names.items():
        # When it is turned into the log line
        line = refusal_message("broker", 8883, "pi-1", ReasonCode(PacketTypes.CONNACK, name))
        # Then the line carries the code as sent on the wire (paho's number is MQTT 5's)
        assert f"CONNACK {code} ({name})" in line


def test_a_connection_the_broker_closed_names_the_duplicate_client_id_it_may_be() -> None:
    # Given paho's report of a socket the broker closed (MQTT 3.1.1 sends no reason)
    reason = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
    # When it is turned into the log line
    line = loss_message("sim-pi-01", reason, from_server=False)
    # Then it says what can close it: another client with this client id, or a denied publish
    assert "'sim-pi-01'" in line and "DUPLICATE_CLIENTID" in line and "--prefix" in line
    assert "Unspecified error" not in line
