"""One device's MQTT connection, as the seeds set it up, made to survive blips.

- client id = thing name (AWS IoT policies allow a device to connect only as its thing);
- keep-alive 30 s (AWS's minimum), so the broker declares a silent device gone within 45 s;
- a Last Will on `my/things/<thing>/update` with `{"state":{"reported":{"connected":"false"}}}`
  at QoS 1 (seed `001`; a rule republishes it into the thing shadow);
- `{"state":{"reported":{"connected":"true"}}}` published on that topic after EVERY successful
  connect, so the shadow does not stay "false" after a reconnect;
- on a clean stop, connected=false is published before DISCONNECT (a clean DISCONNECT suppresses
  the will, and the shadow would otherwise keep saying "true");
- reconnects are driven here, not by paho, so the delay is capped exponential with full jitter
  and a fleet that lost its broker does not return in lockstep.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .backoff import Backoff
from .config import MqttSettings
from .payload import CONNECTED_PAYLOAD, DISCONNECTED_PAYLOAD, presence_topic

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
# AWS IoT on port 443 needs this ALPN protocol name to speak MQTT.
AWS_IOT_ALPN = "x-amzn-mqtt-ca"


# MQTT 3.1.1 CONNACK return codes by the name paho gives them (it hands them over as MQTT 5 reason
# codes, whose numbers differ: "Not authorized" is 135 there, 5 on the wire), with what to check.
CONNACK_CODES: dict[str, tuple[int, str]] = {
    "unsupported protocol version": (1, "the broker speaks another MQTT version (AWS IoT and the local one: 3.1.1)"),
    "client identifier not valid": (2, "the broker refused the client id: use the thing name (A-Z a-z 0-9 : _ -)"),
    "server unavailable": (3, "the broker is up but not serving: it is retried"),
    "bad user name or password": (4, "the broker refused the credentials: check the certificate and key files"),
    "not authorized": (
        5,
        "is the certificate ACTIVE with the device policy attached, and the client id the thing name? "
        "(locally: the stack's DENIED or connect_failed log line says which)",
    ),
}
# What paho reports for a socket the other side closed: MQTT 3.1.1 has no DISCONNECT from the
# broker, so "Unspecified error" is all the protocol says.
UNSPECIFIED = 128


def refusal_message(host: str, port: int, client_id: str, reason: ReasonCode) -> str:
    """The log line for a refused CONNECT: the broker's own reason (the CONNACK code) and what to check."""
    name = str(reason)
    known = CONNACK_CODES.get(name.lower())
    if known is None:
        return (
            f"MQTT connection to {host}:{port} as {client_id} refused by the broker: {name} "
            f"(reason code {reason.value}); see the broker's log"
        )
    code, hint = known
    return f"MQTT connection to {host}:{port} as {client_id} refused by the broker: CONNACK {code} ({name}); {hint}"


def loss_message(client_id: str, reason: ReasonCode, from_server: bool) -> str:
    """The log line for a connection that ended without our asking, with what could have ended it."""
    if from_server or reason.value != UNSPECIFIED:
        return f"MQTT connection lost: the broker said {reason} (reason code {reason.value})"
    return (
        "MQTT connection lost: the broker closed it or the network dropped (MQTT 3.1.1 carries no reason). "
        f"If this repeats every few seconds, another client is connected with the same client id {client_id!r} "
        "(the broker's lifecycle event says DUPLICATE_CLIENTID: give each device its own thing name, "
        "`gasmon-device simulate --prefix`), or the device policy denied a publish (AUTH_ERROR)"
    )


class DeviceConnection:
    """A supervised MQTT connection for one thing, run on its own thread.

    `subscriptions` are (topic, qos) pairs subscribed after every connect; `on_message` gets
    (topic, payload) for every message. `start()` returns at once; `stop()` disconnects cleanly;
    `drop()` closes the socket without DISCONNECT (the broker then publishes the Last Will) and
    lets it reconnect; `leave(clean)` goes offline either way until `resume()`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        thing_name: str,
        *,
        client_id: str | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: MessageHandler | None = None,
        rng: random.Random | None = None,
        stable_after_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.thing_name = thing_name
        self.client_id = client_id or settings.client_id or thing_name
        self.topic = presence_topic(settings.presence_topic, thing_name)
        self.subscriptions = tuple(subscriptions)
        self.on_message = on_message
        self.backoff = Backoff(
            base=settings.reconnect_base_seconds, cap=settings.reconnect_cap_seconds, rng=rng or random.Random()
        )
        # A connection counts as healthy (and resets the backoff) once it stayed up this long.
        self.stable_after = settings.keepalive_seconds if stable_after_seconds is None else stable_after_seconds
        self.connected = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self._stop = threading.Event()
        self._online = threading.Event()
        self._online.set()
        self._thread: threading.Thread | None = None
        self._connected_at = 0.0
        self._failures = 0  # reconnect attempts since the last connection that stayed up
        self._refused = False  # the last CONNACK refused the connection
        self.client = self._build_client()

    # -- setup ---------------------------------------------------------------------------------

    def _build_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=s.clean_session,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,  # the supervisor thread reconnects, with jitter
        )
        client.will_set(self.topic, DISCONNECTED_PAYLOAD, qos=1, retain=False)
        if s.tls:
            client.tls_set_context(self._tls_context())
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.root_ca) if s.root_ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if s.cert and s.key:
            context.load_cert_chain(certfile=str(s.cert), keyfile=str(s.key))
        if s.port == 443:
            context.set_alpn_protocols([AWS_IOT_ALPN])
        return context

    # -- callbacks (paho's network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = True
            logger.error("%s", refusal_message(self.settings.host, self.settings.port, self.client_id, reason))
            return
        self._refused = False
        self.connects += 1
        self._connected_at = time.monotonic()
        client.publish(self.topic, CONNECTED_PAYLOAD, qos=1)
        for topic, qos in self.subscriptions:
            client.subscribe(topic, qos=qos)
        self.connected.set()
        logger.info(
            "MQTT connected to %s:%s as %s (connect #%d, session present: %s); reported connected=true on %s",
            self.settings.host,
            self.settings.port,
            self.client_id,
            self.connects,
            flags.session_present,
            self.topic,
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected:
            self.disconnects += 1
            if self._connected_at and time.monotonic() - self._connected_at >= self.stable_after:
                self._failures = 0
        if self._stop.is_set() or not self._online.is_set():
            return  # stopped or left on purpose: nothing to explain
        if not was_connected and self._refused:
            return  # the CONNACK's refusal was logged with its reason; paho adds no news here
        logger.warning("%s", loss_message(self.client_id, reason, flags.is_disconnect_packet_from_server))

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for code in reasons:
            if code.is_failure:
                logger.error("MQTT subscription refused (%s): does the device policy allow it?", code)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(message.topic, bytes(message.payload))
        except Exception:  # a handler bug must not take the connection down
            logger.exception("handling a message on %s failed", message.topic)

    # -- supervision ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._supervise, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            if not self._online.is_set():
                self._online.wait(0.5)
                continue
            try:
                self.client.connect(s.host, s.port, keepalive=s.keepalive_seconds)
            except (OSError, ssl.SSLError) as exc:
                logger.warning("MQTT connect to %s:%s failed: %s", s.host, s.port, exc)
            else:
                self.client.loop_forever(timeout=0.5)  # returns when the connection ends
            if self._stop.is_set():
                break
            if not self._online.is_set():
                continue  # left on purpose (`leave`): wait for `resume`, no backoff needed
            delay = self.backoff.delay(self._failures)
            self._failures += 1
            logger.info("MQTT reconnecting in %.1f s (attempt %d)", delay, self._failures)
            self._stop.wait(delay)

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def stop(self, timeout: float = 5.0) -> None:
        """Report connected=false, send DISCONNECT, and end the thread."""
        self._stop.set()
        self._online.set()
        self._disconnect_cleanly(timeout)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def leave(self, clean: bool) -> None:
        """Go offline until `resume()`: cleanly (connected=false, then DISCONNECT: no Last Will), or
        not (the TCP connection is closed without DISCONNECT, as a crash or lost Wi-Fi does, so
        the broker publishes the Last Will)."""
        self._online.clear()
        if clean:
            self._disconnect_cleanly(5.0)
        else:
            self.drop()

    def _disconnect_cleanly(self, timeout: float) -> None:
        if self.connected.is_set():
            info = self.client.publish(self.topic, DISCONNECTED_PAYLOAD, qos=1)
            try:
                info.wait_for_publish(timeout=min(timeout, 2.0))
            except (RuntimeError, ValueError):
                pass  # the connection went away meanwhile; the Last Will covers it
            logger.info("reported connected=false on %s; disconnecting", self.topic)
        result = self.client.disconnect()
        if result not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            logger.debug("disconnect returned %s", result)

    def drop(self) -> None:
        """Close the TCP connection WITHOUT an MQTT DISCONNECT; the supervisor reconnects unless left."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):  # ssl.SSLSocket included
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def resume(self) -> None:
        """Let a device that `leave()`ed reconnect."""
        self._online.set()
