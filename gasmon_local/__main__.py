"""`gasmon-local` (`make local`): the whole gasmon system on this machine, in the foreground.

    gasmon-local [--no-devices] [--grace SECONDS] [--data-dir DIR] [--http-port N] [--mqtt-port N]
                 [--mqtts-port N] [--strict] [--iot-data-port N] [--aws-port N] [--template FILE]
                 [--parameter KEY=VALUE ...] [--quiet | --log-level LEVEL] [-v]
                 [--faults KIND=PROBABILITY,... [--fault-seed N]]

Ports may be 0 (a free one is picked; `<data-dir>/endpoints.json` says which). One log stream on
stdout; Ctrl-C (or SIGTERM) stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from gasmon_device.simulator import run_fleet
from gasmon_local.faults import KINDS, FaultSpecError, parse_spec
from gasmon_local.functions import DEFAULT_CONCURRENCY, ROOT
from gasmon_local.guard import StackGuardError
from gasmon_local.logs import FunctionLogs
from gasmon_local.stack import LocalStack, Options
from gasmon_local.template import TemplateError

DEMO_GRACE = 30.0
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
QUIET_LOGGERS = ("amqtt", "transitions", "werkzeug", "moto", "botocore", "boto3", "urllib3", "asyncio")


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="gasmon-local", description=__doc__.split("\n")[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml", help="SAM template (template.yaml)")
    parser.add_argument("--data-dir", type=Path, default=Path(".local"), help="where data lives (.local)")
    parser.add_argument("--http-port", type=int, default=3000, help="API gateway port (3000)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="MQTT broker port (1883)")
    parser.add_argument(
        "--mqtts-port", type=int, default=8883, help="MQTT over TLS with X.509 client certificates (8883)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="no plain MQTT listener: only certificate clients on the TLS port"
    )
    parser.add_argument("--iot-data-port", type=int, default=3001, help="iot-data HTTP endpoint port (3001)")
    parser.add_argument("--aws-port", type=int, default=4566, help="moto server port for SNS/SQS/DynamoDB (4566)")
    parser.add_argument("--no-devices", action="store_true", help="do not run the simulated fleet")
    parser.add_argument("--devices", type=int, default=3, help="how many simulated devices (3)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a device's readings (5)")
    parser.add_argument(
        "--grace",
        type=float,
        help=f"presence grace period in seconds, for functions' GRACE_SECONDS (default {DEMO_GRACE:.0f} here, "
        "so a dropped demo device is mailed within a minute; --grace 60 for the deployed default)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="template parameter override, as sam --parameter-overrides (repeatable)",
    )
    parser.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="inject faults into the real adapters: KIND=PROBABILITY,... with kinds " + ", ".join(KINDS),
    )
    parser.add_argument("--fault-seed", type=int, default=0, metavar="N", help="seed of the fault schedule (0)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="execution environments (processes) a function may run at once, below its "
        f"ReservedConcurrentExecutions ({DEFAULT_CONCURRENCY})",
    )
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("--quiet", "-q", action="store_true", help="only the banner, warnings and errors")
    talk.add_argument("--log-level", choices=LEVELS, help="the stack's and the functions' log level (INFO)")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="function logs as the JSON Lambda writes, not one line each"
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    try:
        parse_spec(args.faults)
    except FaultSpecError as exc:
        parser.error(f"--faults: {exc}")
    level = logging.WARNING if args.quiet else getattr(logging, args.log_level or "INFO")
    # Functions keep the template's POWERTOOLS_LOG_LEVEL unless a level was asked for.
    FunctionLogs.configure("json" if args.verbose else "readable", level if args.quiet or args.log_level else None)
    overrides = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--parameter needs KEY=VALUE, got {item!r}")
        overrides[key] = value
    return Options(
        template=args.template,
        data_dir=args.data_dir,
        http_port=args.http_port,
        mqtt_port=args.mqtt_port,
        mqtts_port=args.mqtts_port,
        strict=args.strict,
        iot_data_port=args.iot_data_port,
        aws_port=args.aws_port,
        devices=0 if args.no_devices else args.devices,
        interval=args.interval,
        grace=DEMO_GRACE if args.grace is None else args.grace,
        grace_explicit=args.grace is not None,
        parameter_overrides=overrides,
        faults=args.faults,
        fault_seed=args.fault_seed,
        concurrency=args.concurrency,
        log_level=level,
    )


def configure_logging(level: int = logging.INFO) -> None:
    """One readable stream on stdout, flushed per line so pipes and tests see it at once.

    The banner and the stack's start and stop (logger "local") are shown whatever the level.
    """
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    logging.basicConfig(
        level=level,
        format="%(asctime)s.%(msecs)03d %(name)-8s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.getLogger("local").setLevel(min(level, logging.INFO))


async def _serve(options: Options) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait for a clean stop
            logging.getLogger("local").warning("stopping now, without cleaning up")
            os._exit(130)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    await LocalStack(options, fleet=run_fleet).run(stop)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    configure_logging(options.log_level)
    try:
        asyncio.run(_serve(options))
    except TemplateError as exc:
        logging.getLogger("local").error("%s", exc)
        return 2
    except StackGuardError as exc:  # the data dir is another stack's, or ports are taken
        logging.getLogger("local").error("cannot start: %s", exc)
        return 1
    except OSError as exc:  # a port in use, most often
        logging.getLogger("local").error("cannot start: %s (is another gasmon-local running? try other ports)", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
