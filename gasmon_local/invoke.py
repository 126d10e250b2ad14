"""`make invoke FUNCTION=<LogicalId> EVENT=events/<file>.json`: one invocation, like `sam local invoke`.

The function's environment is built as `sam local invoke --env-vars events/env.json` builds it:
the template's variables (Globals + the function's, intrinsics resolved), then the `Parameters`
section of the env file, then its section named after the function. One difference: SAM only
overrides variables the template declares, while this applies every variable of the env file
(events/env.json sets MAX_AGE_DAYS so the 2021 seed event is accepted).

AWS calls go to a running `make local` stack when `<data-dir>/endpoints.json` names one that
answers (`DATA_DIR=` picks the data dir), and readings go to that stack's store; otherwise AWS
calls go to an address that refuses at once, so nothing ever reaches real AWS, and readings go to
a temporary store removed afterwards, never to a file shared by every checkout. The handler's
response is printed as JSON on stdout (one line per invocation for an array of rule messages); an
error prints Lambda's error document and exits 1. A missing event file or an event of the wrong
shape for the function is one line naming what was expected (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gasmon_local.event_shapes import split_events
from gasmon_local.functions import ROOT, FunctionNotFoundError, FunctionRuntime
from gasmon_local.stack import process_environment
from gasmon_local.template import REGION, Stack, StackContext, TemplateError

NOWHERE = "http://127.0.0.1:9"  # the discard port: connection refused, instantly


def running_stack(data_dir: Path) -> dict[str, Any] | None:
    """The endpoints of a running `make local`, if its endpoints.json names one that answers."""
    path = data_dir / "endpoints.json"
    if not path.exists():
        return None
    endpoints: dict[str, Any] = json.loads(path.read_text())
    address = urlparse(str(endpoints.get("aws", "")))
    try:
        with socket.create_connection((address.hostname or "127.0.0.1", address.port or 80), timeout=1):
            return endpoints
    except OSError:
        return None


def env_file_variables(path: Path | None, logical_id: str) -> dict[str, str]:
    """Variables for one function from a SAM env-vars file (`Parameters`, then its own section)."""
    if path is None or not path.exists():
        return {}
    document = json.loads(path.read_text())
    variables = dict(document.get("Parameters") or {})
    variables |= document.get(logical_id) or {}
    return {key: str(value) for key, value in variables.items()}


def read_event(path: Path) -> tuple[Any, str | None]:
    """The event file's JSON, or a one-line reason it cannot be read."""
    if not path.exists():
        return None, f"no event file {path} (expected a JSON file such as events/ingest_seed_document.json)"
    try:
        return json.loads(path.read_text()), None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path} is not JSON ({exc}); expected a JSON event such as events/ingest_seed_document.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gasmon-invoke", description=__doc__.split("\n")[0])
    parser.add_argument("function", help="logical id of the function in the template, e.g. IngestFunction")
    parser.add_argument("event", type=Path, help="event JSON file, e.g. events/ingest_seed_document.json")
    parser.add_argument("--env-vars", type=Path, default=ROOT / "events" / "env.json", help="SAM env-vars file")
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--data-dir", type=Path, default=Path(".local"), help="where a running stack's data is")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)-8s %(message)s", stream=sys.stderr)

    event, problem = read_event(args.event)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    endpoints = running_stack(args.data_dir)
    with contextlib.ExitStack() as cleanup:
        if endpoints:
            aws_endpoint, iot_endpoint = str(endpoints["aws"]), str(endpoints["iot_data"])
            store = str(endpoints.get("sqlite_path") or args.data_dir / "readings.sqlite3")
            print(f"using the running local stack in {args.data_dir}: {aws_endpoint}, store {store}", file=sys.stderr)
        else:
            aws_endpoint = iot_endpoint = NOWHERE
            store = str(Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gasmon-invoke-"))) / "r.sqlite3")
            print(
                f"no running `make local` stack in {args.data_dir}: AWS calls will fail and readings go to a "
                "temporary store (start `make local`, or pick its data dir with DATA_DIR=)",
                file=sys.stderr,
            )
        code = _invoke(args, event, aws_endpoint, iot_endpoint, store)
    return code


def _invoke(args: argparse.Namespace, event: Any, aws_endpoint: str, iot_endpoint: str, store: str) -> int:
    try:
        stack = Stack.from_file(args.template, StackContext(aws_endpoint=aws_endpoint, region=REGION))
        functions = stack.functions()
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.function not in functions:
        print(f"error: no function {args.function}; the template has {', '.join(functions)}", file=sys.stderr)
        return 2
    spec = functions[args.function]
    rule_target = any(
        (action.get("Lambda") or {}).get("FunctionArn") == spec.arn
        for rule in stack.topic_rules()
        for action in rule.actions
    )
    events, problem = split_events(event, spec, rule_target)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    common = process_environment(aws_endpoint, iot_endpoint, stack.context.region)
    os.environ.update(common)
    environment = dict(spec.environment) | common | env_file_variables(args.env_vars, args.function)
    if environment.get("READING_STORE", "sqlite") == "sqlite" or environment.get("DEVICE_DIRECTORY") == "sqlite":
        environment["SQLITE_PATH"] = store
    runtime = FunctionRuntime({args.function: spec}, {args.function: environment})
    for index, item in enumerate(events):
        try:
            # As with `sam local invoke`, the function's logs (Powertools writes them to stdout) go to
            # stderr, so stdout carries only the response and a script can parse it.
            with contextlib.redirect_stdout(sys.stderr):
                result = runtime.invoke(args.function, item, f"invoke {args.event}" + (f"[{index}]" if index else ""))
        except FunctionNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc)[1:],
            }
            print(json.dumps(error, indent=2))
            return 1
        print(json.dumps(result, indent=None if len(events) > 1 else 2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
