"""The device registry and `gasmon-admin`'s operations against moto's server (DynamoDB and IoT),
with the registry table and the device policy created from template.yaml as the local stack does."""

import json
import socket
import tomllib
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from gasmon.adapters.dynamodb_registry import DynamoDbDeviceRegistry, DynamoDbRateLimiter, RegistryDeviceDirectory
from gasmon.identity import hash_key
from gasmon_admin import devices
from gasmon_admin.cli import main
from gasmon_admin.target import AdminError, Target
from gasmon_local import aws
from gasmon_local.functions import ROOT
from gasmon_local.local_ca import LocalCA
from gasmon_local.template import REGION, Stack, StackContext, load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto's backends are per process, shared by every server in it: start from nothing, leave nothing.
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    stack = Stack(load(ROOT / "template.yaml"), StackContext(aws_endpoint=url), base_dir=ROOT)
    aws.create_resources(stack, url)
    outputs = stack.outputs()
    yield Target(
        iot=aws.client("iot", url, REGION),
        dynamodb=aws.client("dynamodb", url, REGION),
        device_table=outputs["DeviceTableName"],
        device_policy=outputs["DevicePolicyName"],
        api_url="http://127.0.0.1:3000",
        mqtt_host="127.0.0.1",
        mqtt_port=1883,
        data_dir=tmp_path / "data",
    )
    urllib.request.urlopen(reset, timeout=10).close()
    server.stop()


def test_provision_makes_the_thing_certificate_key_registry_item_and_folder(target: Target, tmp_path: Path) -> None:
    # When pi-x is provisioned in group 5
    done = devices.provision(target, "pi-x", "5", tmp_path / "pi-x", ["0105", "0106"], "37.5, 127.0")
    # Then IoT has the thing (group attribute), an ACTIVE certificate with the device policy and thing attached
    thing = target.iot.describe_thing(thingName="pi-x")
    assert thing["attributes"] == {"group": "5"}
    certificate = target.iot.describe_certificate(certificateId=done.certificate_id)["certificateDescription"]
    assert certificate["status"] == "ACTIVE"
    assert target.iot.list_thing_principals(thingName="pi-x")["principals"] == [certificate["certificateArn"]]
    policies = target.iot.list_attached_policies(target=certificate["certificateArn"])["policies"]
    assert [policy["policyName"] for policy in policies] == [target.device_policy]
    # And the certificate was signed by the local CA
    folder = Path(done.config_dir)
    assert LocalCA(target.data_dir or tmp_path).issued_this((folder / devices.CERT_FILE).read_text())
    # And the registry knows the device and its key by hash only
    registry = DynamoDbDeviceRegistry(target.device_table, client=target.dynamodb)
    credential = registry.credential(hash_key(done.api_key))
    assert credential is not None and (credential.role, credential.name, credential.groupid) == ("device", "pi-x", "5")
    record = registry.device("pi-x")
    assert record is not None and record.location == "37.5, 127.0" and record.sensors == ["0105", "0106"]
    assert done.api_key not in json.dumps(target.dynamodb.scan(TableName=target.device_table)["Items"])
    # And the folder is ready for the device agent
    config = tomllib.loads((folder / devices.CONFIG_FILE).read_text())
    assert (config["thing_name"], config["groupid"], config["api"]["api_key"]) == ("pi-x", "5", done.api_key)
    assert config["api"]["endpoint"] == "http://127.0.0.1:3000/readings"
    assert config["sensors"][0]["sensorid"] == "0105"
    assert (folder / devices.KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (folder / devices.ROOT_CA_FILE).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_provisioning_a_thing_twice_is_a_clear_error_not_a_second_certificate(target: Target, tmp_path: Path) -> None:
    devices.provision(target, "pi-x", "5", tmp_path / "one")
    with pytest.raises(AdminError, match="already provisioned"):
        devices.provision(target, "pi-x", "5", tmp_path / "two")
    assert len(target.iot.list_certificates()["certificates"]) == 1
    assert not (tmp_path / "two").exists()


def test_revoke_disables_the_keys_and_deactivates_the_certificate(target: Target, tmp_path: Path) -> None:
    done = devices.provision(target, "pi-x", "5", tmp_path / "pi-x")
    devices.revoke(target, "pi-x")
    registry = DynamoDbDeviceRegistry(target.device_table, client=target.dynamodb)
    credential = registry.credential(hash_key(done.api_key))
    assert credential is not None and not credential.usable(datetime.now(UTC))
    status = target.iot.describe_certificate(certificateId=done.certificate_id)["certificateDescription"]["status"]
    assert status == "INACTIVE"
    assert devices.list_entries(target)[0]["state"] == "revoked"


def test_rotate_gives_a_new_key_and_the_old_one_lapses_after_the_grace(target: Target, tmp_path: Path) -> None:
    done = devices.provision(target, "pi-x", "5", tmp_path / "pi-x")
    rotated = devices.rotate(target, "pi-x", timedelta(hours=1))
    registry = DynamoDbDeviceRegistry(target.device_table, client=target.dynamodb)
    old, new = registry.credential(hash_key(done.api_key)), registry.credential(hash_key(rotated["api_key"]))
    assert old is not None and new is not None
    now = datetime.now(UTC)
    assert old.usable(now) and not old.usable(now + timedelta(hours=2)) and new.usable(now + timedelta(days=30))


def test_a_viewer_key_is_a_viewer_credential(target: Target) -> None:
    issued = devices.viewer(target, "ops")
    credential = DynamoDbDeviceRegistry(target.device_table, client=target.dynamodb).credential(
        hash_key(issued["api_key"])
    )
    assert credential is not None and credential.role == "viewer" and credential.groupid is None


def test_presence_emails_name_a_registered_device_from_the_registry(target: Target, tmp_path: Path) -> None:
    devices.provision(target, "RPI", "2", tmp_path / "rpi", location="37.61, 126.99")
    directory = RegistryDeviceDirectory(DynamoDbDeviceRegistry(target.device_table, client=target.dynamodb))
    info = directory.describe("RPI", "RPI")
    assert info is not None and (info.groupid, info.gps) == ("2", "37.61, 126.99")
    assert directory.describe("stranger", "stranger") is None


def test_the_rate_limiter_counts_per_device_per_minute(target: Target) -> None:
    limiter = DynamoDbRateLimiter(target.device_table, 2, client=target.dynamodb)
    now = datetime(2026, 12, 7, 12, 0, 10, tzinfo=UTC)
    assert [limiter.allow("pi-x", now) for _ in range(3)] == [True, True, False]
    assert limiter.allow("pi-y", now)  # another device has its own allowance
    assert limiter.allow("pi-x", now + timedelta(minutes=1))  # a new minute, a new allowance


def test_the_cli_lists_devices_as_json(
    target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    devices.provision(target, "pi-x", "5", tmp_path / "pi-x")
    monkeypatch.setattr("gasmon_admin.cli.target_of", lambda args: target)
    assert main(["--local", "list", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert (entry["kind"], entry["name"], entry["group"], entry["state"]) == ("device", "pi-x", "5", "active")
    assert main(["--local", "provision", "pi-x", "--group", "5", "--out", str(tmp_path / "again")]) == 1
    assert "already provisioned" in capsys.readouterr().err


def test_the_query_api_names_a_pages_devices_with_one_batch_read(target: Target, tmp_path: Path) -> None:
    # Given two provisioned devices
    devices.provision(target, "pi-a", "5", tmp_path / "pi-a", location="37.5, 127.0")
    devices.provision(target, "pi-b", "6", tmp_path / "pi-b")
    registry = DynamoDbDeviceRegistry(target.device_table, client=target.dynamodb)
    # When a page's devices are looked up, one the registry does not know among them
    found = registry.devices_named(["pi-a", "pi-b", "nobody"])
    # Then the registered ones come back with their group and place
    assert {thing: (r.groupid, r.location) for thing, r in found.items()} == {
        "pi-a": ("5", "37.5, 127.0"),
        "pi-b": ("6", None),
    }


def test_devices_provisioned_into_the_fleet_dir_are_registered_again_after_a_restart(
    target: Target, tmp_path: Path
) -> None:
    # Given simulate's sim-dev-01 and a revoked sim-dev-02 provisioned into the stack's fleet dir
    from gasmon_local.identities import restore_other_devices

    fleet = tmp_path / "fleet"
    devices.provision(target, "sim-dev-01", "sim-dev", fleet / "sim-dev-01")
    devices.provision(target, "sim-dev-02", "sim-dev", fleet / "sim-dev-02")
    devices.revoke(target, "sim-dev-02")
    # And a restart: moto kept the registry (DynamoDB is journaled) but lost IoT's things and certificates
    for thing in ("sim-dev-01", "sim-dev-02"):
        for principal in target.iot.list_thing_principals(thingName=thing)["principals"]:
            target.iot.detach_thing_principal(thingName=thing, principal=principal)
            target.iot.detach_policy(policyName=target.device_policy, target=principal)
            certificate_id = principal.rsplit("/", 1)[1]
            target.iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
            target.iot.delete_certificate(certificateId=certificate_id)
        target.iot.delete_thing(thingName=thing)

    # When the stack starts, with its own fleet (sim-pi-01) already done
    restored = restore_other_devices(target, fleet, {"sim-pi-01"})

    # Then the active device's thing is back with its own certificate, and the revoked one is not
    assert restored == ["sim-dev-01"]
    principals = target.iot.list_thing_principals(thingName="sim-dev-01")["principals"]
    assert len(principals) == 1
    assert devices.thing_exists(target, "sim-dev-01") and not devices.thing_exists(target, "sim-dev-02")
