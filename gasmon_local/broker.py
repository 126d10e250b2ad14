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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import BaseContext
from amqtt.errors import BrokerError
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin
from amqtt.session import Session

from gasmon_local import lifecycle
from gasmon_local.rules import RuleEngine
from gasmon_local.shadows import ShadowRejectedError, ShadowStore, UpdateResult, client_token_of, parse_request_topic

log = logging.getLogger("mqtt")
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


@dataclass
class Connection:
    """One live MQTT connection as the lifecycle events describe it."""

    client_id: str
    handler: BrokerProtocolHandler
    session: Session
    session_id: str
    principal: str
    keep_alive: int
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
        connection = Connection(
            client_id=client_id,
            handler=handler,
            session=client_session,
            session_id=session_id,
            principal=client_session.username or "anonymous",
            keep_alive=client_session.keep_alive,
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
        if topic is not None and data is not None and not self.shutting_down:
            await self.core.on_message(topic, bytes(data), session.client_id if session else None)

    @property
    def port(self) -> int:
        server = self._servers["default"].instance
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else 0


class IotCore:
    """The broker plus the services AWS IoT Core runs beside it: lifecycle events, shadows, rules."""

    def __init__(
        self,
        shadows: ShadowStore,
        versions: lifecycle.VersionCounter,
        host: str = "127.0.0.1",
        port: int = 1883,
    ) -> None:
        self.shadows = shadows
        self.versions = versions
        self.host = host
        self.requested_port = port
        self.rules: RuleEngine | None = None
        self.broker: IotBroker | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        return self.broker.port if self.broker is not None else self.requested_port

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.requested_port}"}},
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
            raise OSError(f"MQTT broker cannot listen on {self.host}:{self.requested_port}: {exc}") from None

    async def stop(self) -> None:
        if self.broker is not None:
            await self.broker.shutdown()

    # ---- what the broker reports ----
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
