"""Device connection state for the dashboard, read from presence's DynamoDB table (or nothing).

Presence (`gasmon.adapters.dynamodb_presence`) keeps one item per MQTT
client id with flat attributes: `status` (`connected`/`disconnected`), `thing_name`,
`event_at_ms`, `connected_at_ms`, `disconnected_at_ms`, `disconnect_reason`, `episode_id`, and
per notice kind `alert_episode`, `alert_claimed_at_ms`, `alert_sent_at_ms` (epoch ms numbers).
This adapter only reads that table, with one Scan per call (the table has one item per device).

A device's item describes its latest episode; every alert that went out is also kept as an item
of its own (`client_id` = `alert#<client id>#<episode id>`, see `dynamodb_presence`), so
`recent_alerts` lists each alert in the window: the latest from the device's item (with its
reconnect time), the earlier ones from their own items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gasmon.adapters.presence_items import ALERT_HISTORY_PREFIX
from gasmon.errors import StoreUnavailableError
from gasmon.query_models import DeviceStatus, DisconnectAlert

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Scan pages one call reads (1 MB each, thousands of devices per page): the bound on the work one
# GET /devices or /alerts causes in this table, whatever the fleet's history has left in it.
MAX_SCAN_PAGES = 8


def _time(item: Mapping[str, Any], attribute: str) -> datetime | None:
    value = item.get(attribute)
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return _EPOCH + timedelta(milliseconds=int(value))
    return None


def _text(item: Mapping[str, Any], attribute: str) -> str | None:
    value = item.get(attribute)
    return value if isinstance(value, str) and value else None


def status_from_item(item: Mapping[str, Any]) -> DeviceStatus | None:
    """A presence item as the dashboard shows it, or None when it is not a device's state."""
    client_id = _text(item, "client_id")
    status = item.get("status")
    if client_id is None or status not in ("connected", "disconnected"):
        return None
    if status == "connected":
        since = _time(item, "connected_at_ms") or _time(item, "event_at_ms")
        return DeviceStatus(client_id=client_id, state="online", since=since)
    since = _time(item, "disconnected_at_ms") or _time(item, "event_at_ms")
    return DeviceStatus(client_id=client_id, state="offline", since=since, reason=_text(item, "disconnect_reason"))


def kept_alert_from_item(item: Mapping[str, Any]) -> tuple[str, DisconnectAlert] | None:
    """(episode id, alert) of an alert-history item, or None when the item is not one."""
    key, device, episode = _text(item, "client_id"), _text(item, "device"), _text(item, "episode_id")
    alerted_at = _time(item, "alerted_at_ms")
    if not (key or "").startswith(ALERT_HISTORY_PREFIX) or not device or not episode or alerted_at is None:
        return None
    alert = DisconnectAlert(
        client_id=device,
        disconnected_at=_time(item, "disconnected_at_ms") or alerted_at,
        alerted_at=alerted_at,
        reason=_text(item, "disconnect_reason"),
        reconnected_at=_time(item, "reconnected_at_ms"),
    )
    return episode, alert


def alert_from_item(item: Mapping[str, Any]) -> DisconnectAlert | None:
    """The disconnect alert a device's item records (its latest episode's), if one was sent."""
    client_id = _text(item, "client_id")
    sent_at = _time(item, "alert_sent_at_ms")
    if client_id is None or client_id.startswith(ALERT_HISTORY_PREFIX) or sent_at is None:
        return None  # never alerted, or claimed but not sent: no e-mail went out
    same_episode = item.get("alert_episode") == item.get("episode_id")
    disconnected_at = _time(item, "disconnected_at_ms") if same_episode else None
    connected_at = _time(item, "connected_at_ms")
    back = item.get("status") == "connected" and connected_at is not None
    return DisconnectAlert(
        client_id=client_id,
        # A later episode replaced the alerted one's times: the alert's own time is what is left.
        disconnected_at=disconnected_at or sent_at,
        alerted_at=sent_at,
        reason=_text(item, "disconnect_reason") if same_episode else None,
        reconnected_at=connected_at if back and same_episode else None,
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
        self.requests = 0  # Scan round trips, for the tests that pin the bound

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
            for _ in range(MAX_SCAN_PAGES):
                self.requests += 1
                page = self.table.scan(**kwargs)
                yield from page.get("Items", [])
                last = page.get("LastEvaluatedKey")
                if not last:
                    return
                kwargs["ExclusiveStartKey"] = last
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailableError(f"the presence table cannot be read: {exc}", retry_after_seconds=5) from exc

    def statuses(self) -> Mapping[str, DeviceStatus]:
        """Every device's last recorded state, keyed by client id (and by thing name if it differs)."""
        found: dict[str, DeviceStatus] = {}
        for item in self._items():
            status = status_from_item(item)
            if status is not None:
                found[status.client_id] = status
                thing = _text(item, "thing_name")
                if thing and thing != status.client_id:
                    found.setdefault(thing, status)
        return found

    def recent_alerts(
        self, since: datetime, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[DisconnectAlert]:
        """Sent disconnect alerts at or after `since`, newest first, keyset-paged."""
        # One alert per (client id, episode): a device's own item wins while it still describes
        # the alerted episode (it knows the reconnect); once it has moved on, the kept item does.
        kept: dict[tuple[str, str], DisconnectAlert] = {}
        current: dict[tuple[str, str], tuple[DisconnectAlert, bool]] = {}
        for item in self._items():
            if (alert := alert_from_item(item)) is not None:
                episode = str(item.get("alert_episode"))
                current[(alert.client_id, episode)] = (alert, item.get("episode_id") == episode)
            elif (found := kept_alert_from_item(item)) is not None:
                episode, alert = found
                kept[(alert.client_id, episode)] = alert
        by_episode = dict(kept)
        for key, (alert, describes_it) in current.items():
            if describes_it or key not in by_episode:
                by_episode[key] = alert
        alerts = [a for a in by_episode.values() if a.disconnected_at >= since]
        if before is not None:
            alerts = [a for a in alerts if (a.disconnected_at, a.client_id) < before]
        alerts.sort(key=lambda a: (a.disconnected_at, a.client_id), reverse=True)
        return alerts[:limit]
