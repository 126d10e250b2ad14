"""The device registry in DynamoDB (`DeviceTable`): one table, one string key `pk`.

- `key#<sha256 of the key>`: a credential (`role`, `name`, `groupid`, `state`, `expires_at`).
  The authorizer's only read: one GetItem by the hash of the presented key.
- `thing#<thing name>`: a device (`groupid`, `sensors`, `location`, `key_hashes`,
  `certificate_id`, `state`, `created_at`, `last_seen`).
- `viewer#<name>`: a viewer (`key_hashes`, `state`, `created_at`).

Times are ISO-8601 strings in UTC. `gasmon-admin` writes the items through `item_of_*` below, so
the Lambda side and the admin side agree on one format.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gasmon.adapters.aws import aws_client
from gasmon.errors import RegistryUnavailableError, StoreUnavailableError
from gasmon.identity import Credential, DeviceRecord

if TYPE_CHECKING:  # presence's models are not loaded by ingest, which only counts requests here
    from gasmon.presence_models import DeviceInfo

log = logging.getLogger(__name__)
KEY_PREFIX, THING_PREFIX, VIEWER_PREFIX = "key#", "thing#", "viewer#"


def _value(attribute: Mapping[str, Any]) -> Any:
    if "S" in attribute:
        return attribute["S"]
    if "L" in attribute:
        return [_value(item) for item in attribute["L"]]
    if "SS" in attribute:
        return sorted(attribute["SS"])
    if "N" in attribute:
        return attribute["N"]
    if "NULL" in attribute:
        return None
    return None


def _attribute(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, list):
        return {"L": [_attribute(item) for item in value]}
    if isinstance(value, datetime):
        return {"S": value.isoformat()}
    return {"S": str(value)}


def to_item(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A low-level DynamoDB item from plain values (strings, times, lists of strings, None)."""
    return {name: _attribute(value) for name, value in fields.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _value(attribute) for name, attribute in item.items()}


def item_of_credential(credential: Credential) -> dict[str, Any]:
    fields = {"pk": KEY_PREFIX + credential.key_hash, **credential.model_dump(exclude={"key_hash"})}
    return to_item({name: value for name, value in fields.items() if value is not None})


def credential_of_item(item: Mapping[str, Any]) -> Credential:
    fields = from_item(item)
    return Credential.model_validate({**fields, "key_hash": str(fields.pop("pk")).removeprefix(KEY_PREFIX)})


def item_of_device(device: DeviceRecord) -> dict[str, Any]:
    fields = {"pk": THING_PREFIX + device.thing, **device.model_dump()}
    return to_item({name: value for name, value in fields.items() if value is not None})


def device_of_item(item: Mapping[str, Any]) -> DeviceRecord:
    fields = from_item(item)
    fields.pop("pk", None)
    return DeviceRecord.model_validate(fields)


MAX_BATCH_KEYS = 100  # DynamoDB's BatchGetItem limit


class DynamoDbDeviceRegistry:
    """The `DeviceRegistry` port over `DeviceTable` (reads, plus the authorizer's last-seen touch)."""

    def __init__(self, table: str, region: str | None = None, client: Any = None) -> None:
        self.table = table
        self.region = region
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("dynamodb", self.region)
        return self._client

    def _get(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_item(TableName=self.table, Key={"pk": {"S": key}})
        except (BotoCoreError, ClientError) as exc:
            raise RegistryUnavailableError(f"device registry {self.table}: {exc}") from exc
        item = answer.get("Item")
        return dict(item) if item else None

    def credential(self, key_hash: str) -> Credential | None:
        """One GetItem by the key's hash (eventually consistent: revocations show within ~1 s)."""
        item = self._get(KEY_PREFIX + key_hash)
        return credential_of_item(item) if item else None

    def device(self, thing: str) -> DeviceRecord | None:
        item = self._get(THING_PREFIX + thing)
        return device_of_item(item) if item else None

    def devices_named(self, things: Sequence[str]) -> dict[str, DeviceRecord]:
        """One BatchGetItem of up to 100 `thing#` items (what one /devices page shows); keys the
        first answer left unprocessed are asked once more, then reported unavailable."""
        from botocore.exceptions import BotoCoreError, ClientError

        names = list(dict.fromkeys(things))[:MAX_BATCH_KEYS]
        if not names:
            return {}
        request = {self.table: {"Keys": [{"pk": {"S": THING_PREFIX + name}} for name in names]}}
        found: dict[str, DeviceRecord] = {}
        for _ in range(2):
            try:
                answer = self.client.batch_get_item(RequestItems=request)
            except (BotoCoreError, ClientError) as exc:
                raise StoreUnavailableError(f"device registry {self.table}: {exc}", retry_after_seconds=2) from exc
            for item in answer.get("Responses", {}).get(self.table, []):
                record = device_of_item(item)
                found[record.thing] = record
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise StoreUnavailableError(f"device registry {self.table} is throttling reads", retry_after_seconds=2)

    def touch(self, thing: str, now: datetime) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": THING_PREFIX + thing}},
                UpdateExpression="SET last_seen = :now",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":now": {"S": now.isoformat()}},
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not record last_seen of %s: %s", thing, exc)


class RegistryDeviceDirectory:
    """A presence `DeviceDirectory` that names a device from the registry (group, location),
    falling back to another directory (its readings) for devices the registry does not know."""

    def __init__(self, registry: DynamoDbDeviceRegistry, fallback: Any = None) -> None:
        self.registry = registry
        self.fallback = fallback

    def describe(self, client_id: str, thing_name: str) -> DeviceInfo | None:
        """The registry's group and location for the thing (or client id); else the fallback's."""
        from_readings = self.fallback.describe(client_id, thing_name) if self.fallback is not None else None
        for name in dict.fromkeys([thing_name, client_id]):
            try:
                device = self.registry.device(name)
            except RegistryUnavailableError as exc:
                log.warning("device registry unavailable for %s: %s", name, exc)
                break
            if device is not None:
                last = from_readings.last_reading_at if from_readings is not None else None
                gps = device.location or (from_readings.gps if from_readings is not None else None)
                from gasmon.presence_models import DeviceInfo

                return DeviceInfo(groupid=device.groupid, gps=gps, last_reading_at=last)
        return from_readings


RATE_PREFIX = "rate#"


class DynamoDbRateLimiter:
    """The `RateLimiter` port: a fixed one-minute window per device, counted by one conditional
    UpdateItem on `rate#<name>#<minute>` in the registry table (the item expires by TTL)."""

    def __init__(self, table: str, per_minute: int, region: str | None = None, client: Any = None) -> None:
        self.table = table
        self.per_minute = per_minute
        self.region = region
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("dynamodb", self.region)
        return self._client

    def allow(self, name: str, now: datetime) -> bool:
        minute = int(now.timestamp()) // 60
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"{RATE_PREFIX}{name}#{minute}"}},
                UpdateExpression="ADD requests :one SET expires_at_epoch = :expires",
                ConditionExpression="attribute_not_exists(requests) OR requests < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(self.per_minute)},
                    ":expires": {"N": str((minute + 2) * 60)},
                },
            )
        except Exception as exc:
            # botocore's exceptions are imported only when a call fails (not on a cold POST's path).
            from botocore.exceptions import BotoCoreError, ClientError

            if isinstance(exc, ClientError):
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    return False
            elif not isinstance(exc, BotoCoreError):
                raise
            log.warning("rate limiter unavailable, %s not throttled: %s", name, exc)
        return True
