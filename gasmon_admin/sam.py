"""`make deploy`, `make delete`, `make logs`: the SAM CLI commands they run, built from samconfig.toml
and template.yaml.

    python -m gasmon_admin.sam deploy [--config-env default] [--stack NAME] [--guided] [--dry-run] [-- ARGS]
    python -m gasmon_admin.sam delete [--stack NAME] [--region R] [--dry-run]
    python -m gasmon_admin.sam logs --function IngestFunction [--stack NAME] [--dry-run]
    python -m gasmon_admin.sam smoke [--stack NAME | --local --data-dir .local] [--dry-run]

The commands are built by pure functions (tests check them without AWS); `--dry-run` prints
them instead of running them. `deploy` is guided (`sam deploy --guided`) until samconfig.toml
holds the answers of a guided run for the config env (its `deploy.parameters` name a stack),
then plain `sam deploy` reads them from there; it always runs `sam build` first. `delete` names
what the template keeps after `sam delete` (DeletionPolicy Retain) and the commands that remove it.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


class DeployError(Exception):
    """A wrong argument or missing file; the message says what to pass instead."""


@dataclass(frozen=True)
class SamConfig:
    """What samconfig.toml says for one config env (`[<env>.<command>.parameters]`)."""

    env: str
    sections: Mapping[str, Mapping[str, Any]]

    def value(self, command: str, key: str) -> Any:
        """A parameter as sam reads it: the command's own section first, then `global`."""
        for section in (command, "global"):
            found = self.sections.get(section, {}).get(key)
            if found not in (None, ""):
                return found
        return None

    @property
    def stack_name(self) -> str | None:
        name = self.value("deploy", "stack_name")
        return str(name) if name else None

    @property
    def region(self) -> str | None:
        region = self.value("deploy", "region")
        return str(region) if region else None

    @property
    def guided_saved(self) -> bool:
        """Whether `sam deploy --guided` has saved its answers for this env (it writes stack_name
        into `deploy.parameters`; the committed file names the stack only under `global`)."""
        return bool(self.sections.get("deploy", {}).get("stack_name"))


def read_samconfig(path: Path = SAMCONFIG, env: str = "default") -> SamConfig:
    """The sections of `env` in samconfig.toml (empty when the file or the env is missing)."""
    if not path.exists():
        return SamConfig(env, {})
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DeployError(f"{path} is not valid TOML: {exc}") from None
    env_table = document.get(env) or {}
    sections = {
        name: dict(table.get("parameters") or {}) for name, table in env_table.items() if isinstance(table, dict)
    }
    return SamConfig(env, sections)


def _template(path: Path) -> dict[str, Any]:
    from gasmon_local.template import load

    if not path.exists():
        raise DeployError(f"{path} does not exist")
    return load(path)


def function_ids(template: Mapping[str, Any]) -> list[str]:
    """The logical ids of the template's Lambda functions, as `sam logs --name` takes them."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    return [name for name, resource in resources.items() if resource.get("Type") in FUNCTION_TYPES]


@dataclass(frozen=True)
class Retained:
    """A resource `sam delete` leaves behind (DeletionPolicy: Retain)."""

    logical_id: str
    kind: str
    condition: str | None = None


def retained_resources(template: Mapping[str, Any]) -> list[Retained]:
    """Every resource of the template with `DeletionPolicy: Retain`, in template order."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    return [
        Retained(name, str(resource.get("Type")), resource.get("Condition"))
        for name, resource in resources.items()
        if resource.get("DeletionPolicy") == "Retain"
    ]


def removal_commands(item: Retained, physical_id: str | None, region: str | None) -> list[str]:
    """The AWS CLI commands that delete one retained resource for good (its data with it)."""
    name = physical_id or f"<{item.logical_id} physical id>"
    where = f" --region {region}" if region else ""
    if item.kind == "AWS::DynamoDB::Table":
        return [f"aws dynamodb delete-table --table-name {name}{where}"]
    if item.kind == "AWS::OpenSearchService::Domain":
        return [f"aws opensearch delete-domain --domain-name {name}{where}"]
    if item.kind == "AWS::S3::Bucket":
        # The bucket is versioned: every version and delete marker must go before `rb`
        # (1,000 per call: repeat the two delete-objects lines until they find nothing).
        versions = (
            f"aws s3api delete-objects --bucket {name}{where} --delete "
            f'"$(aws s3api list-object-versions --bucket {name}{where} --max-items 1000 --output json '
            "--query '{Objects: Versions[].{Key: Key, VersionId: VersionId}}')\""
        )
        markers = (
            f"aws s3api delete-objects --bucket {name}{where} --delete "
            f'"$(aws s3api list-object-versions --bucket {name}{where} --max-items 1000 --output json '
            "--query '{Objects: DeleteMarkers[].{Key: Key, VersionId: VersionId}}')\""
        )
        return [versions, markers, f"aws s3 rb s3://{name}{where}"]
    return [f"# {item.logical_id} ({item.kind}): delete it in the console"]


def _region_args(region: str | None) -> list[str]:
    return ["--region", region] if region else []


def deploy_commands(
    config: SamConfig,
    *,
    stack: str | None = None,
    region: str | None = None,
    guided: bool = False,
    extra: Sequence[str] = (),
    sam: str = "sam",
) -> list[list[str]]:
    """`sam build`, then `sam deploy --guided` the first time (or when asked), else `sam deploy`."""
    env = ["--config-env", config.env]
    build = [sam, "build", "--template", "template.yaml", *env]
    deploy = [sam, "deploy", *env]
    if guided or not config.guided_saved:
        deploy.append("--guided")
    if stack:
        deploy += ["--stack-name", stack]
    deploy += _region_args(region)
    return [build, deploy + list(extra)]


def stack_of(config: SamConfig, stack: str | None) -> str:
    """The stack a command works on: the one named, else samconfig's."""
    name = stack or config.stack_name
    if not name:
        raise DeployError(f"no stack: pass STACK=NAME (samconfig.toml names none for config env {config.env!r})")
    return name


def delete_command(config: SamConfig, stack: str | None, region: str | None, sam: str = "sam") -> list[str]:
    """`sam delete` for the stack (it asks for confirmation)."""
    name = stack_of(config, stack)
    return [sam, "delete", "--stack-name", name, "--config-env", config.env, *_region_args(region or config.region)]


def logs_command(
    config: SamConfig,
    template: Mapping[str, Any],
    function: str | None,
    stack: str | None,
    region: str | None,
    sam: str = "sam",
) -> list[str]:
    """`sam logs --tail` for one function of the stack; an unknown function is a DeployError
    listing the valid logical ids."""
    valid = function_ids(template)
    if not function or function not in valid:
        said = f"unknown FUNCTION={function}" if function else "missing FUNCTION="
        raise DeployError(f"{said}: one of {', '.join(valid)}")
    name = stack_of(config, stack)
    return [sam, "logs", "--stack-name", name, "--name", function, "--tail", *_region_args(region or config.region)]


def smoke_command(
    config: SamConfig,
    *,
    stack: str | None,
    region: str | None,
    local: bool,
    data_dir: Path,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """`gasmon-smoke` against the local stack in `data_dir`, or against the stack (samconfig's by
    default, in samconfig's region unless one is given)."""
    command = [python, "-m", "gasmon_admin.smoke"]
    if local:
        return [*command, "--endpoints-file", str(data_dir / "endpoints.json"), *extra]
    command += ["--stack", stack_of(config, stack), *_region_args(region or config.region)]
    return [*command, *extra]


def physical_ids(stack: str, region: str | None) -> dict[str, str]:
    """Logical id -> physical id of the stack's resources (before it is deleted); {} if unreadable."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.Session(region_name=region).client("cloudformation")
        resources = client.describe_stack_resources(StackName=stack)["StackResources"]
    except (ImportError, BotoCoreError, ClientError) as exc:
        print(f"(could not read the stack's resources: {exc}; names below are placeholders)", file=sys.stderr)
        return {}
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r.get("PhysicalResourceId")}


def retained_report(
    template: Mapping[str, Any], physical: Mapping[str, str], region: str | None, stack: str
) -> list[str]:
    """What `make delete` prints after `sam delete`: each retained resource and how to remove it."""
    lines = [f"Kept after deleting {stack} (DeletionPolicy: Retain; they hold data, and they keep costing money):"]
    for item in retained_resources(template):
        known = physical.get(item.logical_id)
        condition = f", only if {item.condition}" if item.condition else ""
        lines.append(f"  {item.logical_id} ({item.kind}{condition}): {known or 'name unknown'}")
        lines += [f"      {command}" for command in removal_commands(item, known, region)]
    lines.append("  SAM's artifact bucket (stack aws-sam-cli-managed-default) is shared by every SAM app of the")
    lines.append("  account and region: keep it, or empty it and delete that stack too.")
    lines.append("  docs/deploy.md, section 'Deleting', says what each one holds.")
    return lines


Runner = Callable[[list[str]], int]


def _run(command: list[str]) -> int:
    status = subprocess.call(command)
    if status < 0:  # killed by a signal: say so, and exit as a shell would (128 + signal)
        print(f"{shlex.join(command[:3])}: killed by signal {-status}", file=sys.stderr)
        return 128 - status
    return status


def _show(command: list[str]) -> int:
    print(shlex.join(command))
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gasmon_admin.sam", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("deploy", "delete", "logs", "smoke"))
    parser.add_argument("--config-env", default="default", help="samconfig.toml environment (default)")
    parser.add_argument("--stack", help="stack name (default: samconfig.toml's)")
    parser.add_argument("--region", help="AWS region (default: samconfig.toml's, then your profile's)")
    parser.add_argument("--function", help="logs: the function's logical id in template.yaml")
    parser.add_argument("--guided", action="store_true", help="deploy: ask every question again")
    parser.add_argument("--local", action="store_true", help="smoke: against `make local` instead of a stack")
    parser.add_argument("--data-dir", type=Path, default=Path(".local"), help="smoke --local: its data dir (.local)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("--sam", default="sam", help="the sam executable")
    parser.add_argument("--samconfig", type=Path, default=SAMCONFIG)
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    return parser


def main(argv: list[str] | None = None, run: Runner | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` goes to sam deploy or gasmon-smoke as it is.
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    runner: Runner = run or (_show if args.dry_run else _run)
    try:
        config = read_samconfig(args.samconfig, args.config_env)
        if args.action == "logs":
            template = _template(args.template)
            return runner(logs_command(config, template, args.function, args.stack, args.region, args.sam))
        if args.action == "smoke":
            return runner(
                smoke_command(
                    config,
                    stack=args.stack,
                    region=args.region,
                    local=args.local,
                    data_dir=args.data_dir,
                    extra=args.extra,
                )
            )
        if args.action == "deploy":
            commands = deploy_commands(
                config, stack=args.stack, region=args.region, guided=args.guided, extra=args.extra, sam=args.sam
            )
            if "--guided" in commands[1]:
                print(
                    "make deploy: first deploy for config env "
                    f"{config.env!r}: sam asks for the stack name, region and parameters "
                    "and saves the answers to samconfig.toml (docs/deploy.md explains each)",
                    file=sys.stderr,
                )
            for command in commands:
                status = runner(command)
                if status != 0:
                    return status
            return 0
        template = _template(args.template)
        stack = stack_of(config, args.stack)
        region = args.region or config.region
        physical = {} if args.dry_run else physical_ids(stack, region)
        status = runner(delete_command(config, args.stack, args.region))
        if status != 0:
            return status
        print("\n".join(retained_report(template, physical, region, stack)))
        return 0
    except DeployError as exc:
        print(f"make {args.action}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
