"""`gasmon-device`: the command line of the Pi agent.

gasmon-device [--config FILE] [--local [ENDPOINTS_JSON]] [-v] COMMAND

publish       sample the sensors, queue every reading on disk, post batches to the API
subscribe     listen for warnings on pi/1, sound the alarm hook, keep the shadow's presence
simulate      run a fleet of virtual devices against an API and a broker
status        queue depth, dead letters, dropped readings, last success
dead-letters  list (or --requeue) the documents the server refused
calibrate     measure R0 of MQ sensors in clean air (ADC source)
config        print the effective configuration (API key masked)
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .config import DEFAULT_ENDPOINTS_FILE, ConfigError, DeviceConfig, MqttSettings, load_config
from .fleet_identity import DEFAULT_PREFIX, LOCAL_STACK_PREFIX
from .mq import AdcError
from .queue import DiskQueue, QueueHealth, QueueLockedError, exclusive, read_dead_letters, read_health
from .sources import CsvReplaySource, SensorSource, SimulatedSource, SourceError

logger = logging.getLogger("gasmon_device")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gasmon-device", description="gasmon's Raspberry Pi agent")
    parser.add_argument("--version", action="version", version=f"gasmon-device {__version__}")
    parser.add_argument(
        "--config", "-c", type=Path, help="TOML config file (default: $GASMON_CONFIG or /etc/gasmon/device.toml)"
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help=f"use the endpoints `make local` wrote ({DEFAULT_ENDPOINTS_FILE})",
    )
    parser.add_argument("--endpoints-file", type=Path, help="like --local, with another endpoints.json")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser("publish", help="sample, queue on disk, post batches to the API")
    publish.add_argument("--source", choices=("simulated", "csv", "adc"), help="override [source] kind")
    publish.add_argument("--csv", type=Path, help="CSV file to replay (implies --source csv)")
    publish.add_argument("--recorded-times", action="store_true", help="keep the CSV's createdtime column")
    publish.add_argument("--interval", type=float, help="seconds between readings (override)")
    publish.add_argument("--samples", type=int, help="take this many readings, deliver them, then exit")
    publish.add_argument("--drain", action="store_true", help="take no readings: deliver what is queued, then exit")
    publish.add_argument(
        "--status-every",
        type=float,
        default=60.0,
        metavar="S",
        help="log a status line (delivered, queued, last success) every S seconds at INFO (0: never; default 60)",
    )

    commands.add_parser("subscribe", help="listen for warnings and keep the presence shadow")

    simulate = commands.add_parser("simulate", help="run virtual devices against an API and a broker")
    simulate.add_argument("--devices", type=int, default=3)
    simulate.add_argument("--interval", type=float, default=5.0)
    simulate.add_argument("--duration", type=float, help="seconds to run (default: until Ctrl-C)")
    simulate.add_argument("--seed", type=int)
    simulate.add_argument("--no-mqtt", action="store_true", help="post readings only")
    simulate.add_argument("--steady", action="store_true", help="no device leaves")
    simulate.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"thing names <prefix>-01, -02, ... and their group (default {DEFAULT_PREFIX}; "
        f"`make local`'s own fleet is {LOCAL_STACK_PREFIX})",
    )
    simulate.add_argument(
        "--credentials",
        type=Path,
        metavar="DIR",
        help="provisioned folders DIR/<prefix>-NN/ (gasmon-admin provision --out); with --local the "
        "stack's <data-dir>/fleet, where missing ones are provisioned",
    )

    status = commands.add_parser("status", help="queue depth, dead letters, dropped, last success")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    dead = commands.add_parser("dead-letters", help="list documents the server refused")
    dead.add_argument("--limit", type=int, default=20)
    dead.add_argument("--requeue", nargs="*", type=int, metavar="ID", help="put these (or all) back in the queue")

    calibrate = commands.add_parser("calibrate", help="measure R0 of the MQ sensors in clean air")
    calibrate.add_argument("--samples", type=int, default=50)

    commands.add_parser("config", help="print the effective configuration")
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        logging.getLogger("urllib3").setLevel(logging.WARNING)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM (systemctl stop) or SIGINT (Ctrl-C); the old handlers come back after."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_source(config: DeviceConfig) -> SensorSource:
    """The sensor source the config names."""
    gases = [spec.gas for spec in config.sensors]
    source = config.source
    if source.kind == "csv":
        assert source.csv_path is not None
        return CsvReplaySource(
            source.csv_path,
            gases,
            use_recorded_times=source.csv_times == "recorded",
            loop=source.csv_loop,
            zone=config.zone,
        )
    if source.kind == "adc":
        from .mq import open_adc_source

        return open_adc_source(
            source.adc_chip,
            config.sensors,
            spi_bus=source.spi_bus,
            spi_device=source.spi_device,
            i2c_bus=source.i2c_bus,
            i2c_address=source.i2c_address,
            vref=source.adc_vref,
            supply_volts=source.supply_volts,
            divider_ratio=source.divider_ratio,
            samples_per_reading=source.samples_per_reading,
        )
    return SimulatedSource(gases, seed=source.seed)


def _open_queue(config: DeviceConfig) -> DiskQueue:
    return DiskQueue(config.queue.path, config.queue.max_bytes, config.queue.max_dead_letters)


def cmd_publish(config: DeviceConfig, args: argparse.Namespace) -> int:
    from .publisher import run_publisher
    from .sender import HttpSender

    if args.csv:
        config = replace(config, source=replace(config.source, kind="csv", csv_path=args.csv))
    elif args.source:
        config = replace(config, source=replace(config.source, kind=args.source))
    if args.recorded_times:
        config = replace(config, source=replace(config.source, csv_times="recorded"))
    if args.interval:
        config = replace(config, interval_seconds=args.interval)
    config.require_api()
    source = None if args.drain else build_source(config)
    with _stop_on_signals() as stop, exclusive(config.queue.path):
        queue = _open_queue(config)
        sender = HttpSender(
            config.api.endpoint,
            config.api.api_key,
            connect_timeout=config.api.connect_timeout_seconds,
            read_timeout=config.api.read_timeout_seconds,
        )
        health = queue.health()
        logger.info(
            "publishing to %s as group %s every %.3g s; queue %s holds %d document(s), %d dead letter(s)",
            config.api.endpoint,
            config.groupid,
            config.interval_seconds,
            config.queue.path,
            health.depth,
            health.dead_letters,
        )
        try:
            run_publisher(config, source, queue, sender, stop, max_samples=args.samples, status_every=args.status_every)
        finally:
            sender.close()
            queue.close()
    return 0


def cmd_subscribe(config: DeviceConfig, args: argparse.Namespace) -> int:
    from .subscriber import AlertSubscriber, build_hook

    config.require_mqtt()
    subscriber = AlertSubscriber(config, build_hook(config.hook))
    logger.info(
        "subscribing to %s on %s:%s as %s (TLS %s); presence on %s",
        config.mqtt.warning_topic,
        config.mqtt.host,
        config.mqtt.port,
        config.client_id,
        "on" if config.mqtt.tls else "off",
        subscriber.connection.topic,
    )
    with _stop_on_signals() as stop:
        subscriber.run(stop)
    return 0


def cmd_simulate(config: DeviceConfig, args: argparse.Namespace) -> int:
    from .fleet_identity import check_prefix, ensure_identities, local_fleet_dir, thing_names
    from .simulator import DevicePlan, device_sensors, run_fleet

    endpoints: Path | None = args.endpoints_file or (DEFAULT_ENDPOINTS_FILE if args.local else None)
    prefix = check_prefix(args.prefix, local=endpoints is not None)
    config.require_api()
    keys: str | list[str] = config.api.api_key
    groups: list[str] | None = None
    mqtt_settings: list[MqttSettings] | None = None
    if endpoints is not None or args.credentials is not None:
        # Every device is its own provisioned device: its key posts its group, its certificate
        # connects as its thing on the TLS listener (gasmon_device.fleet_identity).
        folder: Path = args.credentials or local_fleet_dir(endpoints or DEFAULT_ENDPOINTS_FILE)
        sensors = [[spec.sensorid for spec in device_sensors(n)] for n in range(1, args.devices + 1)]
        identities = ensure_identities(
            thing_names(prefix, args.devices), sensors, folder, group=prefix, endpoints_file=endpoints
        )
        keys = [identity.api_key for identity in identities]
        groups = [identity.groupid for identity in identities]
        mqtt_settings = [identity.mqtt for identity in identities]
        logger.info(
            "simulating %s (group %s), credentials in %s", ", ".join(i.thing for i in identities), prefix, folder
        )
    mqtt_host = None if args.no_mqtt else (mqtt_settings[0].host if mqtt_settings else config.mqtt.host or None)
    with _stop_on_signals() as stop:
        reports = run_fleet(
            config.api.endpoint,
            keys,
            mqtt_host,
            config.mqtt.port if config.mqtt.host else 1883,
            devices=args.devices,
            interval=args.interval,
            stop_event=stop,
            plans=[DevicePlan("steady")] * args.devices if args.steady else None,
            seed=args.seed,
            duration=args.duration,
            thing_prefix=prefix,
            groups=groups,
            mqtt_settings=mqtt_settings,
        )
    for report in reports:
        print(
            f"{report.thing_name}: {report.samples} readings, {report.delivered} delivered, "
            f"{report.queued} still queued, {report.connects} MQTT connect(s), left: {report.departures or 'never'}"
        )
    return 0


def _ago(ms: int | None, now: float) -> str:
    if ms is None:
        return "never"
    moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone()
    seconds = max(0.0, now - ms / 1000)
    if seconds < 120:
        span = f"{seconds:.0f} s"
    elif seconds < 7200:
        span = f"{seconds / 60:.0f} min"
    elif seconds < 172800:
        span = f"{seconds / 3600:.1f} h"
    else:
        span = f"{seconds / 86400:.1f} days"
    return f"{moment:%Y-%m-%d %H:%M:%S %Z} ({span} ago)"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def format_health(health: QueueHealth, now: float | None = None) -> str:
    """The human-readable `status` report."""
    now = time.time() if now is None else now
    used = 100.0 * health.queued_bytes / health.max_bytes if health.max_bytes else 0.0
    oldest = f", oldest queued {_ago(health.oldest_enqueued_ms, now)}" if health.depth else ""
    lines = [
        f"queue         {health.path}",
        f"queued        {health.depth} document(s), {_size(health.queued_bytes)} of "
        f"{_size(health.max_bytes)} budget ({used:.1f}%){oldest}",
        f"dead letters  {health.dead_letters} (refused by the server; see `gasmon-device dead-letters`)"
        + (f", {health.dead_dropped} older ones dropped" if health.dead_dropped else ""),
        f"dropped       {health.dropped} (oldest readings dropped because the queue was full)",
        f"delivered     {health.delivered} (+{health.duplicates} the server already had)",
        f"last success  {_ago(health.last_success_ms, now)}",
        f"last attempt  {_ago(health.last_attempt_ms, now)}",
    ]
    if health.consecutive_failures:
        lines.append(f"failing       {health.consecutive_failures} attempt(s) in a row: {health.last_error}")
    return "\n".join(lines)


def cmd_status(config: DeviceConfig, args: argparse.Namespace) -> int:
    try:
        health = read_health(config.queue.path, config.queue.max_bytes)
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(health), indent=2))
    else:
        print(format_health(health))
    return 0


def cmd_dead_letters(config: DeviceConfig, args: argparse.Namespace) -> int:
    if args.requeue is not None:
        queue = _open_queue(config)
        try:
            count = queue.requeue_dead_letters(args.requeue or None, int(time.time() * 1000))
        finally:
            queue.close()
        print(f"put {count} dead letter(s) back in the queue; the running publisher sends them next")
        return 0
    try:
        letters = read_dead_letters(config.queue.path, args.limit)
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if not letters:
        print("no dead letters")
    for letter in letters:
        when = datetime.fromtimestamp(letter.dead_ms / 1000, UTC).astimezone()
        print(f"#{letter.id} at {when:%Y-%m-%d %H:%M:%S}: {letter.reason}\n    {letter.body}")
    return 0


def cmd_calibrate(config: DeviceConfig, args: argparse.Namespace) -> int:
    from .mq import open_adc_source

    source = config.source
    adc = open_adc_source(
        source.adc_chip,
        config.sensors,
        spi_bus=source.spi_bus,
        spi_device=source.spi_device,
        i2c_bus=source.i2c_bus,
        i2c_address=source.i2c_address,
        vref=source.adc_vref,
        supply_volts=source.supply_volts,
        divider_ratio=source.divider_ratio,
        samples_per_reading=source.samples_per_reading,
        require_r0=False,
    )
    print(f"measuring R0 over {args.samples} samples; the sensors must be warmed up (24 h+) and in clean air")
    for gas, r0 in adc.calibrate(samples=args.samples).items():
        print(f"[[sensors]] gas = {gas!r}: r0_ohms = {r0:.1f}")
    return 0


def cmd_config(config: DeviceConfig, args: argparse.Namespace) -> int:
    shown: dict[str, Any] = asdict(config)
    if shown["api"]["api_key"]:
        shown["api"]["api_key"] = shown["api"]["api_key"][:4] + "..."
    print(json.dumps(shown, indent=2, default=str))
    return 0


COMMANDS = {
    "publish": cmd_publish,
    "subscribe": cmd_subscribe,
    "simulate": cmd_simulate,
    "status": cmd_status,
    "dead-letters": cmd_dead_letters,
    "calibrate": cmd_calibrate,
    "config": cmd_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        endpoints = args.endpoints_file or (DEFAULT_ENDPOINTS_FILE if args.local else None)
        config = load_config(args.config, endpoints_file=endpoints)
        return COMMANDS[args.command](config, args)
    except (ConfigError, SourceError, QueueLockedError, AdcError) as exc:
        print(f"gasmon-device: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
