"""The subcommands of `gasmon-admin`: one `register_*` function each, listed in `cli.SUBCOMMANDS`.

Each adds its parser and sets `run(target, args) -> int`; printing is the command's business.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from gasmon_admin import devices
from gasmon_admin.target import Target

Subparsers = Any  # argparse's _SubParsersAction


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def register_provision(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("provision", help="create a device: IoT thing, certificate, HTTPS key, registry")
    parser.add_argument("thing", help="thing name (also the MQTT client id), e.g. pi-kitchen")
    parser.add_argument("--group", required=True, help="the groupid its readings carry")
    parser.add_argument("--sensors", nargs="*", default=[], help="sensor ids (co, no2, c2h5oh, h2 in order)")
    parser.add_argument("--location", help="LAT,LON of the device")
    parser.add_argument(
        "--out", required=True, type=Path, help="folder to write device.toml, certificate, key, root CA"
    )

    def run(target: Target, args: argparse.Namespace) -> int:
        location = ", ".join(part.strip() for part in args.location.split(",")) if args.location else None
        done = devices.provision(target, args.thing, args.group, args.out, args.sensors, location)
        print(json.dumps(done.as_json()))
        return 0

    parser.set_defaults(run=run)


def register_list(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("list", help="devices and viewers in the registry")
    parser.add_argument("--json", action="store_true", help="one JSON array instead of a table")

    def run(target: Target, args: argparse.Namespace) -> int:
        entries = devices.list_entries(target)
        if args.json:
            _print_json(entries)
            return 0
        columns = ("kind", "name", "group", "state", "location", "credential_ids", "last_seen")
        rows = [[_cell(entry.get(column)) for column in columns] for entry in entries]
        widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
        print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)))
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        return 0

    parser.set_defaults(run=run)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def register_revoke(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("revoke", help="retire a device: keys disabled, certificate deactivated")
    parser.add_argument("thing")

    def run(target: Target, args: argparse.Namespace) -> int:
        record = devices.revoke(target, args.thing)
        _print_json({"thing": record.thing, "state": record.state, "certificate_id": record.certificate_id})
        print("API Gateway may accept a cached key for up to AuthorizerCacheSeconds (300 s).", file=sys.stderr)
        return 0

    parser.set_defaults(run=run)


def register_rotate(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("rotate", help="a new key for a device; the old one works for a grace period")
    parser.add_argument("thing")
    parser.add_argument("--grace-hours", type=float, default=24.0, help="how long the old key keeps working (24)")

    def run(target: Target, args: argparse.Namespace) -> int:
        _print_json(devices.rotate(target, args.thing, timedelta(hours=args.grace_hours)))
        return 0

    parser.set_defaults(run=run)


def register_viewer(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("viewer", help="a read-only key for the dashboard and the query API")
    parser.add_argument("name")

    def run(target: Target, args: argparse.Namespace) -> int:
        issued = devices.viewer(target, args.name)
        if target.api_url:
            issued["dashboard"] = f"{target.api_url.rstrip('/')}/#key={issued['api_key']}"
        _print_json(issued)
        return 0

    parser.set_defaults(run=run)
