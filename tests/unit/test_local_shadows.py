"""Device shadow documents as AWS IoT keeps them (gasmon_local.shadows)."""

import json
from pathlib import Path
from typing import Any

import pytest

from gasmon_local.shadows import ShadowRejectedError, ShadowRequest, ShadowStore, parse_request_topic


def update(store: ShadowStore, body: dict[str, Any], thing: str = "rpi-1", name: str | None = None, at: int = 100):
    return store.update(thing, name, json.dumps(body).encode(), at)


def test_first_update_creates_version_1_with_metadata() -> None:
    # Given no shadow, When the seed's Last Will is applied, Then version 1 holds it with timestamps
    store = ShadowStore()
    result = update(store, {"state": {"reported": {"connected": "false"}}})
    assert result.accepted == {
        "state": {"reported": {"connected": "false"}},
        "metadata": {"reported": {"connected": {"timestamp": 100}}},
        "version": 1,
        "timestamp": 100,
    }
    assert "previous" not in result.documents
    assert result.documents["current"]["state"] == {"reported": {"connected": "false"}}


def test_updates_merge_nested_objects_and_null_deletes() -> None:
    store = ShadowStore()
    update(store, {"state": {"reported": {"connected": "true", "gps": {"lat": 1, "lon": 2}, "fw": "1.0"}}})
    result = update(store, {"state": {"reported": {"gps": {"lat": 3}, "fw": None}}}, at=200)
    current = result.documents["current"]
    assert current["state"]["reported"] == {"connected": "true", "gps": {"lat": 3, "lon": 2}}
    assert current["metadata"]["reported"]["gps"]["lat"] == {"timestamp": 200}
    assert current["metadata"]["reported"]["gps"]["lon"] == {"timestamp": 100}
    assert result.documents["previous"]["version"] == 1 and current["version"] == 2


def test_a_null_section_deletes_it() -> None:
    store = ShadowStore()
    update(store, {"state": {"desired": {"led": "on"}, "reported": {"led": "off"}}})
    update(store, {"state": {"desired": None}})
    assert store.get("rpi-1", None, 300)["state"] == {"reported": {"led": "off"}}


def test_version_conflict_is_rejected_with_409() -> None:
    store = ShadowStore()
    update(store, {"state": {"reported": {"a": 1}}})
    with pytest.raises(ShadowRejectedError) as rejected:
        update(store, {"state": {"reported": {"a": 2}}, "version": 7, "clientToken": "t-1"})
    assert rejected.value.code == 409
    assert rejected.value.document(5) == {
        "code": 409,
        "message": "Version conflict",
        "timestamp": 5,
        "clientToken": "t-1",
    }
    assert update(store, {"state": {"reported": {"a": 2}}, "version": 1}).accepted["version"] == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "Payload contains invalid json"),
        (b'{"nostate": 1}', "Missing required node: state"),
        (b'{"state": {"bogus": {}}}', "State contains an invalid node: 'bogus'"),
        (b'{"state": {"reported": 5}}', "Invalid value for reported: must be an object or null"),
    ],
)
def test_invalid_requests_are_rejected_with_400(raw: bytes, message: str) -> None:
    with pytest.raises(ShadowRejectedError) as rejected:
        ShadowStore().update("rpi-1", None, raw, 1)
    assert (rejected.value.code, rejected.value.message) == (400, message)


def test_delta_is_what_desired_wants_that_reported_lacks() -> None:
    store = ShadowStore()
    result = update(store, {"state": {"desired": {"led": "on", "rate": 5}, "reported": {"rate": 5}}})
    assert result.delta is not None and result.delta["state"] == {"led": "on"}
    assert store.get("rpi-1", None, 2)["state"]["delta"] == {"led": "on"}


def test_no_delta_when_only_reported_changes() -> None:
    assert update(ShadowStore(), {"state": {"reported": {"led": "on"}}}).delta is None


def test_get_and_delete_of_a_missing_shadow_are_404() -> None:
    store = ShadowStore()
    for call in (lambda: store.get("ghost", None, 1), lambda: store.delete("ghost", None, 1)):
        with pytest.raises(ShadowRejectedError) as rejected:
            call()
        assert rejected.value.code == 404


def test_delete_removes_the_shadow() -> None:
    store = ShadowStore()
    update(store, {"state": {"reported": {"a": 1}}})
    assert store.delete("rpi-1", None, 9, "tok") == {"version": 1, "timestamp": 9, "clientToken": "tok"}
    with pytest.raises(ShadowRejectedError):
        store.get("rpi-1", None, 10)


def test_named_shadows_are_separate_from_the_classic_one() -> None:
    store = ShadowStore()
    update(store, {"state": {"reported": {"a": 1}}}, name="config")
    update(store, {"state": {"reported": {"b": 2}}})
    assert store.get("rpi-1", "config", 1)["state"] == {"reported": {"a": 1}}
    assert store.get("rpi-1", None, 1)["state"] == {"reported": {"b": 2}}
    assert store.names("rpi-1") == ["config"]


def test_shadows_survive_a_restart(tmp_path: Path) -> None:
    # Given a shadow written by one store, When a new store opens the same file, Then it is there
    update(ShadowStore(tmp_path / "shadows.json"), {"state": {"reported": {"connected": "false"}}})
    reopened = ShadowStore(tmp_path / "shadows.json")
    assert reopened.get("rpi-1", None, 5)["state"] == {"reported": {"connected": "false"}}


@pytest.mark.parametrize(
    ("topic", "request_"),
    [
        ("$aws/things/rpi-1/shadow/update", ShadowRequest("rpi-1", None, "update")),
        ("$aws/things/rpi-1/shadow/get", ShadowRequest("rpi-1", None, "get")),
        ("$aws/things/rpi-1/shadow/name/cfg/delete", ShadowRequest("rpi-1", "cfg", "delete")),
        ("$aws/things/rpi-1/shadow/update/accepted", None),
        ("my/things/rpi-1/update", None),
    ],
)
def test_request_topics(topic: str, request_: ShadowRequest | None) -> None:
    assert parse_request_topic(topic) == request_
