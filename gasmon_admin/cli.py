"""`gasmon-admin [--stack NAME | --local | --endpoints-file F] COMMAND ...`

gasmon-admin --local provision pi-kitchen --group 5 --location 37.61,126.99 --out ./pi-kitchen
gasmon-admin --stack gasmon list
gasmon-admin --stack gasmon revoke pi-kitchen
gasmon-admin --stack gasmon reindex-seed --endpoint https://<OpenSearchEndpoint> [--delete-seed]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gasmon_admin import commands, reindex_seed
from gasmon_admin.target import DEFAULT_ENDPOINTS_FILE, AdminError, Target, from_endpoints, from_stack

# Each adds one subcommand; a new command is one more function here.
SUBCOMMANDS: list[Callable[[Any], object]] = [
    commands.register_provision,
    commands.register_list,
    commands.register_revoke,
    commands.register_rotate,
    commands.register_viewer,
    reindex_seed.add_parser,  # talks to OpenSearch only: dispatched before a target is built
]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gasmon-admin", description="Provision and manage gasmon devices and viewers")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", metavar="NAME", help="a deployed stack (boto3's default credentials)")
    where.add_argument("--local", action="store_true", help=f"the `make local` stack ({DEFAULT_ENDPOINTS_FILE})")
    where.add_argument("--endpoints-file", type=Path, metavar="F", help="a local stack's endpoints.json")
    parser.add_argument("--region", help="AWS region of --stack (default: boto3's)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def target_of(args: argparse.Namespace) -> Target:
    if args.stack:
        return from_stack(args.stack, args.region)
    return from_endpoints(args.endpoints_file or DEFAULT_ENDPOINTS_FILE)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "reindex_seed", None) is not None:
        return int(args.reindex_seed(args))
    try:
        status: int = args.run(target_of(args), args)
    except AdminError as exc:
        print(f"gasmon-admin: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
