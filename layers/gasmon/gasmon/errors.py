"""Exceptions that carry a code and a message a person can act on.

Each maps to one HTTP status in the handlers; none of them is ever a 500.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the models (pydantic) load with the first request that needs them, not with this
    from gasmon.models import Problem


class GasmonError(Exception):
    """Base class: `code` is stable for programs, `message` is for people."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class MalformedJsonError(GasmonError):
    status = 400
    code = "malformed_json"


class RequestTooLargeError(GasmonError):
    status = 413
    code = "request_too_large"


class InvalidReadingsError(GasmonError):
    status = 422
    code = "invalid_readings"


class StoreUnavailableError(GasmonError):
    """The reading store is down or throttling: the client should retry later."""

    status = 503
    code = "store_unavailable"

    def __init__(self, message: str, retry_after_seconds: int = 5) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ArchiveUnavailableError(StoreUnavailableError):
    """The reading archive did not take the readings: nothing was stored, the client retries."""

    code = "archive_unavailable"


class EffectsPendingError(StoreUnavailableError):
    """Readings were stored but a warning or alarm message they owe is not published yet (503).

    The device retries the same POST: its readings come back as duplicates and the retry
    publishes what is still owed (see `gasmon.ingest.ingest`).
    """

    code = "warnings_pending"


class PublishError(Exception):
    """A message could not be handed to the MQTT broker (AWS IoT Core or the local one)."""


class MalformedEventError(GasmonError):
    """An incoming event (IoT lifecycle event, queue message) is not what gasmon expects.

    It is logged and dropped: retrying a malformed event can only fail again.
    """

    code = "malformed_event"


class PresenceStoreError(Exception):
    """The presence table could not be read or written (throttling, network, permissions)."""


class SchedulingError(Exception):
    """A presence check could not be put on the check queue."""


class NotifyError(Exception):
    """A notification email could not be handed to SNS."""


# ---- Alarms ----


class AlarmConflictError(Exception):
    """Another request changed an alarm state between our read and our write: re-read, re-apply."""


class AlarmStoreUnavailableError(Exception):
    """The alarm state table cannot be read or written now (throttled, down, or misconfigured)."""


class InvalidAlarmQueryError(GasmonError):
    """A query of the alarm history asked for something it cannot answer (bad cursor or limit)."""

    status = 400
    code = "invalid_alarm_query"


class InvalidQueryError(GasmonError):
    """A query parameter is out of range, inconsistent with another, or a cursor is not ours."""

    status = 422
    code = "invalid_query"


# ---- Identity ----


class ForbiddenError(GasmonError):
    """The credential may not do this: no identity from the authorizer, the wrong role, or a
    document that names another device's group or id (`details` names the field)."""

    status = 403
    code = "forbidden"


class RegistryUnavailableError(Exception):
    """The device registry cannot be read or written now."""


class TooManyRequestsError(GasmonError):
    """One device posted more often than its per-minute allowance: retry after the header's seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_seconds: int = 60) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
