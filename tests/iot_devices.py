"""Provisioning a device in the local IoT registry, for tests: the moto IoT calls `gasmon-admin
--local provision` makes (certificate from the local CA registered ACTIVE, thing with its group,
thing principal, device policy), and clients built the way a Pi builds them."""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gasmon_local.local_ca import LocalCA

WAIT = 15.0
DEVICE_POLICY = "gasmon-device"


@dataclass(frozen=True)
class DeviceFiles:
    thing: str
    certificate_id: str
    certificate_arn: str
    cert: Path
    key: Path
    ca: Path


def provision(iot: Any, ca: LocalCA, thing: str, directory: Path, policy: str = DEVICE_POLICY) -> DeviceFiles:
    """Register a new certificate for `thing` (ACTIVE), create the thing, attach both and the policy."""
    issued = ca.issue_device_certificate(thing)
    registered = iot.register_certificate_without_ca(certificatePem=issued.certificate_pem, status="ACTIVE")
    iot.create_thing(thingName=thing, attributePayload={"attributes": {"group": "1"}})
    iot.attach_thing_principal(thingName=thing, principal=registered["certificateArn"])
    iot.attach_policy(policyName=policy, target=registered["certificateArn"])
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{thing}.cert.pem", directory / f"{thing}.private.key"
    cert.write_text(issued.certificate_pem)
    key.write_text(issued.private_key_pem)
    assert registered["certificateId"] == issued.certificate_id  # AWS's id: SHA-256 of the DER
    return DeviceFiles(thing, issued.certificate_id, registered["certificateArn"], cert, key, ca.ensure())


def revoke(iot: Any, device: DeviceFiles) -> None:
    iot.update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE")


class TlsDevice:
    """A paho client on the TLS port with `tls_set(ca, cert, key)`, as the seed's sub.py connects."""

    def __init__(self, files: DeviceFiles, port: int, client_id: str | None = None, will: Any = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or files.thing)
        self.client.tls_set(ca_certs=str(files.ca), certfile=str(files.cert), keyfile=str(files.key))
        if will is not None:
            self.client.will_set(f"my/things/{files.thing}/update", json.dumps(will), qos=1)
        self.connack: Any = None
        self.granted: list[int] = []
        self.disconnected = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *args: self.disconnected.set()
        self.port = port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connack = reason
        self._connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        self.granted = [code.value for code in reasons]
        self._subscribed.set()

    def connect(self) -> Any:
        """Connect; return the CONNACK reason (paho's ReasonCode: 0 success, 135 not authorized)."""
        self.client.reconnect_delay_set(60, 60)  # a refused client must not retry during the test
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._connected.wait(WAIT), "no CONNACK"
        return self.connack

    def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        self._subscribed.clear()
        self.client.subscribe(topic, qos)
        assert self._subscribed.wait(WAIT), "no SUBACK"
        return self.granted

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tls_handshake_refused(files: DeviceFiles, port: int, cert: Path | None, key: Path | None) -> bool:
    """Whether the broker refuses the TLS handshake for this client certificate (or none)."""
    import socket

    context = ssl.create_default_context(cafile=str(files.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # TLS 1.3 reports a refused client certificate on the first read, not in the
                # handshake; an accepted client would just be waiting for its CONNECT here.
                tls.settimeout(3)
                return tls.recv(1) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
