"""Device connection state for the dashboard, read from presence's DynamoDB table (or nothing).

Presence (`gasmon.presence`) keeps one item per MQTT client id: the newest lifecycle event's
`status` (`connected`/`disconnected`), when the session started (`connected_at`), the last
disconnect (`disconnected_at`, `disconnect_reason`, `episode_id`) and the notice claims `alert`
and `reconnect` (`episode_id`, `claimed_at`, `sent_at`). This adapter only reads that table.
Times may be stored as epoch milliseconds or ISO-8601 text; both are accepted.

Presence keeps a device's latest episode only, so `recent_alerts` lists at most one alert per
device: the most recent one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gasmon.errors import StoreUnavailableError
from gasmon.models import DeviceStatus, DisconnectAlert

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal | int | float):
        return datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return None


def status_from_item(item: Mapping[str, Any]) -> DeviceStatus | None:
    """A presence item as the dashboard shows it, or None when it is not a device's state."""
    client_id = item.get("client_id")
    status = item.get("status")
    if not isinstance(client_id, str) or status not in ("connected", "disconnected"):
        return None
    if status == "connected":
        since = _time(item.get("connected_at")) or _time(item.get("event_at"))
        return DeviceStatus(client_id=client_id, state="online", since=since)
    since = _time(item.get("disconnected_at")) or _time(item.get("event_at"))
    reason = item.get("disconnect_reason")
    return DeviceStatus(
        client_id=client_id, state="offline", since=since, reason=reason if isinstance(reason, str) else None
    )


def alert_from_item(item: Mapping[str, Any]) -> DisconnectAlert | None:
    """The disconnect alert a presence item records (its latest episode's), if one was sent."""
    client_id = item.get("client_id")
    alert = item.get("alert")
    if not isinstance(client_id, str) or not isinstance(alert, Mapping):
        return None
    sent_at = _time(alert.get("sent_at"))
    disconnected_at = _time(item.get("disconnected_at"))
    if sent_at is None or disconnected_at is None:
        return None  # claimed but not (yet) sent: no e-mail went out
    same_episode = alert.get("episode_id") == item.get("episode_id")
    connected_at = _time(item.get("connected_at"))
    reconnected = (
        connected_at
        if item.get("status") == "connected" and connected_at is not None and connected_at > disconnected_at
        else None
    )
    reason = item.get("disconnect_reason") if same_episode else None
    return DisconnectAlert(
        client_id=client_id,
        disconnected_at=disconnected_at if same_episode else sent_at,
        alerted_at=sent_at,
        reason=reason if isinstance(reason, str) else None,
        reconnected_at=reconnected,
    )


class NullDeviceStatusSource:
    """The `DeviceStatusSource` when no presence table is configured: knows no device."""

    @property
    def configured(self) -> bool:
        return False

    def statuses(self) -> Mapping[str, DeviceStatus]:
        return {}

    def recent_alerts(
        self, since: datetime, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[DisconnectAlert]:
        return []


class DynamoDbDeviceStatusSource:
    """A `DeviceStatusSource` over presence's DynamoDB table (one Scan per call, fleet-sized)."""

    def __init__(
        self, table_name: str, region: str = "ap-northeast-2", table_factory: Callable[[], Table] | None = None
    ):
        self.table_name = table_name
        self.region = region
        self._table_factory = table_factory
        self._table: Table | None = None

    @property
    def table(self) -> Table:
        if self._table is None:
            if self._table_factory is not None:
                self._table = self._table_factory()
            else:
                import boto3

                self._table = boto3.resource("dynamodb", region_name=self.region).Table(self.table_name)
        return self._table

    @property
    def configured(self) -> bool:
        return True

    def _items(self) -> Iterator[Mapping[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {}
        try:
            while True:
                page = self.table.scan(**kwargs)
                yield from page.get("Items", [])
                last = page.get("LastEvaluatedKey")
                if not last:
                    return
                kwargs["ExclusiveStartKey"] = last
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailableError(f"the presence table cannot be read: {exc}", retry_after_seconds=5) from exc

    def statuses(self) -> Mapping[str, DeviceStatus]:
        """Every device's last recorded state, keyed by client id."""
        found = {}
        for item in self._items():
            status = status_from_item(item)
            if status is not None:
                found[status.client_id] = status
        return found

    def recent_alerts(
        self, since: datetime, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[DisconnectAlert]:
        """Sent disconnect alerts at or after `since`, newest first, keyset-paged."""
        alerts = [alert for item in self._items() if (alert := alert_from_item(item)) is not None]
        alerts = [a for a in alerts if a.disconnected_at >= since]
        if before is not None:
            alerts = [a for a in alerts if (a.disconnected_at, a.client_id) < before]
        alerts.sort(key=lambda a: (a.disconnected_at, a.client_id), reverse=True)
        return alerts[:limit]
