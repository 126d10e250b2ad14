"""Posting a batch of queued documents to the ingest API and saying, per document, what became of it.

The sender only classifies the answer; what to do about it (delete, set aside, retry later) is
decided by `gasmon_device.publisher.plan_outcome`, which can be tested without a network.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import requests

from . import __version__
from .backoff import parse_retry_after

logger = logging.getLogger(__name__)

ItemStatus = Literal["accepted", "duplicate", "rejected", "missing"]
ResultKind = Literal["delivered", "invalid", "too_large", "malformed", "retry"]

_INDEX_PREFIX = re.compile(r"^\[(\d+)\]\.?")


@dataclass(frozen=True)
class ItemOutcome:
    """What the server said about one document of the batch."""

    status: ItemStatus
    reason: str = ""


@dataclass(frozen=True)
class SendResult:
    """The server's answer to one batch, classified.

    - `delivered` (200): `items[i]` says what happened to document i;
    - `invalid` (422): every document was refused; `reasons[i]` says why (a general `reason` if
      the server did not name the document);
    - `too_large` (413) / `malformed` (400): the batch as a whole was refused;
    - `retry`: the network, the store (503), throttling (429) or the configuration (401/403/404)
      is at fault, not the data; `retry_after` carries the server's Retry-After in seconds.
    """

    kind: ResultKind
    status: int | None = None
    items: tuple[ItemOutcome, ...] = ()
    reasons: dict[int, str] = field(default_factory=dict)
    reason: str = ""
    retry_after: float | None = None
    config_problem: bool = False


class Sender(Protocol):
    """Posts a batch of JSON documents (already encoded) and classifies the answer."""

    def send(self, bodies: Sequence[str]) -> SendResult: ...


def join_batch(bodies: Sequence[str]) -> bytes:
    """The API's array form, built from the queued JSON texts without decoding them."""
    return ("[" + ",".join(bodies) + "]").encode()


def _problem_text(problems: Any, strip_index: bool = True) -> dict[int | None, list[str]]:
    """Group `[{"path": "[3].no2.value", "problem": ...}]` by document index (None: not tied to one)."""
    grouped: dict[int | None, list[str]] = {}
    if not isinstance(problems, list):
        return grouped
    for problem in problems:
        if not isinstance(problem, dict):
            continue
        path = str(problem.get("path", ""))
        text = str(problem.get("problem", "is invalid"))
        match = _INDEX_PREFIX.match(path)
        index = int(match.group(1)) if match else None
        if match and strip_index:
            path = path[match.end() :]
        grouped.setdefault(index, []).append(f"{path}: {text}" if path else text)
    return grouped


def classify_response(status: int, body: bytes, headers: Any, count: int) -> SendResult:
    """Turn an HTTP answer to a batch of `count` documents into a `SendResult`."""
    try:
        data: Any = json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    summary = _summary(data, body)
    retry_after = parse_retry_after(headers.get("Retry-After") if headers is not None else None)

    if 200 <= status < 300:
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            # Something between us and the API answered; the batch may or may not be stored.
            return SendResult("retry", status, reason=f"HTTP {status} without a results list: {summary}")
        items = [ItemOutcome("missing", "the server's answer did not mention this document")] * count
        for result in data["results"]:
            if not isinstance(result, dict) or not isinstance(result.get("index"), int):
                continue
            index = result["index"]
            if not 0 <= index < count:
                continue
            state = result.get("status")
            if state in ("accepted", "duplicate"):
                items[index] = ItemOutcome(state)
            elif state == "conflict":  # the server holds this identity with another value: it stays
                items[index] = ItemOutcome("duplicate", "stored before with a different value")
            elif state == "rejected":
                problems = _problem_text(result.get("details"))
                text = "; ".join(p for group in problems.values() for p in group) or "rejected without details"
                items[index] = ItemOutcome("rejected", text)
        return SendResult("delivered", status, items=tuple(items))
    if status == 422:
        grouped = _problem_text(data.get("details") if isinstance(data, dict) else None)
        general = "; ".join(grouped.pop(None, [])) or summary
        reasons = {index: "; ".join(texts) for index, texts in grouped.items() if index is not None}
        return SendResult("invalid", status, reasons=reasons, reason=general)
    if status == 413:
        return SendResult("too_large", status, reason=summary)
    if status == 400:
        return SendResult("malformed", status, reason=summary)
    if status in (401, 403):
        return SendResult(
            "retry", status, reason=f"HTTP {status} {summary}: the API key is missing or wrong", config_problem=True
        )
    if status in (404, 405):
        return SendResult(
            "retry",
            status,
            reason=f"HTTP {status} {summary}: the endpoint URL is wrong (it should end in /readings)",
            config_problem=True,
        )
    return SendResult("retry", status, reason=f"HTTP {status}: {summary}", retry_after=retry_after)


def _summary(data: Any, body: bytes) -> str:
    if isinstance(data, dict):
        for key in ("error", "message", "Message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return body[:200].decode(errors="replace") if body else "(empty body)"


class HttpSender:
    """Posts batches to `POST /readings` with the `x-api-key` header, over one keep-alive session."""

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        session: requests.Session | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "x-api-key": api_key,
                "Content-Type": "application/json",
                "User-Agent": f"gasmon-device/{__version__}",
            }
        )

    def send(self, bodies: Sequence[str]) -> SendResult:
        payload = join_batch(bodies)
        try:
            response = self.session.post(self.endpoint, data=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            # Timeouts included: the server may have stored the batch; re-sending is safe because
            # it deduplicates on (group, sensor, gas, time).
            return SendResult("retry", None, reason=f"{type(exc).__name__}: {exc}")
        return classify_response(response.status_code, response.content, response.headers, len(bodies))

    def close(self) -> None:
        self.session.close()
