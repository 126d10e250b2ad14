"""The local stack's credentials, provisioned through `gasmon-admin`'s Python API as an operator
would: one device per simulated Pi (`sim-pi-01`, group 1, ...) with its folder under
`<data-dir>/fleet/<thing>/`, and one viewer key for the dashboard (`<data-dir>/viewer-key`).

Keys are kept in those files (mode 600) and reused on restart while the registry (restored with
the tables) still knows them. `GASMON_API_KEY`, when set, is registered as `sim-pi-01`'s key.
"""

from __future__ import annotations

import logging
import shutil
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from gasmon_admin import devices
from gasmon_admin.target import Target

log = logging.getLogger("local")
VIEWER_NAME = "local-viewer"
THING_PREFIX = "sim-pi"
SEOUL = (37.61, 126.99)


@dataclass(frozen=True)
class LocalCredentials:
    """Device keys in fleet order (sim-pi-01 first) and the viewer key."""

    device_keys: list[str]
    things: list[str]
    viewer_key: str


def _saved_key(path: Path) -> str | None:
    try:
        if path.suffix == ".toml":
            return str(tomllib.loads(path.read_text())["api"]["api_key"]) or None
        return path.read_text().strip() or None
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def _replace_key(config: Path, old: str | None, new: str) -> None:
    if config.exists() and old:
        config.write_text(config.read_text().replace(old, new))


def ensure_device(target: Target, number: int, fleet_dir: Path, preset_key: str | None = None) -> str:
    """The key of simulated device `number`, provisioning it (or giving it a key) as needed."""
    thing = f"{THING_PREFIX}-{number:02d}"
    folder = fleet_dir / thing
    config = folder / devices.CONFIG_FILE
    saved = _saved_key(config)
    wanted = preset_key or saved
    record = devices.device(target, thing)
    if record is not None and record.state == "active":
        if wanted and devices.key_is_active(target, wanted):
            key = wanted
        elif preset_key:
            key = devices.add_key(target, record, preset_key)
        else:
            key = devices.rotate(target, thing, grace=timedelta(0))["api_key"]
        _replace_key(config, saved, key)
        _restore_iot(target, thing, record.groupid, folder)
        return key
    if record is not None:  # revoked by the operator: a simulated device is simply made again
        target.dynamodb.delete_item(TableName=target.device_table, Key={"pk": {"S": f"thing#{thing}"}})
    shutil.rmtree(folder, ignore_errors=True)
    lat, lon = SEOUL[0] + 0.01 * number, SEOUL[1] + 0.01 * number
    done = devices.provision(target, thing, str(number), folder, location=f"{lat:.5f}, {lon:.5f}", api_key=preset_key)
    log.info("provisioned %s (group %s, certificate %s) in %s", thing, number, done.certificate_id[:12], folder)
    return done.api_key


def _restore_iot(target: Target, thing: str, group: str, folder: Path) -> None:
    """moto keeps IoT in memory: after a restart, register the device's thing and saved
    certificate again (same certificate, so the same certificate id)."""
    certificate = folder / devices.CERT_FILE
    if devices.thing_exists(target, thing) or not certificate.exists():
        return
    registered = target.iot.register_certificate_without_ca(certificatePem=certificate.read_text(), status="ACTIVE")
    target.iot.create_thing(thingName=thing, attributePayload={"attributes": {"group": group}})
    target.iot.attach_policy(policyName=target.device_policy, target=registered["certificateArn"])
    target.iot.attach_thing_principal(thingName=thing, principal=registered["certificateArn"])


def restore_other_devices(target: Target, fleet_dir: Path, own: set[str]) -> list[str]:
    """Register again in moto's IoT the other devices provisioned into `<data-dir>/fleet/` (the
    virtual Pis of `gasmon-device --local simulate`, `sim-dev-NN`) that the registry still holds
    as active, so their certificates connect after a restart as the stack's own do."""
    restored = []
    folders = sorted(fleet_dir.iterdir()) if fleet_dir.is_dir() else []
    for folder in folders:
        if folder.name in own or not (folder / devices.CONFIG_FILE).is_file():
            continue
        record = devices.device(target, folder.name)
        if record is not None and record.state == "active" and not devices.thing_exists(target, folder.name):
            _restore_iot(target, folder.name, record.groupid, folder)
            restored.append(folder.name)
    if restored:
        log.info("registered again in IoT: %s (provisioned into %s)", ", ".join(restored), fleet_dir)
    return restored


def ensure_viewer(target: Target, data_dir: Path) -> str:
    """The dashboard's viewer key (`<data-dir>/viewer-key`), issued once and reused."""
    path = data_dir / "viewer-key"
    saved = _saved_key(path)
    if saved and devices.key_is_active(target, saved):
        return saved
    key = devices.viewer(target, VIEWER_NAME)["api_key"]
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def ensure_credentials(target: Target, data_dir: Path, devices_wanted: int, env_key: str | None) -> LocalCredentials:
    """Credentials for `devices_wanted` simulated devices (at least one, whose key is the banner's
    `api_key`) and the viewer."""
    fleet_dir = data_dir / "fleet"
    count = max(1, devices_wanted)
    keys = [ensure_device(target, n, fleet_dir, env_key if n == 1 else None) for n in range(1, count + 1)]
    things = [f"{THING_PREFIX}-{n:02d}" for n in range(1, count + 1)]
    restore_other_devices(target, fleet_dir, set(things))
    return LocalCredentials(keys, things, ensure_viewer(target, data_dir))
