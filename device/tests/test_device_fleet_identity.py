"""`gasmon-device simulate`'s virtual devices: a prefix of their own, and one provisioned identity
each (issue 15). The end-to-end run against `make local` is in tests/e2e/test_docs_commands.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from gasmon_device.cli import main
from gasmon_device.config import ConfigError
from gasmon_device.fleet_identity import check_prefix, ensure_identities, thing_names

DEVICE_TOML = """thing_name = "{thing}"
groupid = "sim-dev"

[api]
endpoint = "http://127.0.0.1:9/readings"
api_key = "key-of-{thing}"

[mqtt]
host = "127.0.0.1"
port = 8883
tls = true
"""


class FakeAdmin:
    """Stands in for the `gasmon-admin` process: records its arguments, writes the folder it would."""

    def __init__(self, returncode: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode

    def __call__(self, arguments: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(arguments))
        if self.returncode:
            return subprocess.CompletedProcess(arguments, self.returncode, "", "gasmon-admin: sim-dev-01 is taken\n")
        thing = arguments[arguments.index("provision") + 1]
        out = Path(arguments[arguments.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "device.toml").write_text(DEVICE_TOML.format(thing=thing))
        return subprocess.CompletedProcess(arguments, 0, "{}", "")


def test_the_default_prefix_is_not_the_local_stacks_own_fleet(tmp_path: Path, capsys) -> None:
    # Given `make local`'s fleet, named sim-pi-01...
    # When simulate is asked to use the same names against it
    # Then it refuses, naming the clash, before anything connects
    with pytest.raises(ConfigError, match="DUPLICATE_CLIENTID"):
        check_prefix("sim-pi", local=True)
    # And the default names things apart from it
    assert thing_names(check_prefix("sim-dev", local=True), 2) == ["sim-dev-01", "sim-dev-02"]
    # And a prefix that cannot be a thing name and a group is refused by the command line
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"api": "http://127.0.0.1:9", "api_key": "k", "data_dir": str(tmp_path)}))
    assert main(["--endpoints-file", str(endpoints), "simulate", "--prefix", "a/b"]) == 2
    assert "--prefix 'a/b'" in capsys.readouterr().err


def test_missing_identities_are_provisioned_once_through_gasmon_admin(tmp_path: Path) -> None:
    # Given a local stack's endpoints file and no provisioned folders yet
    endpoints = tmp_path / "endpoints.json"
    admin = FakeAdmin()
    things = ["sim-dev-01", "sim-dev-02"]
    sensors = [["0005", "0006", "0007", "0008"], ["0009", "0010", "0011", "0012"]]

    # When the identities are asked for twice
    first = ensure_identities(
        things, sensors, tmp_path / "fleet", group="sim-dev", endpoints_file=endpoints, run=admin, admin=["adm"]
    )
    second = ensure_identities(
        things, sensors, tmp_path / "fleet", group="sim-dev", endpoints_file=endpoints, run=admin, admin=["adm"]
    )

    # Then gasmon-admin provisioned each device once, in its own group, with its sensor ids
    assert admin.calls == [
        ["adm", "--endpoints-file", str(endpoints), "provision", thing, "--group", "sim-dev", "--sensors", *ids,
         "--out", str(tmp_path / "fleet" / thing)]
        for thing, ids in zip(things, sensors, strict=True)
    ]  # fmt: skip
    # And each device has its own key, group and TLS connection
    assert [i.api_key for i in first] == ["key-of-sim-dev-01", "key-of-sim-dev-02"] == [i.api_key for i in second]
    assert {i.groupid for i in first} == {"sim-dev"} and all(i.mqtt.tls for i in first)


def test_a_failed_provision_or_a_deployed_stack_without_folders_says_what_to_run(tmp_path: Path) -> None:
    # Given gasmon-admin refusing
    with pytest.raises(ConfigError, match="provisioning sim-dev-01 failed: gasmon-admin: sim-dev-01 is taken"):
        ensure_identities(
            ["sim-dev-01"], [["0005"]], tmp_path, group="sim-dev", endpoints_file=tmp_path / "e.json",
            run=FakeAdmin(returncode=1), admin=["adm"],
        )  # fmt: skip
    # Given no local stack (a deployed one): nothing is provisioned behind the operator's back
    with pytest.raises(ConfigError, match="gasmon-admin --stack NAME provision sim-dev-01 --group sim-dev"):
        ensure_identities(["sim-dev-01"], [["0005"]], tmp_path, group="sim-dev", endpoints_file=None)
