"""AWS IoT Core on this machine: an amqtt MQTT broker taught what AWS adds to MQTT.

amqtt 0.12 is a complete MQTT 3.1.1 broker (sessions, QoS 1/2, retained messages, Last Will on
an unexpected drop), and it exposes plugin events (`on_broker_client_connected`,
`on_broker_client_disconnected`, `on_mqtt_packet_received`...). Those are not enough for AWS's
behaviour, so `IotBroker` subclasses it at four narrow seams:

- `_broadcast_message` is the one place every message passes (client publishes, Last Wills,
  internal publishes); after amqtt queues it for subscribers, `IotCore.on_message` hands it to
  the shadow service and the rules engine;
- `_handle_message_delivery`: MQTT forbids clients to publish on `$` topics and amqtt drops such
  a client, but AWS lets devices publish to their shadow topics (`$aws/things/<thing>/shadow/...`);
- `_client_message_loop` / `_handle_disconnect`: the disconnected plugin event does not say *why*
  a client left, and AWS's lifecycle event must (DISCONNECT packet -> CLIENT_INITIATED_DISCONNECT,
  socket drop -> CONNECTION_LOST, silence -> MQTT_KEEP_ALIVE_TIMEOUT, same client id connecting
  again -> DUPLICATE_CLIENTID);
- keep-alive: amqtt's broker never drops a silent client (its read-timeout handler is a no-op),
  while AWS drops it after 1.5 x the keep-alive. `ActivityPlugin` (a regular amqtt plugin) notes
  every packet received, and a watchdog closes connections that stay silent longer, which also
  makes amqtt deliver their Last Will.

Strict like AWS on the TLS listener (`mqtts`; the plain one stays open for local scripts):

- the client certificate is required (`_create_ssl_context`) and read per connection
  (`_client_connected`); `_initialize_client_session` authorizes CONNECT against the registry
  and the certificate's policies before amqtt touches any stored session, and refuses with
  CONNACK 0x05 and AWS's `connect_failed` event;
- the connection's grant then decides PUBLISH (`_handle_message_delivery`: denied -> disconnect,
  AUTH_ERROR), SUBSCRIBE and RECEIVE (`_topic_filtering`, retained messages included) and the
  Last Will; every denial is one `DENIED` log line;
- `$share/<group>/<filter>` subscriptions are kept beside amqtt's (`add_subscription`,
  `_del_subscription`) and served in `_broadcast_message`, one member per group.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.errors import BrokerError, MQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin
from amqtt.session import Session
from amqtt.utils import gen_client_id

from gasmon_local import iot_policy, lifecycle
from gasmon_local.iot_identity import (
    CertificateRegistry,
    Grant,
    Refusal,
    authorize_connect,
    certificate_id_of_der,
)
from gasmon_local.iot_policy import Arns
from gasmon_local.rules import RuleEngine
from gasmon_local.shadows import ShadowRejectedError, ShadowStore, UpdateResult, client_token_of, parse_request_topic
from gasmon_local.shared_subscriptions import SharedSubscriptions, parse_shared

log = logging.getLogger("mqtt")
PLAIN_LISTENER = "default"
TLS_LISTENER = "mqtts"
SUBACK_FAILURE = 0x80
KEEP_ALIVE_FACTOR = 1.5  # AWS IoT drops a client silent for 1.5 x its keep-alive
WATCHDOG_SECONDS = 0.25


def now_ms() -> int:
    return int(time.time() * 1000)


class AllowAllAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no py.typed
    """Every client may connect (the local stack has no certificates).

    Unlike amqtt's AnonymousAuthPlugin it does not mark sessions anonymous, so persistent sessions
    (clean session off) keep QoS 1 messages while the device is away, as AWS IoT does.
    """

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


class ActivityPlugin(BasePlugin[BaseContext]):  # type: ignore[misc]
    """Tells the broker when a client sent a packet (for the keep-alive watchdog)."""

    listener: Callable[[Session], None] | None = None

    async def on_mqtt_packet_received(self, *, packet: Any = None, session: Session | None = None) -> None:
        if session is not None and self.listener is not None:
            self.listener(session)


@dataclass(frozen=True)
class TlsListener:
    """The TLS listener: port, the broker's certificate and key, and the CA its clients must come from."""

    port: int
    certfile: Path
    keyfile: Path
    cafile: Path


# Set per connection task: what the listener learnt before CONNECT (which listener, the client's
# certificate) and what CONNECT decided; the amqtt methods it passes through share the task.
_peer: contextvars.ContextVar[tuple[str, bytes | None]] = contextvars.ContextVar("peer", default=(PLAIN_LISTENER, None))
_verdict: contextvars.ContextVar[Grant | Refusal | None] = contextvars.ContextVar("verdict", default=None)


@dataclass
class Connection:
    """One live MQTT connection as the lifecycle events describe it."""

    client_id: str
    handler: BrokerProtocolHandler
    session: Session
    session_id: str
    principal: str
    keep_alive: int
    grant: Grant | None = None  # None on the plain (unauthenticated) listener
    last_seen: float = field(default_factory=time.monotonic)
    reason: str | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class IotBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with AWS IoT's lifecycle, keep-alive and reserved-topic behaviour."""

    def __init__(self, config: dict[str, Any], core: IotCore) -> None:
        super().__init__(config)
        self.core = core
        self.connections: dict[str, Connection] = {}
        self.session_ids: dict[str, str] = {}
        # The grant of each TLS client id, kept while its session lives (queued messages are
        # checked against it too); plain-listener clients have none and are not checked.
        self.grants: dict[str, Grant] = {}
        self.shared: SharedSubscriptions[Session] = SharedSubscriptions()
        self.shutting_down = False
        plugin = self.plugins_manager.get_plugin("ActivityPlugin")
        if isinstance(plugin, ActivityPlugin):
            plugin.listener = self._touch
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._watchdog = asyncio.create_task(self._watch_keep_alive())

    async def shutdown(self) -> None:
        self.shutting_down = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        await super().shutdown()

    @staticmethod
    def _create_ssl_context(listener: Any) -> ssl.SSLContext:
        # amqtt asks for a client certificate but accepts a client without one; AWS IoT requires it.
        context: ssl.SSLContext = Broker._create_ssl_context(listener)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def _client_connected(self, listener_name: str, reader: Any, writer: Any) -> None:
        certificate = None
        ssl_object = writer.get_ssl_info() if listener_name == TLS_LISTENER else None
        if ssl_object is not None:
            certificate = ssl_object.getpeercert(binary_form=True)
        _peer.set((listener_name, certificate))
        _verdict.set(None)
        await super()._client_connected(listener_name, reader, writer)

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        """Read CONNECT, authorize it (TLS listener), and only then touch any existing session.

        amqtt's own version resets or takes over the stored session of the client id before
        authentication, so a refused impostor could wipe a connected device's subscriptions or
        replace its Last Will. Here a refusal is answered (CONNACK 0x05) before anything changes.
        """
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        except MQTTError as exc:
            if "Invalid protocol" in str(exc):
                log.warning(
                    "refused       %s:%s: MQTT 5 is not supported by the local broker (CONNACK 0x01); "
                    "connect with MQTT 3.1.1",
                    remote_address,
                    remote_port,
                )
            with contextlib.suppress(OSError):
                await writer.close()
            raise
        listener, certificate = _peer.get()
        client_id = session.client_id or ""
        if listener == TLS_LISTENER:
            verdict = await self.core.authorize(client_id, certificate)
            _verdict.set(verdict)
            if isinstance(verdict, Refusal):
                log.warning(
                    "DENIED        %s %s %s: %s (certificate %s)",
                    client_id,
                    verdict.action,
                    verdict.resource,
                    verdict.reason,
                    verdict.principal[:12] or "none",
                )
                await self.core.connect_failed(client_id, verdict.principal, remote_address)
                with contextlib.suppress(OSError):  # the client may hang up first
                    await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
                    await writer.close()
                return handler, session
        # MQTT session bookkeeping, as amqtt does it, once the client is let in.
        if session.clean_session:
            if client_id:
                await self._delete_session(client_id)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif client_id in self._sessions:
            existing: Session = self._sessions[client_id][0]
            for attribute in ("will_flag", "will_message", "will_topic", "will_qos", "will_retain"):
                setattr(existing, attribute, getattr(session, attribute))
            for attribute in ("keep_alive", "username", "password"):
                setattr(existing, attribute, getattr(session, attribute))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        return handler, session

    def _touch(self, session: Session) -> None:
        connection = self.connections.get(session.client_id or "")
        if connection is not None and connection.session is session:
            connection.last_seen = time.monotonic()

    async def _watch_keep_alive(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            now = time.monotonic()
            for connection in list(self.connections.values()):
                limit = connection.keep_alive * KEEP_ALIVE_FACTOR
                if connection.keep_alive > 0 and connection.reason is None and now - connection.last_seen > limit:
                    connection.reason = lifecycle.MQTT_KEEP_ALIVE_TIMEOUT
                    await connection.handler.handle_connection_closed()

    async def _handle_client_session(
        self,
        reader: Any,
        writer: Any,
        client_session: Session,
        handler: BrokerProtocolHandler,
        server: Any,
        listener_name: str,
    ) -> None:
        if isinstance(_verdict.get(), Refusal):
            return  # already answered with CONNACK 0x05
        previous = self.connections.get(client_session.client_id or "")
        if previous is not None:
            # AWS drops the older connection of a client id that connects again.
            previous.reason = lifecycle.DUPLICATE_CLIENTID
            await previous.handler.handle_connection_closed()
            try:
                await asyncio.wait_for(previous.closed.wait(), timeout=5)
            except TimeoutError:
                log.warning("%s: the previous connection did not close in time", client_session.client_id)
        await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)

    async def _client_message_loop(self, client_session: Session, handler: BrokerProtocolHandler) -> None:
        client_id = client_session.client_id or ""
        # sessionIdentifier lives as long as the MQTT session: a persistent session (clean
        # session off) keeps it across reconnects, a clean one gets a new one.
        if client_session.clean_session:
            self.session_ids.pop(client_id, None)
            session_id = str(uuid.uuid4())
        else:
            session_id = self.session_ids.setdefault(client_id, str(uuid.uuid4()))
        verdict = _verdict.get()
        grant = verdict if isinstance(verdict, Grant) else None
        if grant is not None:
            self.grants[client_id] = grant
        else:
            self.grants.pop(client_id, None)
        connection = Connection(
            client_id=client_id,
            handler=handler,
            session=client_session,
            session_id=session_id,
            # AWS's principalIdentifier of a certificate connection is the certificate id.
            principal=grant.certificate_id if grant else client_session.username or "anonymous",
            keep_alive=client_session.keep_alive,
            grant=grant,
        )
        self.connections[client_id] = connection
        await self.core.client_connected(connection, client_session.remote_address or "127.0.0.1")
        try:
            await super()._client_message_loop(client_session, handler)
        finally:
            if self.connections.get(client_id) is connection:  # ended without a disconnect (shutdown)
                del self.connections[client_id]
            connection.closed.set()

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any],
    ) -> None:
        client_id = client_session.client_id or ""
        connection = self.connections.get(client_id)
        if connection is not None and connection.handler is not handler:
            connection = None
        clean = isinstance(disconnect_waiter.result(), DisconnectPacket)
        reason = lifecycle.CLIENT_INITIATED_DISCONNECT if clean else lifecycle.CONNECTION_LOST
        if connection is not None and connection.reason is not None:
            reason = connection.reason
        if not clean and client_session.will_flag and client_session.will_topic:
            if not self._may(client_session, iot_policy.PUBLISH, client_session.will_topic):
                client_session.will_flag = False  # AWS publishes a Last Will only where the policy allows
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)  # sends the Last Will
        if connection is not None:
            if self.connections.get(client_id) is connection:
                del self.connections[client_id]
            if not self.shutting_down:
                await self.core.client_disconnected(connection, reason)
            connection.closed.set()

    async def _handle_message_delivery(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        wait_deliver: asyncio.Future[Any],
    ) -> bool:
        message = wait_deliver.result()
        topic = getattr(message, "topic", None) or ""
        if topic and "+" not in topic and "#" not in topic and not self._may(client_session, iot_policy.PUBLISH, topic):
            # AWS IoT (MQTT 3.1.1) disconnects a client whose PUBLISH its policies deny.
            connection = self.connections.get(client_session.client_id or "")
            if connection is not None and connection.handler is handler:
                connection.reason = lifecycle.AUTH_ERROR
            await handler.handle_connection_closed()
            return True
        if topic.startswith("$") and "+" not in topic and "#" not in topic:
            if parse_request_topic(topic) is not None:
                await self._broadcast_message(client_session, topic, message.data)
            else:
                log.warning("%s may not publish to reserved topic %s (dropped)", client_session.client_id, topic)
            return True
        delivered: bool = await super()._handle_message_delivery(client_session, handler, wait_deliver)
        if not delivered:
            # amqtt stops reading from a client that published on an invalid topic but leaves the
            # socket open; AWS disconnects it (CLIENT_ERROR), so close it for real.
            connection = self.connections.get(client_session.client_id or "")
            if connection is not None and connection.handler is handler:
                connection.reason = lifecycle.CLIENT_ERROR
            await handler.handle_connection_closed()
            return True
        return True

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        await super()._broadcast_message(session, topic, data, force_qos)
        if topic is not None and data is not None and self.shared.groups:
            for member, qos in self.shared.pick(topic, self._matches, lambda s: self._can_take(s, topic)):
                handler = self._get_handler(member)
                if handler is not None:
                    delivery = handler.mqtt_publish(topic, data, qos if force_qos is None else force_qos, retain=False)
                    self._tasks_queue.append(asyncio.ensure_future(delivery))
        if topic is not None and data is not None and not self.shutting_down:
            await self.core.on_message(topic, bytes(data), session.client_id if session else None)

    def _can_take(self, session: Session, topic: str) -> bool:
        connected = session.transitions.state == "connected"
        return connected and self._may(session, iot_policy.RECEIVE, topic)

    # ---- policies ----
    def _may(self, session: Session, action: str, topic: str) -> bool:
        """Whether the session's policies allow `action` on a topic (or filter); logs a denial."""
        grant = self.grants.get(session.client_id or "")
        if grant is None:
            return True  # the plain listener: unauthenticated, local only
        arns = grant.arns
        resource = arns.topic_filter(topic) if action == iot_policy.SUBSCRIBE else arns.topic(topic)
        decision = grant.decide(action, resource)
        if not decision.allowed:
            log.warning("DENIED        %s %s %s: %s", session.client_id, action, resource, decision.because)
        return decision.allowed

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        # amqtt asks before each SUBSCRIBE and each delivery; PUBLISH is checked earlier, where a
        # denial can disconnect the client as AWS does.
        if action == Action.SUBSCRIBE:
            return self._may(session, iot_policy.SUBSCRIBE, topic)
        if action == Action.RECEIVE:
            return self._may(session, iot_policy.RECEIVE, topic)
        return True

    # ---- shared subscriptions ----
    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        topic_filter, qos = subscription
        if not topic_filter.startswith("$share/"):
            result: int = await super().add_subscription(subscription, session)
            return result
        shared = parse_shared(topic_filter)
        if shared is None or not _valid_filter(shared[1]):
            return SUBACK_FAILURE
        # AWS authorizes a shared subscription on its whole filter, $share/<group>/ included.
        if not self._may(session, iot_policy.SUBSCRIBE, topic_filter):
            return SUBACK_FAILURE
        max_qos = self.config.get("max-qos", qos)
        qos = min(qos, max_qos) if isinstance(max_qos, int) else qos
        self.shared.subscribe(shared[0], shared[1], session.client_id or "", session, qos)
        return qos

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        shared = parse_shared(a_filter)
        if shared is not None:
            return self.shared.unsubscribe(shared[0], shared[1], session.client_id or "")
        deleted: int = super()._del_subscription(a_filter, session)
        return deleted

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        if parse_shared(subscription[0]) is not None:
            return  # AWS sends no retained message to a shared subscription
        if session.client_id not in self.grants:
            await super()._publish_retained_messages_for_subscription(subscription, session)
            return
        # A certificate client gets a retained message only where its policies allow iot:Receive.
        handler = self._get_handler(session)
        topic_filter, qos = subscription
        if handler is None:
            return
        for topic, retained in list(self._retained_messages.items()):
            if self._matches(topic, topic_filter) and self._may(session, iot_policy.RECEIVE, topic):
                await handler.mqtt_publish(retained.topic, retained.data, min(qos, retained.qos or qos), retain=True)

    async def _del_all_subscriptions(self, session: Session) -> None:
        self.shared.drop_client(session.client_id or "")
        await super()._del_all_subscriptions(session)

    def listener_port(self, name: str) -> int:
        """The port a listener is bound to (0 when it is not running)."""
        server = self._servers.get(name)
        if server is None:
            return 0
        sockets = getattr(server.instance, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else 0


def _valid_filter(topic_filter: str) -> bool:
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


class IotCore:
    """The broker plus the services AWS IoT Core runs beside it: lifecycle events, shadows, rules."""

    def __init__(
        self,
        shadows: ShadowStore,
        versions: lifecycle.VersionCounter,
        host: str = "127.0.0.1",
        port: int | None = 1883,
        tls: TlsListener | None = None,
        registry: CertificateRegistry | None = None,
        arns: Arns | None = None,
    ) -> None:
        """`port` None: no plain listener (`--strict`). `tls` needs the `registry` it checks clients in."""
        if tls is not None and registry is None:
            raise ValueError("a TLS listener needs a certificate registry")
        self.shadows = shadows
        self.versions = versions
        self.host = host
        self.requested_port = port
        self.tls = tls
        self.registry = registry
        self.arns = arns or Arns("ap-northeast-2", "123456789012")
        self.rules: RuleEngine | None = None
        self.broker: IotBroker | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        """The plain listener's port (0 when there is none)."""
        if self.broker is not None:
            return self.broker.listener_port(PLAIN_LISTENER)
        return self.requested_port or 0

    @property
    def tls_port(self) -> int:
        """The TLS listener's port (0 when there is none)."""
        if self.broker is not None:
            return self.broker.listener_port(TLS_LISTENER)
        return self.tls.port if self.tls is not None else 0

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # amqtt needs a "default" listener entry; one without `bind` is not started (--strict).
        listeners: dict[str, Any] = {PLAIN_LISTENER: {"type": "tcp"}}
        if self.requested_port is not None:
            listeners[PLAIN_LISTENER]["bind"] = f"{self.host}:{self.requested_port}"
        if self.tls is not None:
            listeners[TLS_LISTENER] = {
                "type": "tcp",
                "bind": f"{self.host}:{self.tls.port}",
                "ssl": True,
                "certfile": str(self.tls.certfile),
                "keyfile": str(self.tls.keyfile),
                "cafile": str(self.tls.cafile),
            }
        if self.requested_port is None and self.tls is None:
            raise ValueError("the broker needs a plain or a TLS listener")
        config = {
            "listeners": listeners,
            "plugins": {
                "gasmon_local.broker.AllowAllAuthPlugin": {},
                "gasmon_local.broker.ActivityPlugin": {},
            },
            # AWS keeps a persistent session (and its queued QoS 1 messages) for an hour by default.
            "session_expiry_interval": 3600,
        }
        self.broker = IotBroker(config, self)
        try:
            await self.broker.start()
        except BrokerError as exc:  # amqtt wraps the OSError of a port in use
            ports = [str(p) for p in (self.requested_port, self.tls.port if self.tls else None) if p is not None]
            raise OSError(f"MQTT broker cannot listen on {self.host}:{'/'.join(ports)}: {exc}") from None

    async def stop(self, grace: float = 3.0) -> None:
        """Stop the broker; clients still connected after `grace` seconds are closed.

        Since Python 3.12 `asyncio.Server.wait_closed()`, which amqtt's shutdown awaits, waits for
        every open connection, so one client that never hangs up (a test's leftover, a Pi
        mid-handshake) would hold the stop forever.
        """
        if self.broker is None:
            return
        shutdown = asyncio.ensure_future(self.broker.shutdown())
        done, _ = await asyncio.wait({shutdown}, timeout=grace)
        if not done:
            servers = getattr(self.broker, "_servers", {})  # amqtt keeps its listeners there
            for server in servers.values():
                if getattr(server, "instance", None) is not None:
                    server.instance.close_clients()
            log.info("stop: closed the connections of clients still connected after %ss", grace)
        await shutdown

    # ---- what the broker asks ----
    async def authorize(self, client_id: str, certificate_der: bytes | None) -> Grant | Refusal:
        """AWS IoT's CONNECT check for a TLS client (the registry is read off the event loop)."""
        if certificate_der is None or self.registry is None:
            return Refusal("", iot_policy.CONNECT, self.arns.client(client_id), "no client certificate")
        certificate_id = certificate_id_of_der(certificate_der)
        registered = await asyncio.to_thread(self.registry.lookup, certificate_id)
        for problem in registered.problems if registered is not None else ():
            log.warning("NOT APPLIED   %s (certificate %s): %s", client_id, certificate_id[:12], problem)
        return authorize_connect(registered, certificate_id, client_id, self.arns)

    # ---- what the broker reports ----
    async def connect_failed(self, client_id: str, principal: str, ip_address: str) -> None:
        if lifecycle.has_lifecycle_events(client_id):
            topic, event = lifecycle.connect_failed_event(client_id, principal, ip_address, now_ms())
            await self.publish(topic, json.dumps(event).encode())

    async def client_connected(self, connection: Connection, ip_address: str) -> None:
        log.info("connected     %s (keep-alive %ss)", connection.client_id, connection.keep_alive)
        if lifecycle.has_lifecycle_events(connection.client_id):
            topic, event = lifecycle.connected_event(
                connection.client_id,
                connection.session_id,
                connection.principal,
                ip_address,
                now_ms(),
                self.versions.next(connection.client_id),
            )
            await self.publish(topic, json.dumps(event).encode())

    async def client_disconnected(self, connection: Connection, reason: str) -> None:
        log.info("disconnected  %s %s", connection.client_id, reason)
        if lifecycle.has_lifecycle_events(connection.client_id):
            topic, event = lifecycle.disconnected_event(
                connection.client_id,
                connection.session_id,
                connection.principal,
                reason,
                now_ms(),
                self.versions.next(connection.client_id),
            )
            await self.publish(topic, json.dumps(event).encode())

    async def on_message(self, topic: str, payload: bytes, client_id: str | None) -> None:
        """Every message the broker carries: serve shadow requests, then run the rules."""
        if not topic.startswith("$aws/events/") and "/shadow/" not in topic:
            log.info("publish       %s %s", topic, _preview(payload))
        request = parse_request_topic(topic)
        if request is not None:
            try:
                await self.shadow_request(request.operation, request.thing, request.name, payload)
            except ShadowRejectedError:
                pass  # already answered on the /rejected topic
        if self.rules is not None:
            await self.rules.on_message(topic, payload, client_id, now_ms())

    # ---- publishing and shadows (called on the event loop) ----
    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish as AWS IoT itself (rules, shadows, iot-data): subscribers get it, rules see it."""
        if self.broker is None:
            raise RuntimeError("the broker is not running")
        await self.broker.internal_message_broadcast(topic, payload)
        if retain:
            await self.broker.retain_message(None, topic, payload, qos)

    async def shadow_request(self, operation: str, thing: str, name: str | None, payload: bytes) -> dict[str, Any]:
        """Serve one shadow request, publish AWS's response topics, return the accepted document."""
        named = f"/name/{name}" if name else ""
        prefix = f"$aws/things/{thing}/shadow{named}/{operation}"
        timestamp = int(time.time())
        try:
            if operation == "update":
                result: UpdateResult = self.shadows.update(thing, name, payload, timestamp)
                log.info("shadow        %s%s v%s %s", thing, named, result.accepted["version"], _preview(payload))
                await self.publish(f"{prefix}/accepted", json.dumps(result.accepted).encode())
                await self.publish(f"{prefix}/documents", json.dumps(result.documents).encode())
                if result.delta is not None:
                    await self.publish(f"{prefix}/delta", json.dumps(result.delta).encode())
                return result.accepted
            token = client_token_of(payload)
            if operation == "get":
                document = self.shadows.get(thing, name, timestamp, token)
            else:
                document = self.shadows.delete(thing, name, timestamp, token)
            await self.publish(f"{prefix}/accepted", json.dumps(document).encode())
            return document
        except ShadowRejectedError as error:
            log.info("shadow        %s%s %s rejected: %s %s", thing, named, operation, error.code, error.message)
            await self.publish(f"{prefix}/rejected", json.dumps(error.document(timestamp)).encode())
            raise

    # ---- thread-safe entry points (the iot-data HTTP endpoint runs in threads) ----
    def _call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        if self.loop is None:
            raise RuntimeError("the broker is not running")
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def publish_threadsafe(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self._call(self.publish(topic, payload, qos, retain))

    def shadow_threadsafe(self, operation: str, thing: str, name: str | None, payload: bytes) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.shadow_request(operation, thing, name, payload))
        return result


def _preview(payload: bytes, limit: int = 160) -> str:
    text = payload.decode(errors="replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."
