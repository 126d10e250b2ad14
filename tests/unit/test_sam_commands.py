"""`make deploy`, `make delete`, `make logs`, `make smoke`: the commands they run, checked without AWS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gasmon_admin import sam
from gasmon_admin.sam import DeployError, SamConfig
from gasmon_local.template import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load(ROOT / "template.yaml")

AFTER_GUIDED = """version = 0.1
[default.global.parameters]
stack_name = "gasmon"
[default.deploy.parameters]
stack_name = "gas-prod"
region = "eu-west-1"
capabilities = "CAPABILITY_IAM"
"""


def _recording(commands: list[list[str]], status: int = 0) -> sam.Runner:
    def run(command: list[str]) -> int:
        commands.append(command)
        return status

    return run


def test_the_first_deploy_is_guided_and_builds_first() -> None:
    # Given the committed samconfig.toml (no guided answers saved yet)
    config = sam.read_samconfig(ROOT / "samconfig.toml")
    # When make deploy builds its commands
    build, deploy = sam.deploy_commands(config)
    # Then it builds, then asks every question
    assert build[:2] == ["sam", "build"]
    assert deploy == ["sam", "deploy", "--config-env", "default", "--guided"]


def test_after_a_guided_deploy_it_deploys_from_samconfig(tmp_path: Path) -> None:
    # Given a samconfig.toml that sam deploy --guided has written its answers to
    path = tmp_path / "samconfig.toml"
    path.write_text(AFTER_GUIDED)
    config = sam.read_samconfig(path)
    # When make deploy builds its commands
    _, deploy = sam.deploy_commands(config)
    # Then it is a plain sam deploy reading the saved answers, unless GUIDED=1 asks again
    assert deploy == ["sam", "deploy", "--config-env", "default"]
    assert "--guided" in sam.deploy_commands(config, guided=True)[1]
    assert config.stack_name == "gas-prod" and config.region == "eu-west-1"


def test_a_config_env_without_answers_is_guided(tmp_path: Path) -> None:
    # Given answers saved for `default` only
    path = tmp_path / "samconfig.toml"
    path.write_text(AFTER_GUIDED)
    # When deploying config env `prod`, Then that one is guided and named on both commands
    build, deploy = sam.deploy_commands(sam.read_samconfig(path, "prod"), stack="gas-prod2", region="us-east-1")
    assert build[-2:] == ["--config-env", "prod"]
    assert deploy == [
        "sam",
        "deploy",
        "--config-env",
        "prod",
        "--guided",
        "--stack-name",
        "gas-prod2",
        "--region",
        "us-east-1",
    ]


def test_deploy_stops_when_the_build_fails() -> None:
    # Given a build that fails
    ran: list[list[str]] = []
    # When make deploy runs, Then it returns the build's status and never deploys
    assert sam.main(["deploy"], run=_recording(ran, status=1)) == 1
    assert [command[1] for command in ran] == ["build"]


def test_arguments_after_double_dash_go_to_sam_deploy() -> None:
    ran: list[list[str]] = []
    # When make deploy ARGS="--parameter-overrides LocalTimezone=UTC" runs
    assert sam.main(["deploy", "--", "--parameter-overrides", "LocalTimezone=UTC"], run=_recording(ran)) == 0
    # Then they end sam deploy's command line, not sam build's
    assert ran[1][-2:] == ["--parameter-overrides", "LocalTimezone=UTC"]
    assert "--parameter-overrides" not in ran[0]


def test_logs_takes_a_function_of_the_template_only() -> None:
    config = SamConfig("default", {"global": {"stack_name": "gasmon"}})
    template = {"Resources": {"PingFunction": {"Type": "AWS::Serverless::Function"}, "T": {"Type": "AWS::SNS::Topic"}}}
    # When FUNCTION is one of the template's functions, Then sam logs tails it in the stack
    assert sam.logs_command(config, template, "PingFunction", None, "eu-west-1") == [
        "sam",
        "logs",
        "--stack-name",
        "gasmon",
        "--name",
        "PingFunction",
        "--tail",
        "--region",
        "eu-west-1",
    ]
    # When it is missing or names another resource, Then the error lists the valid ones
    for wrong in (None, "T"):
        with pytest.raises(DeployError, match=r"FUNCTION=.*: one of PingFunction$"):
            sam.logs_command(config, template, wrong, None, None)


def test_logs_lists_every_function_of_template_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    # When make logs runs without FUNCTION
    assert sam.main(["logs"], run=_recording([])) == 2
    # Then one line names each Lambda function of template.yaml
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    functions = [k for k, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]
    assert "IngestFunction" in functions
    assert error.endswith("one of " + ", ".join(functions))


def test_a_stack_must_be_named_somewhere() -> None:
    # Given a config env that names no stack, Then delete and smoke ask for STACK=
    config = SamConfig("prod", {})
    with pytest.raises(DeployError, match="pass STACK=NAME"):
        sam.delete_command(config, None, None)
    with pytest.raises(DeployError, match="pass STACK=NAME"):
        sam.smoke_command(config, stack=None, region=None, local=False, data_dir=Path(".local"))


def test_delete_names_every_retained_resource_with_its_removal(capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[list[str]] = []
    # When make delete runs (dry: the stack's physical names are not read)
    assert sam.main(["delete", "--dry-run", "--stack", "gas-x"], run=_recording(ran)) == 0
    # Then sam delete runs for the stack, and every DeletionPolicy: Retain resource is named with its commands
    assert ran == [["sam", "delete", "--stack-name", "gas-x", "--config-env", "default", "--region", "ap-northeast-2"]]
    out = capsys.readouterr().out
    retained = [k for k, v in TEMPLATE["Resources"].items() if v.get("DeletionPolicy") == "Retain"]
    assert set(retained) >= {"ReadingsDomain", "ArchiveBucket", "DeviceTable"}
    for logical_id in retained:
        assert f"  {logical_id} (" in out
    assert "aws opensearch delete-domain" in out and "aws s3 rb" in out and "aws dynamodb delete-table" in out


def test_removal_commands_use_the_physical_names() -> None:
    bucket = sam.Retained("ArchiveBucket", "AWS::S3::Bucket")
    # Given the bucket's physical name, Then every command names it (versions, delete markers, the bucket)
    commands = sam.removal_commands(bucket, "gasmon-archivebucket-abc", "eu-west-1")
    assert len(commands) == 3 and all("gasmon-archivebucket-abc" in c and "eu-west-1" in c for c in commands)
    assert "Versions[]" in commands[0] and "DeleteMarkers[]" in commands[1]


def test_smoke_runs_against_the_local_stack_or_samconfigs_stack() -> None:
    config = sam.read_samconfig(ROOT / "samconfig.toml")
    local = sam.smoke_command(config, stack=None, region=None, local=True, data_dir=Path("/tmp/x"), python="py")
    assert local == ["py", "-m", "gasmon_admin.smoke", "--endpoints-file", "/tmp/x/endpoints.json"]
    deployed = sam.smoke_command(config, stack=None, region=None, local=False, data_dir=Path(".local"), python="py")
    assert deployed == ["py", "-m", "gasmon_admin.smoke", "--stack", "gasmon", "--region", "ap-northeast-2"]


def test_make_prints_the_commands_with_dry_run() -> None:
    # When make logs runs with DRY_RUN=1, Then it prints the sam command and runs nothing
    answer = subprocess.run(
        ["make", "--no-print-directory", "-s", "logs", "FUNCTION=QueryFunction", "STACK=gas-y", "DRY_RUN=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().endswith("logs --stack-name gas-y --name QueryFunction --tail --region ap-northeast-2")
    assert Path(sys.executable).parent.joinpath("sam").exists()
