"""Device shadows as AWS IoT keeps them: desired/reported state, metadata, version, delta.

`ShadowStore` is the document logic only (no MQTT, no HTTP): `update`, `get` and `delete` take a
request and return what AWS would publish on the `/accepted`, `/documents` and `/delta` topics,
or raise `ShadowRejectedError` with AWS's code and message for `/rejected`. `parse_request_topic`
decodes the reserved request topics. The broker and the iot-data endpoint both use it,
so a shadow updated over MQTT reads back the same over HTTP. Shadows are kept in one JSON file
in the data directory, written on every change, so they survive a restart.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TOPIC = re.compile(
    r"^\$aws/things/(?P<thing>[^/]+)/shadow(?:/name/(?P<name>[^/]+))?/(?P<operation>update|get|delete)$"
)


class ShadowRejectedError(Exception):
    """A shadow request AWS would reject; `code` is the HTTP-style code AWS puts in the body."""

    def __init__(self, code: int, message: str, client_token: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_token = client_token

    def document(self, timestamp: int) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "timestamp": timestamp}
        if self.client_token is not None:
            body["clientToken"] = self.client_token
        return body


@dataclass(frozen=True)
class ShadowRequest:
    """A request topic decoded: which shadow and which operation."""

    thing: str
    name: str | None
    operation: str

    @property
    def prefix(self) -> str:
        named = f"/name/{self.name}" if self.name else ""
        return f"$aws/things/{self.thing}/shadow{named}/{self.operation}"


def parse_request_topic(topic: str) -> ShadowRequest | None:
    """`$aws/things/<thing>/shadow[/name/<name>]/<update|get|delete>` -> the request, else None."""
    match = _TOPIC.match(topic)
    if match is None:
        return None
    return ShadowRequest(match["thing"], match["name"], match["operation"])


@dataclass(frozen=True)
class UpdateResult:
    """What an accepted update publishes."""

    accepted: dict[str, Any]
    documents: dict[str, Any]
    delta: dict[str, Any] | None


def _merge(target: dict[str, Any], patch: dict[str, Any], metadata: dict[str, Any], timestamp: int) -> None:
    """Apply a state patch in place: null deletes a key, objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
            metadata.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            existing = metadata.get(key)
            meta: dict[str, Any] = existing if isinstance(existing, dict) else {}
            _merge(target[key], value, meta, timestamp)
            metadata[key] = meta
        else:
            target[key] = copy.deepcopy(value)
            metadata[key] = _stamp(value, timestamp)


def _stamp(value: Any, timestamp: int) -> Any:
    """Metadata mirrors the state's shape with a timestamp on every leaf."""
    if isinstance(value, dict):
        return {key: _stamp(item, timestamp) for key, item in value.items()}
    return {"timestamp": timestamp}


def _delta(desired: Any, reported: Any) -> Any:
    """The parts of desired that reported does not match (None when they agree)."""
    if isinstance(desired, dict) and isinstance(reported, dict):
        delta = {}
        for key, value in desired.items():
            difference = _delta(value, reported.get(key))
            if difference is not None:
                delta[key] = difference
        return delta or None
    return None if desired == reported else desired


class ShadowStore:
    """Classic and named shadows of every thing, optionally persisted to a JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._shadows: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            self._shadows = json.loads(path.read_text())

    @staticmethod
    def _key(thing: str, name: str | None) -> str:
        return f"{thing}/{name}" if name else thing

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(self._shadows, indent=1, sort_keys=True))
        os.replace(scratch, self.path)

    def get(self, thing: str, name: str | None, timestamp: int, client_token: str | None = None) -> dict[str, Any]:
        """The shadow document as GetThingShadow returns it (with `delta`), or 404."""
        with self._lock:
            shadow = self._shadows.get(self._key(thing, name))
            if shadow is None:
                label = name or "Classic"
                raise ShadowRejectedError(404, f"No shadow exists with name: '{thing}~{label}'", client_token)
            document = copy.deepcopy(shadow)
        delta = _delta(document["state"].get("desired"), document["state"].get("reported"))
        if delta is not None and "desired" in document["state"]:
            document["state"]["delta"] = delta
        document["timestamp"] = timestamp
        if client_token is not None:
            document["clientToken"] = client_token
        return document

    def update(self, thing: str, name: str | None, request: bytes, timestamp: int) -> UpdateResult:
        """Apply an UpdateThingShadow request (raw JSON bytes) as AWS does."""
        try:
            body = json.loads(request)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ShadowRejectedError(400, "Payload contains invalid json") from None
        client_token = body.get("clientToken") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("state"), dict):
            raise ShadowRejectedError(400, "Missing required node: state", client_token)
        state: dict[str, Any] = body["state"]
        unknown = set(state) - {"desired", "reported"}
        if unknown:
            raise ShadowRejectedError(400, f"State contains an invalid node: '{sorted(unknown)[0]}'", client_token)
        for section, value in state.items():
            if value is not None and not isinstance(value, dict):
                raise ShadowRejectedError(400, f"Invalid value for {section}: must be an object or null", client_token)
        with self._lock:
            key = self._key(thing, name)
            previous = copy.deepcopy(self._shadows.get(key))
            if "version" in body and previous is not None and body["version"] != previous["version"]:
                raise ShadowRejectedError(409, "Version conflict", client_token)
            current = copy.deepcopy(previous) or {"state": {}, "metadata": {}, "version": 0}
            for section, patch in state.items():
                if patch is None:
                    current["state"].pop(section, None)
                    current["metadata"].pop(section, None)
                    continue
                target = current["state"].setdefault(section, {})
                metadata = current["metadata"].setdefault(section, {})
                _merge(target, patch, metadata, timestamp)
            current["version"] += 1
            self._shadows[key] = current
            self._save()
        accepted: dict[str, Any] = {
            "state": state,
            "metadata": {
                section: _stamp(patch, timestamp) for section, patch in state.items() if isinstance(patch, dict)
            },
            "version": current["version"],
            "timestamp": timestamp,
        }
        documents: dict[str, Any] = {
            "previous": previous,
            "current": copy.deepcopy(current),
            "timestamp": timestamp,
        }
        if previous is None:
            documents.pop("previous")
        if client_token is not None:
            accepted["clientToken"] = client_token
            documents["clientToken"] = client_token
        delta_state = _delta(current["state"].get("desired"), current["state"].get("reported"))
        delta = None
        if delta_state is not None and "desired" in state:
            delta = {
                "state": delta_state,
                "metadata": current["metadata"].get("desired", {}),
                "version": current["version"],
                "timestamp": timestamp,
            }
        return UpdateResult(accepted=accepted, documents=documents, delta=delta)

    def delete(self, thing: str, name: str | None, timestamp: int, client_token: str | None = None) -> dict[str, Any]:
        """DeleteThingShadow: the `/delete/accepted` document, or 404."""
        with self._lock:
            shadow = self._shadows.pop(self._key(thing, name), None)
            if shadow is None:
                label = name or "Classic"
                raise ShadowRejectedError(404, f"No shadow exists with name: '{thing}~{label}'", client_token)
            self._save()
        accepted: dict[str, Any] = {"version": shadow["version"], "timestamp": timestamp}
        if client_token is not None:
            accepted["clientToken"] = client_token
        return accepted

    def names(self, thing: str) -> list[str]:
        """Named shadows of a thing (ListNamedShadowsForThing)."""
        with self._lock:
            return sorted(key.split("/", 1)[1] for key in self._shadows if key.startswith(f"{thing}/"))


def client_token_of(request: bytes) -> str | None:
    """The clientToken of a get/delete request body, if it has one."""
    try:
        body = json.loads(request) if request else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    token = body.get("clientToken") if isinstance(body, dict) else None
    return str(token) if token is not None else None
