"""The presence models: the IoT lifecycle event, the Last Will, the check, the state, the email.

Apart from gasmon.models so that the ingest and query functions do not build them at cold start.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from gasmon.models import SAFE_ID_PATTERN, GasmonModel

# AWS IoT client ids and thing names reach table keys (`alert#<client id>#<episode>`) and e-mails:
# the safe id alphabet, up to AWS IoT's 128 characters. gasmon's devices connect as their thing
# name (`[A-Za-z0-9:_-]`), so only a foreign client's event, with `#`, `/` or `$` in its id, is
# dropped as malformed instead of writing a key that could pose as another device's item.
DeviceName = Annotated[str, Field(min_length=1, max_length=128, pattern=SAFE_ID_PATTERN)]

# ---- Presence --------------------------------------------------------------------------------
# The AWS IoT lifecycle event (`$aws/events/presence/{connected,disconnected}/<clientId>`), the
# Last Will message of seed 001, the presence check put on the SQS delay queue, the state kept
# per client id, and the email sent through SNS.

PresenceStatus = Literal["connected", "disconnected"]
NoticeKind = Literal["alert", "reconnect"]


class LifecycleEvent(GasmonModel):
    """One AWS IoT connect/disconnect lifecycle event, as the IoT rule's `SELECT *` hands it over.

    Field names follow AWS (`clientId`, `sessionIdentifier`, ...); `timestamp` is epoch
    milliseconds. Only disconnect events carry `clientInitiatedDisconnect` and
    `disconnectReason`; only connect events carry `ipAddress`. `thingName` is present only for
    clients using AWS IoT's exclusive-thing feature.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True)

    client_id: DeviceName = Field(alias="clientId")
    timestamp: int = Field(ge=0, le=10**15, description="epoch milliseconds")
    event_type: Literal["connected", "disconnected"] = Field(alias="eventType")
    version_number: int = Field(default=0, alias="versionNumber", ge=0)
    session_identifier: str | None = Field(default=None, alias="sessionIdentifier", max_length=256)
    principal_identifier: str | None = Field(default=None, alias="principalIdentifier", max_length=512)
    client_initiated_disconnect: bool | None = Field(default=None, alias="clientInitiatedDisconnect")
    disconnect_reason: str | None = Field(default=None, alias="disconnectReason", min_length=1, max_length=64)
    ip_address: str | None = Field(default=None, alias="ipAddress", max_length=64)
    thing_name: DeviceName | None = Field(default=None, alias="thingName")

    @field_validator("timestamp", "version_number", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a whole number, not a boolean")
        return value

    @field_validator("disconnect_reason", mode="before")
    @classmethod
    def _reason_upper_case(cls, value: Any) -> Any:
        # AWS sends upper-case names (CONNECTION_LOST); a local broker may not.
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def occurred_at(self) -> datetime:
        return datetime_from_ms(self.timestamp)

    @property
    def device_name(self) -> str:
        """The thing name when AWS IoT sent one, else the client id (gasmon's device policy makes
        a device connect under its thing name, so the two are the same)."""
        return self.thing_name or self.client_id


def datetime_from_ms(milliseconds: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=milliseconds)


def ms_from_datetime(moment: datetime) -> int:
    """An aware datetime as epoch milliseconds (the inverse of `datetime_from_ms`)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LastWillMessage(GasmonModel):
    """The Last Will the Pi registers (seed 001): `{"state":{"reported":{"connected":"false"}}}`
    on `my/things/<thing>/update`, republished by an IoT rule into the thing's shadow."""

    class _State(GasmonModel):
        model_config = ConfigDict(extra="allow", frozen=True)
        reported: dict[str, Any]

    model_config = ConfigDict(extra="forbid", frozen=True)
    state: _State


class NoticeClaim(GasmonModel):
    """Who is sending (or has sent) one kind of email for one disconnect episode."""

    model_config = ConfigDict(frozen=True)

    episode_id: str
    token: str
    claimed_at: datetime
    sent_at: datetime | None = None


class PresenceState(GasmonModel):
    """What gasmon knows about one client id: the newest lifecycle event applied, when its current
    (or last) session started, its last disconnect (the current episode) and the notices claimed."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    thing_name: str
    status: PresenceStatus
    event_order: str
    event_at: datetime
    session_id: str | None = None
    ip_address: str | None = None
    connected_at: datetime | None = None
    connected_session: str | None = None
    disconnected_at: datetime | None = None
    disconnect_reason: str | None = None
    client_initiated: bool | None = None
    episode_id: str | None = None
    alert: NoticeClaim | None = None
    reconnect: NoticeClaim | None = None


class RecordOutcome(GasmonModel):
    """What recording one lifecycle event did: whether it moved the state, and the state now."""

    model_config = ConfigDict(frozen=True)

    applied: bool
    state: PresenceState


class CheckRequest(GasmonModel):
    """The body of a message on the presence-check queue: "look at this device again at `due_at`"."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    client_id: DeviceName
    thing_name: DeviceName
    episode_id: str = Field(min_length=1, max_length=128)
    disconnected_at_ms: int = Field(ge=0)
    due_at_ms: int = Field(ge=0)
    reason: str | None = None

    @property
    def due_at(self) -> datetime:
        return datetime_from_ms(self.due_at_ms)


class DeviceInfo(GasmonModel):
    """What gasmon's readings say about a device: its group and where it is."""

    model_config = ConfigDict(frozen=True)

    groupid: str
    gps: str | None = None
    last_reading_at: datetime | None = None


class Email(GasmonModel):
    """One notification email. SNS wants the subject in printable ASCII and under 100 characters,
    so the subject is made safe here rather than rejected."""

    model_config = ConfigDict(frozen=True)

    subject: str = Field(min_length=1, max_length=99)
    body: str = Field(min_length=1)

    @field_validator("subject", mode="before")
    @classmethod
    def _sns_safe_subject(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = "".join(ch if " " <= ch <= "~" else "?" for ch in value).strip()
            if len(value) > 99:
                value = value[:96].rstrip() + "..."
        return value
