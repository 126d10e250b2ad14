"""Device identity in the domain: keys and hashes, who may call what, attributing readings."""

from datetime import UTC, datetime, timedelta

import pytest

from gasmon.errors import ForbiddenError
from gasmon.identity import (
    ROUTES,
    Credential,
    Identity,
    attribute,
    authorizer_answer,
    credential_id,
    hash_key,
    identify,
    new_key,
    stage_arn,
    valid_name,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
METHOD_ARN = "arn:aws:execute-api:ap-northeast-2:123456789012:abc123/Prod/POST/readings"
DEVICE = Identity(role="device", name="RPI", groupid="2")


def test_a_new_key_is_40_random_letters_and_digits_and_only_its_hash_is_kept() -> None:
    # Given two new keys, Then they differ, are 40 alphanumerics, and hash to 64 hex digits
    first, second = new_key(), new_key()
    assert first != second and len(first) == 40 and first.isalnum()
    assert hash_key(first) != hash_key(second) and len(hash_key(first)) == 64
    assert hash_key(first) == hash_key(first)  # the registry can find it by the presented key alone
    assert credential_id(hash_key(first)) == hash_key(first)[:12]


@pytest.mark.parametrize(
    ("credential", "expected"),
    [
        (None, None),
        (Credential(key_hash="h", role="device", name="RPI", groupid="2", state="revoked"), None),
        (Credential(key_hash="h", role="device", name="RPI", groupid="2", expires_at=NOW), None),
        (Credential(key_hash="h", role="device", name="RPI"), None),  # a device without a group
        (
            Credential(key_hash="h", role="device", name="RPI", groupid="2", expires_at=NOW + timedelta(hours=1)),
            DEVICE,
        ),
        (Credential(key_hash="h", role="viewer", name="ops"), Identity(role="viewer", name="ops")),
    ],
)
def test_only_an_active_unexpired_credential_has_an_identity(
    credential: Credential | None, expected: Identity | None
) -> None:
    assert identify(credential, NOW) == expected


def test_a_device_is_allowed_every_post_route_and_nothing_else() -> None:
    # Given a device identity, When the authorizer answers, Then the policy names its routes only
    answer = authorizer_answer(DEVICE, METHOD_ARN).response()
    [statement] = answer["policyDocument"]["Statement"]
    base = "arn:aws:execute-api:ap-northeast-2:123456789012:abc123/Prod"
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == [f"{base}/POST/readings", f"{base}/POST/gasdetector"]
    assert answer["context"] == {"role": "device", "name": "RPI", "groupid": "2"}
    assert answer["principalId"] == "device:RPI"


def test_a_viewer_is_allowed_the_query_routes_only() -> None:
    answer = authorizer_answer(Identity(role="viewer", name="ops"), METHOD_ARN).response()
    resources = answer["policyDocument"]["Statement"][0]["Resource"]
    assert all("/GET/" in resource for resource in resources)
    assert len(resources) == len(ROUTES["viewer"])


def test_no_identity_is_denied_everything() -> None:
    answer = authorizer_answer(None, METHOD_ARN).response()
    [statement] = answer["policyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Resource"] == [f"{stage_arn(METHOD_ARN)}/*/*"]
    assert "context" not in answer


def test_a_method_arn_that_is_not_execute_api_is_refused() -> None:
    with pytest.raises(ValueError):
        stage_arn("arn:aws:s3:::bucket")


def test_documents_of_the_devices_own_group_are_attributed_to_it() -> None:
    # Given the seed's RPI (group 2), When it posts the seed document, Then it is RPI's reading
    [document] = attribute([{"groupid": "2", "no2": {}}], False, DEVICE)
    assert document["deviceid"] == "RPI"
    [numeric] = attribute([{"groupid": 2, "deviceid": "RPI"}], False, DEVICE)
    assert numeric["deviceid"] == "RPI"


def test_another_groups_document_is_forbidden_naming_the_field() -> None:
    with pytest.raises(ForbiddenError) as raised:
        attribute([{"groupid": "2"}, {"groupid": "6"}, {"groupid": "2", "deviceid": "pi-9"}], True, DEVICE)
    assert raised.value.status == 403
    assert [problem.path for problem in raised.value.details] == ["[1].groupid", "[2].deviceid"]


@pytest.mark.parametrize("identity", [None, Identity(role="viewer", name="ops")])
def test_only_a_device_may_post(identity: Identity | None) -> None:
    with pytest.raises(ForbiddenError):
        attribute([{"groupid": "2"}], False, identity)


def test_the_identity_round_trips_through_the_authorizer_context() -> None:
    assert Identity.from_context({**DEVICE.context(), "principalId": "device:RPI"}) == DEVICE
    assert Identity.from_context(None) is None
    assert Identity.from_context({"role": "admin", "name": "x"}) is None


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("pi-x", True),
        ("RPI", True),
        ("a" * 64, True),
        ("..", False),
        ("", False),
        ("a/b", False),
        ("$aws", False),
        ("a" * 65, False),
    ],
)
def test_thing_and_group_names_are_safe_ids(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


def test_an_unsafe_id_is_left_to_validation_not_called_someone_elses() -> None:
    # Given a document whose groupid is outside the safe alphabet, Then attribution passes it on
    # (validation answers 422 naming it) instead of a 403
    [document] = attribute([{"groupid": "$aws/things/x/shadow/delete"}], False, DEVICE)
    assert document["deviceid"] == "RPI"
