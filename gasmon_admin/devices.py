"""The operations behind `gasmon-admin`, as a Python API (the local stack and tests call these).

Every credential is a random key shown once; the registry keeps its SHA-256 only
(`gasmon.identity`). Writes that must not happen twice are conditional: a thing is provisioned
once (the registry item is written with `attribute_not_exists`), so a re-run is a clear error
and never a second certificate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gasmon.adapters.dynamodb_registry import (
    KEY_PREFIX,
    THING_PREFIX,
    VIEWER_PREFIX,
    credential_of_item,
    device_of_item,
    from_item,
    item_of_credential,
    item_of_device,
    to_item,
)
from gasmon.identity import Credential, DeviceRecord, credential_id, hash_key, new_key, valid_name
from gasmon.models import parse_gps
from gasmon_admin.target import AdminError, Target

# The seed's four sensors, in the order `--sensors` ids replace theirs.
SEED_SENSORS = (("co", "0005", "8"), ("no2", "0006", "9"), ("c2h5oh", "0007", "27"), ("h2", "0008", "30"))
ROOT_CA_LABEL = "Amazon Root CA 1"
CERT_FILE, KEY_FILE, ROOT_CA_FILE, CONFIG_FILE = "certificate.pem.crt", "private.pem.key", "root-CA.pem", "device.toml"


@dataclass(frozen=True)
class Provisioned:
    """What `provision` prints: one JSON object."""

    thing: str
    group: str
    api_key: str
    config_dir: str
    certificate_id: str

    def as_json(self) -> dict[str, str]:
        return {
            "thing": self.thing,
            "group": self.group,
            "api_key": self.api_key,
            "config_dir": self.config_dir,
            "certificate_id": self.certificate_id,
        }


def _now() -> datetime:
    return datetime.now(UTC)


def _get(target: Target, key: str) -> dict[str, Any] | None:
    answer = target.dynamodb.get_item(TableName=target.device_table, Key={"pk": {"S": key}}, ConsistentRead=True)
    item: dict[str, Any] | None = answer.get("Item")
    return item


def device(target: Target, thing: str) -> DeviceRecord | None:
    """The registry's item for `thing`, or None."""
    item = _get(target, THING_PREFIX + thing)
    return device_of_item(item) if item else None


def _check_name(kind: str, name: str) -> None:
    if not valid_name(name):
        raise AdminError(f"{kind} {name!r} must be 1-64 characters of A-Z a-z 0-9 . _ : -")


def thing_exists(target: Target, thing: str) -> bool:
    try:
        target.iot.describe_thing(thingName=thing)
        return True
    except target.iot.exceptions.ResourceNotFoundException:
        return False


def _certificate(target: Target, thing: str) -> tuple[str, str, str, str]:
    """(certificate PEM, private key PEM, certificate id, certificate ARN), ACTIVE in AWS IoT.

    In AWS, IoT creates the key pair and certificate. Locally the key is made here, the local CA
    signs its CSR, and the certificate is registered in moto's IoT (ACTIVE, without a CA), so its
    id is the one IoT reports, as in AWS.
    """
    if not target.local:
        created = target.iot.create_keys_and_certificate(setAsActive=True)
        return (
            created["certificatePem"],
            created["keyPair"]["PrivateKey"],
            created["certificateId"],
            created["certificateArn"],
        )
    from gasmon_local.local_ca import LocalCA

    assert target.data_dir is not None
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)]))
        .sign(key, hashes.SHA256())
    )
    issued = LocalCA(target.data_dir).sign_csr(csr.public_bytes(serialization.Encoding.PEM))
    certificate_pem = str(issued.certificate_pem)
    registered = target.iot.register_certificate_without_ca(certificatePem=certificate_pem, status="ACTIVE")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate_pem, key_pem, registered["certificateId"], registered["certificateArn"]


def root_ca(target: Target) -> str:
    """The CA a device trusts for the MQTT endpoint: the local CA, or Amazon Root CA 1.

    Amazon Root CA 1 is in Mozilla's root store, which certifi ships; it is taken from there
    (the same PEM as https://www.amazontrust.com/repository/AmazonRootCA1.pem).
    """
    if target.local:
        from gasmon_local.local_ca import LocalCA

        assert target.data_dir is not None
        ca = LocalCA(target.data_dir)
        return ca.ensure().read_text()
    import certifi

    text = Path(certifi.where()).read_text()
    marker = f'# Label: "{ROOT_CA_LABEL}"'
    start = text.find(marker)
    if start < 0:
        raise AdminError(f"{ROOT_CA_LABEL} is not in certifi's bundle; download AmazonRootCA1.pem from amazontrust.com")
    begin = text.index("-----BEGIN CERTIFICATE-----", start)
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return text[begin:end] + "\n"


def _toml(value: Any) -> str:
    return (
        json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    )


def device_toml(
    target: Target, thing: str, group: str, api_key: str, folder: Path, location: str | None, sensors: Sequence[str]
) -> str:
    """The device agent's config (`gasmon-device --config DIR/device.toml`) for this device."""
    readings = target.api_url.rstrip("/") + "/readings" if target.api_url else ""
    lines = [
        "# Written by gasmon-admin provision. Keep it private: it holds the device's API key.",
        f"thing_name = {_toml(thing)}",
        f"groupid = {_toml(group)}",
    ]
    if location:
        lines.append(f"gps = {_toml(location)}")
    lines += ["", "[api]", f"endpoint = {_toml(readings)}", f"api_key = {_toml(api_key)}", "", "[mqtt]"]
    lines += [f"host = {_toml(target.mqtt_host)}", f"port = {target.mqtt_port}"]
    # TLS with the device's certificate, in AWS and on the local broker's TLS listener alike.
    lines += [f"tls = {_toml(True)}", f"warning_topic = {_toml(target.warning_topic)}"]
    lines += [f"{name} = {_toml(str(folder / file))}" for name, file in (("root_ca", ROOT_CA_FILE),)]
    lines += [f"cert = {_toml(str(folder / CERT_FILE))}", f"key = {_toml(str(folder / KEY_FILE))}"]
    for index, (gas, sensorid, sensortype) in enumerate(SEED_SENSORS):
        chosen = sensors[index] if index < len(sensors) else sensorid
        lines += ["", "[[sensors]]", f"gas = {_toml(gas)}", f"sensorid = {_toml(chosen)}"]
        lines.append(f"sensortype = {_toml(sensortype)}")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def provision(
    target: Target,
    thing: str,
    group: str,
    out: Path,
    sensors: Sequence[str] = (),
    location: str | None = None,
    api_key: str | None = None,
) -> Provisioned:
    """Create the thing, its certificate (policy and thing attached), its HTTPS credential and its
    registry item, and write `out` with device.toml, certificate, key and root CA.

    `api_key` registers a given key instead of a new one (the local stack's GASMON_API_KEY).
    """
    _check_name("thing", thing)
    _check_name("group", group)
    for sensor in sensors:
        _check_name("sensor id", sensor)
    if location:
        try:
            parse_gps(location)
        except ValueError as exc:
            raise AdminError(f"--location {location!r}: {exc}") from None
    if device(target, thing) is not None or thing_exists(target, thing):
        raise AdminError(
            f"{thing} is already provisioned: `gasmon-admin rotate {thing}` gives it a new key, "
            f"`gasmon-admin revoke {thing}` retires it"
        )
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise AdminError(f"{out} is not empty: choose a new folder for {thing}'s files")
    key = api_key or new_key()
    key_hash = hash_key(key)
    if _get(target, KEY_PREFIX + key_hash) is not None:
        raise AdminError("that key is already registered to another credential")
    now = _now()
    certificate_pem, key_pem, certificate_id, certificate_arn = _certificate(target, thing)
    created_thing = False
    try:
        target.iot.create_thing(thingName=thing, attributePayload={"attributes": {"group": group}})
        created_thing = True
        target.iot.attach_policy(policyName=target.device_policy, target=certificate_arn)
        target.iot.attach_thing_principal(thingName=thing, principal=certificate_arn)
        record = DeviceRecord(
            thing=thing,
            groupid=group,
            sensors=list(sensors),
            location=location,
            key_hashes=[key_hash],
            certificate_id=certificate_id,
            created_at=now,
        )
        credential = Credential(key_hash=key_hash, role="device", name=thing, groupid=group)
        target.dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": target.device_table,
                        "Item": item_of_device(record),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": target.device_table,
                        "Item": item_of_credential(credential),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except Exception:
        _undo_certificate(target, thing if created_thing else None, certificate_id, certificate_arn)
        raise
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    (out / CERT_FILE).write_text(certificate_pem)
    _write_private(out / KEY_FILE, key_pem)
    (out / ROOT_CA_FILE).write_text(root_ca(target))
    _write_private(out / CONFIG_FILE, device_toml(target, thing, group, key, out, location, sensors))
    return Provisioned(thing, group, key, str(out), certificate_id)


def _undo_certificate(target: Target, thing: str | None, certificate_id: str, certificate_arn: str) -> None:
    """Best effort: a provision that failed half-way leaves no thing or active certificate behind."""
    steps = []
    if thing is not None:
        steps.append(lambda: target.iot.detach_thing_principal(thingName=thing, principal=certificate_arn))
        steps.append(lambda: target.iot.delete_thing(thingName=thing))
    steps.append(lambda: target.iot.detach_policy(policyName=target.device_policy, target=certificate_arn))
    steps.append(lambda: target.iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE"))
    steps.append(lambda: target.iot.delete_certificate(certificateId=certificate_id))
    for step in steps:
        try:
            step()
        except Exception:  # noqa: S112 - cleanup goes on with the next step
            continue


def _set_credential(target: Target, key_hash: str, **changes: Any) -> None:
    item = _get(target, KEY_PREFIX + key_hash)
    if item is None:
        return
    updated = credential_of_item(item).model_copy(update=changes)
    target.dynamodb.put_item(TableName=target.device_table, Item=item_of_credential(updated))


def revoke(target: Target, thing: str) -> DeviceRecord:
    """Disable every credential of `thing`, deactivate its certificate, mark it revoked.

    API Gateway may keep using a cached answer for the authorizer's TTL: the key stops working
    within that period (AuthorizerCacheSeconds)."""
    record = device(target, thing)
    if record is None:
        raise AdminError(f"{thing} is not in the device registry")
    for key_hash in record.key_hashes:
        _set_credential(target, key_hash, state="revoked")
    if record.certificate_id:
        try:
            target.iot.update_certificate(certificateId=record.certificate_id, newStatus="INACTIVE")
        except target.iot.exceptions.ResourceNotFoundException:
            pass  # the certificate is gone already: nothing can connect with it
    revoked = record.model_copy(update={"state": "revoked"})
    target.dynamodb.put_item(TableName=target.device_table, Item=item_of_device(revoked))
    return revoked


def rotate(target: Target, thing: str, grace: timedelta = timedelta(hours=24)) -> dict[str, str]:
    """A new key for `thing`; its current keys stay valid for `grace`, then stop."""
    record = device(target, thing)
    if record is None:
        raise AdminError(f"{thing} is not in the device registry")
    if record.state == "revoked":
        raise AdminError(f"{thing} is revoked: provision it again under a new thing name")
    now = _now()
    until = now + grace
    for key_hash in record.key_hashes:
        item = _get(target, KEY_PREFIX + key_hash)
        if item is not None:
            old = credential_of_item(item)
            if old.state == "active" and (old.expires_at is None or old.expires_at > until):
                _set_credential(target, key_hash, expires_at=until)
    key = add_key(target, record)
    return {
        "thing": thing,
        "api_key": key,
        "credential_id": credential_id(hash_key(key)),
        "old_keys_valid_until": until.isoformat(),
    }


def add_key(target: Target, record: DeviceRecord, api_key: str | None = None) -> str:
    """Register one more key (new, or the given one) for a registered device; returns it."""
    key = api_key or new_key()
    key_hash = hash_key(key)
    credential = Credential(key_hash=key_hash, role="device", name=record.thing, groupid=record.groupid)
    target.dynamodb.put_item(
        TableName=target.device_table,
        Item=item_of_credential(credential),
        ConditionExpression="attribute_not_exists(pk)",
    )
    updated = record.model_copy(update={"key_hashes": [*record.key_hashes, key_hash]})
    target.dynamodb.put_item(TableName=target.device_table, Item=item_of_device(updated))
    return key


def viewer(target: Target, name: str, api_key: str | None = None) -> dict[str, str]:
    """A new viewer key (dashboard and query API, read-only) under `name`."""
    _check_name("viewer", name)
    key = api_key or new_key()
    key_hash = hash_key(key)
    credential = Credential(key_hash=key_hash, role="viewer", name=name)
    target.dynamodb.put_item(
        TableName=target.device_table,
        Item=item_of_credential(credential),
        ConditionExpression="attribute_not_exists(pk)",
    )
    existing = _get(target, VIEWER_PREFIX + name)
    hashes = list(from_item(existing).get("key_hashes") or []) if existing else []
    created_at = from_item(existing).get("created_at") if existing else _now().isoformat()
    fields: dict[str, Any] = {"pk": VIEWER_PREFIX + name, "name": name, "key_hashes": [*hashes, key_hash]}
    fields |= {"state": "active", "created_at": created_at}
    target.dynamodb.put_item(TableName=target.device_table, Item=to_item(fields))
    return {"viewer": name, "api_key": key, "credential_id": credential_id(key_hash)}


def key_is_active(target: Target, key: str) -> bool:
    """Whether `key` is a registered, usable credential (the local stack reuses saved keys)."""
    item = _get(target, KEY_PREFIX + hash_key(key))
    return item is not None and credential_of_item(item).usable(_now())


def list_entries(target: Target) -> list[dict[str, Any]]:
    """Every device and viewer in the registry (a Scan: an operator's command, not a hot path)."""
    entries: list[dict[str, Any]] = []
    paginator = target.dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=target.device_table):
        for item in page.get("Items", []):
            key = item["pk"]["S"]
            if key.startswith(THING_PREFIX):
                record = device_of_item(item)
                entries.append(
                    {
                        "kind": "device",
                        "name": record.thing,
                        "group": record.groupid,
                        "state": record.state,
                        "location": record.location,
                        "sensors": record.sensors,
                        "credential_ids": record.credential_ids,
                        "certificate_id": record.certificate_id,
                        "created_at": record.created_at.isoformat(),
                        "last_seen": record.last_seen.isoformat() if record.last_seen else None,
                    }
                )
            elif key.startswith(VIEWER_PREFIX):
                fields = from_item(item)
                entries.append(
                    {
                        "kind": "viewer",
                        "name": fields.get("name"),
                        "group": None,
                        "state": fields.get("state", "active"),
                        "credential_ids": [credential_id(h) for h in fields.get("key_hashes") or []],
                        "created_at": fields.get("created_at"),
                    }
                )
    return sorted(entries, key=lambda entry: (entry["kind"], str(entry["name"])))
