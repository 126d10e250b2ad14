"""Presence state in DynamoDB: one item per client id, every write conditional.

The conditions are `gasmon.presence.apply_event` and `can_claim` written as DynamoDB condition
expressions, so two Lambda invocations racing on the same device still agree:

- an event is applied only if its `order_key` sorts after the stored `event_order` (the key is
  zero-padded text, so DynamoDB's string `<` orders it like the domain does);
- a connect that loses (it arrived after its own session's disconnect) still records when that
  session started;
- a notice (`alert`, `reconnect`) is claimed by writing `<kind>_episode` and `<kind>_claim` under
  the same conditions `can_claim` checks, and marked sent only by the claim's holder.

A device's item keeps its latest episode only, so each disconnect alert that goes out is also
kept as an item of its own, `client_id` = `alert#<client id>#<episode id>` (written once, then
given `reconnected_at_ms` when the "reconnected" e-mail of that episode goes out; DynamoDB's TTL
removes it after `ALERT_HISTORY_DAYS` through `expires_at`), for the dashboard's list of
disconnect alerts. Such an item has no `status`, so it is never read as a
device's state.

The boto3 client is created on first use and honours the standard endpoint settings
(`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`), which is how the local stack and moto reach it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from gasmon.adapters.aws import aws_client
from gasmon.adapters.presence_items import alert_history_key
from gasmon.errors import PresenceStoreError
from gasmon.presence import order_key
from gasmon.presence_models import (
    LifecycleEvent,
    NoticeClaim,
    NoticeKind,
    PresenceState,
    RecordOutcome,
    datetime_from_ms,
    ms_from_datetime,
)

_CONDITION_FAILED = "ConditionalCheckFailedException"
ALERT_HISTORY_DAYS = 90
log = logging.getLogger(__name__)


class _Expression:
    """Builds an update with `#name`/`:value` placeholders for every attribute (no reserved-word traps)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, Any]] = {}

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, label: str, value: str | int | bool) -> str:
        placeholder = f":{label}"
        if isinstance(value, bool):
            self.values[placeholder] = {"BOOL": value}
        elif isinstance(value, int):
            self.values[placeholder] = {"N": str(value)}
        else:
            self.values[placeholder] = {"S": value}
        return placeholder

    def update(self, attributes: dict[str, str | int | bool | None]) -> str:
        """`SET` the attributes that have a value, `REMOVE` those that are None."""
        sets = [f"{self.name(k)} = {self.value(k, v)}" for k, v in attributes.items() if v is not None]
        removes = [self.name(k) for k, v in attributes.items() if v is None]
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        return expression


def _plain(value: dict[str, Any]) -> Any:
    """One DynamoDB attribute value as Python (only the types this table uses)."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        number = Decimal(value["N"])
        return int(number) if number == number.to_integral_value() else float(number)
    if "BOOL" in value:
        return bool(value["BOOL"])
    if "NULL" in value:
        return None
    raise PresenceStoreError(f"unexpected attribute type in the presence table: {sorted(value)}")


def _time(item: dict[str, Any], attribute: str) -> datetime | None:
    value = item.get(attribute)
    return None if value is None else datetime_from_ms(int(value))


def _claim(item: dict[str, Any], kind: NoticeKind) -> NoticeClaim | None:
    episode = item.get(f"{kind}_episode")
    claimed_at = _time(item, f"{kind}_claimed_at_ms")
    if episode is None or claimed_at is None:
        return None
    return NoticeClaim(
        episode_id=episode,
        token=str(item.get(f"{kind}_claim", "")),
        claimed_at=claimed_at,
        sent_at=_time(item, f"{kind}_sent_at_ms"),
    )


def state_from_item(raw: dict[str, Any]) -> PresenceState:
    """A presence-table item (low-level attribute values) as a `PresenceState`."""
    item = {key: _plain(value) for key, value in raw.items()}
    try:
        return PresenceState(
            client_id=item["client_id"],
            thing_name=item.get("thing_name") or item["client_id"],
            status=item["status"],
            event_order=item["event_order"],
            event_at=datetime_from_ms(int(item["event_at_ms"])),
            session_id=item.get("session_id"),
            ip_address=item.get("ip_address"),
            connected_at=_time(item, "connected_at_ms"),
            connected_session=item.get("connected_session"),
            disconnected_at=_time(item, "disconnected_at_ms"),
            disconnect_reason=item.get("disconnect_reason"),
            client_initiated=item.get("client_initiated"),
            episode_id=item.get("episode_id"),
            alert=_claim(item, "alert"),
            reconnect=_claim(item, "reconnect"),
        )
    except (KeyError, ValidationError) as exc:
        raise PresenceStoreError(f"a presence item is not in the expected shape: {exc}") from exc


class DynamoDbPresenceRepository:
    """A `PresenceRepository` on one DynamoDB table whose partition key is `client_id` (S)."""

    def __init__(self, table_name: str, region: str | None = None, client: Any = None) -> None:
        self.table_name = table_name
        self.region = region
        self._client: Any = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("dynamodb", self.region)
        return self._client

    def _key(self, client_id: str) -> dict[str, Any]:
        return {"client_id": {"S": client_id}}

    def _update(self, client_id: str, expression: _Expression, update: str, condition: str) -> dict[str, Any] | None:
        """Run one conditional update; the new item, or None when the condition did not hold."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(client_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=expression.names,
                ExpressionAttributeValues=expression.values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return None
            raise PresenceStoreError(f"presence table {self.table_name}: {exc}") from exc
        except BotoCoreError as exc:
            raise PresenceStoreError(f"presence table {self.table_name}: {exc}") from exc
        attributes: dict[str, Any] = answer.get("Attributes", {})
        return attributes

    def record(self, event: LifecycleEvent, now: datetime) -> RecordOutcome:
        """Apply the event if it is newer than the stored one; say whether it was, and the state."""
        key = order_key(event)
        attributes: dict[str, str | int | bool | None] = {
            "status": event.event_type,
            "event_order": key,
            "event_at_ms": event.timestamp,
            "version_number": event.version_number,
            "session_id": event.session_identifier,
            "principal_id": event.principal_identifier,
            "thing_name": event.device_name,
            "updated_at_ms": ms_from_datetime(now),
        }
        if event.event_type == "connected":
            attributes |= {
                "ip_address": event.ip_address,
                "connected_at_ms": event.timestamp,
                "connected_session": event.session_identifier,
            }
        else:
            attributes |= {
                "disconnected_at_ms": event.timestamp,
                "disconnect_reason": event.disconnect_reason,
                "client_initiated": event.client_initiated_disconnect,
                "episode_id": key,
            }
        expression = _Expression()
        update = expression.update(attributes)
        condition = (
            f"attribute_not_exists({expression.name('client_id')})"
            f" OR {expression.name('event_order')} < {expression.value('order', key)}"
        )
        item = self._update(event.client_id, expression, update, condition)
        if item is not None:
            return RecordOutcome(applied=True, state=state_from_item(item))

        if event.event_type == "connected" and event.session_identifier is not None:
            late = self._note_session_start(event.client_id, event.session_identifier, event.timestamp)
            if late is not None:
                return RecordOutcome(applied=False, state=late)
        state = self.get(event.client_id)
        if state is None:  # the condition failed, so the item existed a moment ago
            raise PresenceStoreError(f"presence item for {event.client_id} vanished during an update")
        return RecordOutcome(applied=False, state=state)

    def _note_session_start(self, client_id: str, session_id: str, timestamp: int) -> PresenceState | None:
        """A connect that arrived after its own session's disconnect: keep when the session began."""
        expression = _Expression()
        update = expression.update({"connected_at_ms": timestamp, "connected_session": session_id})
        session = expression.value("session", session_id)
        connected_session = expression.name("connected_session")
        condition = (
            f"{expression.name('session_id')} = {session}"
            f" AND (attribute_not_exists({connected_session}) OR {connected_session} <> {session})"
        )
        item = self._update(client_id, expression, update, condition)
        return None if item is None else state_from_item(item)

    def get(self, client_id: str) -> PresenceState | None:
        """The stored state (strongly consistent read), or None."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_item(TableName=self.table_name, Key=self._key(client_id), ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise PresenceStoreError(f"presence table {self.table_name}: {exc}") from exc
        item = answer.get("Item")
        return None if not item else state_from_item(item)

    def claim_notice(
        self,
        kind: NoticeKind,
        client_id: str,
        episode_id: str,
        token: str,
        now: datetime,
        stale_before: datetime,
    ) -> bool:
        """Claim one kind of email for one episode, under the same rule as `can_claim`."""
        expression = _Expression()
        update = expression.update(
            {
                f"{kind}_episode": episode_id,
                f"{kind}_claim": token,
                f"{kind}_claimed_at_ms": ms_from_datetime(now),
                f"{kind}_sent_at_ms": None,
            }
        )
        episode = expression.value("episode", episode_id)
        if kind == "alert":
            precondition = (
                f"{expression.name('status')} = {expression.value('disconnected', 'disconnected')}"
                f" AND {expression.name('episode_id')} = {episode}"
            )
        else:
            precondition = f"{expression.name('alert_episode')} = {episode}"
        claimed_episode = expression.name(f"{kind}_episode")
        stale = expression.value("stale", ms_from_datetime(stale_before))
        free = (
            f"attribute_not_exists({claimed_episode}) OR {claimed_episode} <> {episode}"
            f" OR (attribute_not_exists({expression.name(f'{kind}_sent_at_ms')})"
            f" AND ({expression.name(f'{kind}_claim')} = {expression.value('token', token)}"
            f" OR {expression.name(f'{kind}_claimed_at_ms')} < {stale}))"
        )
        condition = f"attribute_exists({expression.name('client_id')}) AND {precondition} AND ({free})"
        return self._update(client_id, expression, update, condition) is not None

    def mark_notice_sent(self, kind: NoticeKind, client_id: str, episode_id: str, token: str, now: datetime) -> None:
        """Record the email as sent, if `token` still holds the claim (else leave it alone)."""
        expression = _Expression()
        update = expression.update({f"{kind}_sent_at_ms": ms_from_datetime(now)})
        condition = (
            f"{expression.name(f'{kind}_episode')} = {expression.value('episode', episode_id)}"
            f" AND {expression.name(f'{kind}_claim')} = {expression.value('token', token)}"
        )
        item = self._update(client_id, expression, update, condition)
        if not item:
            return
        try:
            plain = {key: _plain(value) for key, value in item.items()}
            if kind == "alert":
                self._keep_alert(plain, now)
            else:
                self._note_return(plain)
        except PresenceStoreError as exc:  # the e-mail went out and is marked; the list can miss it
            log.warning("%s of %s not kept in the alert history: %s", kind, client_id, exc)

    def _keep_alert(self, item: dict[str, Any], now: datetime) -> None:
        """Write the alerted episode as an item of its own (once; a replay changes nothing)."""
        client_id, episode_id = str(item["client_id"]), str(item["alert_episode"])
        fields: dict[str, str | int | bool | None] = {
            "device": client_id,
            "episode_id": episode_id,
            "alerted_at_ms": ms_from_datetime(now),
            "expires_at": int((now + timedelta(days=ALERT_HISTORY_DAYS)).timestamp()),
        }
        if item.get("episode_id") == episode_id:  # the state still describes the alerted episode
            for name in ("disconnected_at_ms", "disconnect_reason", "thing_name"):
                if item.get(name) is not None:
                    fields[name] = int(item[name]) if name.endswith("_ms") else str(item[name])
        expression = _Expression()
        update = expression.update(fields)
        condition = f"attribute_not_exists({expression.name('client_id')})"
        self._update(alert_history_key(client_id, episode_id), expression, update, condition)

    def _note_return(self, item: dict[str, Any]) -> None:
        """A "reconnected" e-mail went out: the kept alert of that episode learns when it ended."""
        connected_at_ms = item.get("connected_at_ms")
        if connected_at_ms is None:
            return
        key = alert_history_key(str(item["client_id"]), str(item["reconnect_episode"]))
        expression = _Expression()
        update = expression.update({"reconnected_at_ms": int(connected_at_ms)})
        condition = f"attribute_exists({expression.name('client_id')})"
        self._update(key, expression, update, condition)
