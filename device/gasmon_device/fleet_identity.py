"""Who `gasmon-device simulate`'s virtual Pis are: their thing names and their credentials.

Since every device has its own API key and certificate, a virtual device is a provisioned device
like any other. Its folder (`device.toml`, certificate, key, root CA) is what `gasmon-admin
provision --out` writes; `simulate` reads one folder per device, `<credentials>/<prefix>-NN/`.
Against `make local` (`--local`) the folders live in the stack's `<data-dir>/fleet/`, beside its
own fleet's, and any that is missing is provisioned by running `gasmon-admin` as an operator
would (the agent never imports the admin tool or the Lambda layer: on a Pi neither is installed).

The default prefix `sim-dev` differs from `make local`'s own fleet (`sim-pi`): two clients with
one client id kick each other off the broker (DUPLICATE_CLIENTID), and two devices posting the
same group and sensor ids would collide on reading ids. Each prefix is its own group.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .config import ConfigError, DeviceConfig, MqttSettings, load_config, read_endpoints_file

DEFAULT_PREFIX = "sim-dev"
LOCAL_STACK_PREFIX = "sim-pi"  # `make local`'s own simulated fleet (gasmon_local.identities)
CONFIG_FILE = "device.toml"
# AWS IoT thing names allow more, but a prefix also becomes a group id and a topic level.
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,50}$")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class VirtualIdentity:
    """One virtual device's credentials, as read from its provisioned folder."""

    thing: str
    groupid: str
    api_key: str
    mqtt: MqttSettings


def check_prefix(prefix: str, local: bool) -> str:
    """The prefix, if it can name things and a group; with `local`, it must not be the stack's own."""
    if not _PREFIX.match(prefix):
        raise ConfigError(f"--prefix {prefix!r}: use 1-50 of A-Z a-z 0-9 _ -")
    if local and prefix == LOCAL_STACK_PREFIX:
        raise ConfigError(
            f"--prefix {prefix}: that is `make local`'s own fleet; two clients with one client id kick each other "
            "off the broker (DUPLICATE_CLIENTID). Choose another prefix (default sim-dev)"
        )
    return prefix


def thing_names(prefix: str, devices: int) -> list[str]:
    """`<prefix>-01`, `<prefix>-02`, ...: the things (and MQTT client ids) of the virtual devices."""
    return [f"{prefix}-{number:02d}" for number in range(1, devices + 1)]


def local_fleet_dir(endpoints_file: Path) -> Path:
    """`<data-dir>/fleet` of the stack that wrote `endpoints_file` (its `data_dir`, else the file's folder)."""
    data = read_endpoints_file(endpoints_file)
    data_dir = data.get("data_dir") if isinstance(data, dict) else None
    return (Path(data_dir) if data_dir else endpoints_file.resolve().parent) / "fleet"


def admin_command() -> list[str] | None:
    """How to run `gasmon-admin` here: next to this interpreter (a venv), else on PATH; None if absent."""
    beside = Path(sys.executable).parent / "gasmon-admin"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("gasmon-admin")
    return [found] if found else None


def provision_arguments(
    endpoints_file: Path, thing: str, group: str, folder: Path, sensors: Sequence[str]
) -> list[str]:
    """`gasmon-admin` arguments that provision one virtual device into `folder`."""
    return [
        "--endpoints-file",
        str(endpoints_file),
        "provision",
        thing,
        "--group",
        group,
        "--sensors",
        *sensors,
        "--out",
        str(folder),
    ]


def _run(arguments: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(arguments), capture_output=True, text=True, timeout=60, check=False)


def ensure_identities(
    things: Sequence[str],
    sensors: Sequence[Sequence[str]],
    credentials_dir: Path,
    *,
    group: str,
    endpoints_file: Path | None,
    run: Runner = _run,
    admin: list[str] | None = None,
) -> list[VirtualIdentity]:
    """Each thing's identity from `<credentials_dir>/<thing>/device.toml`.

    With `endpoints_file` (a local stack), a missing folder is provisioned first with `gasmon-admin
    --endpoints-file F provision <thing> --group <group> --sensors ... --out <folder>`; without
    it (a deployed stack) a missing folder is an error that names the command to run.
    """
    identities = []
    for thing, device_sensors in zip(things, sensors, strict=True):
        folder = credentials_dir / thing
        if not (folder / CONFIG_FILE).is_file():
            if endpoints_file is None:
                raise ConfigError(
                    f"{folder / CONFIG_FILE} is missing: provision {thing} first, e.g. `gasmon-admin --stack NAME "
                    f"provision {thing} --group {group} --out {folder}`"
                )
            _provision(thing, group, folder, device_sensors, endpoints_file, run, admin)
        identities.append(read_identity(folder / CONFIG_FILE))
    return identities


def _provision(
    thing: str,
    group: str,
    folder: Path,
    sensors: Sequence[str],
    endpoints_file: Path,
    run: Runner,
    admin: list[str] | None,
) -> None:
    arguments = provision_arguments(endpoints_file, thing, group, folder, sensors)
    command = admin if admin is not None else admin_command()
    if command is None:
        raise ConfigError(
            f"{thing} has no credentials in {folder} and gasmon-admin is not installed here: run "
            f"`gasmon-admin {' '.join(arguments)}` where it is (the repository's .venv), then simulate again"
        )
    done = run([*command, *arguments])
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            f"provisioning {thing} failed: {reason[-1] if reason else f'exit {done.returncode}'} "
            f"(`gasmon-admin {' '.join(arguments)}`)"
        )


def read_identity(config_file: Path) -> VirtualIdentity:
    """A provisioned device's thing, group, key and MQTT settings from its `device.toml`.

    The environment is left out on purpose: one `GASMON_API_KEY` would give every virtual device
    the same key. Reconnects are quicker than a Pi's (1 s to 30 s), as the local fleet's are.
    """
    config: DeviceConfig = load_config(config_file, environ={})
    if not config.api.api_key:
        raise ConfigError(f"{config_file} holds no [api] api_key: provision the device again")
    mqtt = replace(config.mqtt, clean_session=True, reconnect_base_seconds=1.0, reconnect_cap_seconds=30.0)
    return VirtualIdentity(config.thing_name, config.groupid, config.api.api_key, mqtt)
