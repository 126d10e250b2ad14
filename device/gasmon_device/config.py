"""The device's settings: a TOML file, then the local stack's endpoints file, then environment variables.

Precedence, lowest first: built-in defaults < the config file (`--config`, `GASMON_CONFIG`, or
`/etc/gasmon/device.toml` when it exists) < `.local/endpoints.json` when asked for (`--local` or
`endpoints_file`) < `GASMON_*` environment variables. Everything is validated once, here, and a
mistake raises `ConfigError` naming the setting and how to fix it.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_CONFIG_PATH = Path("/etc/gasmon/device.toml")
DEFAULT_ENDPOINTS_FILE = Path(".local/endpoints.json")
# The warning topic and the Last Will topic of the seeds (`pi/1`, `my/things/RPI/update`).
DEFAULT_WARNING_TOPIC = "pi/1"
DEFAULT_PRESENCE_TOPIC = "my/things/{thing}/update"
MAX_BATCH_DOCUMENTS = 500  # the ingest API's limit per request

SourceKind = Literal["simulated", "csv", "adc"]
TimeFormat = Literal["iso", "seed"]
HookKind = Literal["log", "gpio", "command", "python"]


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which one and how to fix it."""


@dataclass(frozen=True)
class SensorSpec:
    """One gas sensor of the device: the ids the API sees and, for the ADC source, its wiring.

    `curve` names a built-in MQ regression (see `gasmon_device.mq.CURVES`) or is empty when `a`
    and `b` are given; `r0_ohms` is the sensor's resistance in clean air divided by the curve's
    clean-air ratio, measured with `gasmon-device calibrate`.
    """

    gas: str
    sensorid: str
    sensortype: str
    channel: int | None = None
    curve: str = ""
    a: float | None = None
    b: float | None = None
    r0_ohms: float | None = None
    load_ohms: float = 10_000.0


# The seed's four sensors (`003`: co 0005/8, no2 0006/9, c2h5oh 0007/27, h2 0008/30).
DEFAULT_SENSORS: tuple[SensorSpec, ...] = (
    SensorSpec(gas="co", sensorid="0005", sensortype="8"),
    SensorSpec(gas="no2", sensorid="0006", sensortype="9"),
    SensorSpec(gas="c2h5oh", sensorid="0007", sensortype="27"),
    SensorSpec(gas="h2", sensorid="0008", sensortype="30"),
)


@dataclass(frozen=True)
class ApiSettings:
    """Where readings are posted: the full URL of `POST /readings` and its API key."""

    endpoint: str = ""
    api_key: str = ""
    batch_size: int = 100
    max_batch_bytes: int = 900_000  # the API takes at most 1 MB per request
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 15.0


@dataclass(frozen=True)
class QueueSettings:
    """The on-disk queue. `max_bytes` counts queued document bytes; the oldest are dropped beyond it."""

    path: Path = field(default_factory=lambda: default_queue_path())
    max_bytes: int = 256 * 1024 * 1024
    max_dead_letters: int = 10_000


@dataclass(frozen=True)
class BackoffSettings:
    """Retry delays: full jitter in [0, min(cap, base * 2**attempt)]; Retry-After honoured up to its own cap."""

    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    max_retry_after_seconds: float = 900.0


@dataclass(frozen=True)
class MqttSettings:
    """The MQTT connection of the subscriber (and of each simulated device)."""

    host: str = ""
    port: int = 8883
    tls: bool = True
    root_ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    client_id: str = ""  # defaults to the thing name (AWS IoT policies connect as the thing)
    keepalive_seconds: int = 30
    warning_topic: str = DEFAULT_WARNING_TOPIC
    presence_topic: str = DEFAULT_PRESENCE_TOPIC
    clean_session: bool = False
    only_own_group: bool = False
    reconnect_base_seconds: float = 1.0
    reconnect_cap_seconds: float = 120.0


@dataclass(frozen=True)
class SourceSettings:
    """Where readings come from: a simulation, a CSV recording, or MQ sensors behind an ADC."""

    kind: SourceKind = "simulated"
    csv_path: Path | None = None
    csv_times: Literal["recorded", "now"] = "now"
    csv_loop: bool = False
    seed: int | None = None
    adc_chip: Literal["mcp3008", "ads1115"] = "mcp3008"
    spi_bus: int = 0
    spi_device: int = 0
    i2c_bus: int = 1
    i2c_address: int = 0x48
    adc_vref: float = 3.3
    supply_volts: float = 5.0
    divider_ratio: float = 1.0  # Vout at the sensor / V at the ADC pin (a 5 V -> 3.3 V divider is ~1.5)
    samples_per_reading: int = 5


@dataclass(frozen=True)
class HookSettings:
    """What the subscriber does on a warning besides logging it."""

    kind: HookKind = "log"
    gpio_pin: int = 18
    buzz_seconds: float = 2.0
    command: tuple[str, ...] = ()
    target: str = ""  # "package.module:function" for kind = "python"
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class DeviceConfig:
    """Everything `gasmon-device` needs, validated."""

    thing_name: str = "RPI"
    groupid: str = "1"
    gps: str = ""
    interval_seconds: float = 5.0
    timezone: str = "Asia/Seoul"
    time_format: TimeFormat = "iso"
    sensors: tuple[SensorSpec, ...] = DEFAULT_SENSORS
    api: ApiSettings = field(default_factory=ApiSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    source: SourceSettings = field(default_factory=SourceSettings)
    hook: HookSettings = field(default_factory=HookSettings)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or self.thing_name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def require_api(self) -> None:
        """Raise `ConfigError` unless readings can be posted."""
        if not self.api.endpoint:
            raise ConfigError(
                "the API endpoint is not set: set [api] endpoint in the config file, GASMON_ENDPOINT, "
                "or use --local to read .local/endpoints.json from `make local`"
            )
        if not self.api.api_key:
            raise ConfigError("the API key is not set: set [api] api_key in the config file or GASMON_API_KEY")

    def require_mqtt(self) -> None:
        """Raise `ConfigError` unless the MQTT connection is fully described (files exist for TLS)."""
        if not self.mqtt.host:
            raise ConfigError(
                "the MQTT host is not set: set [mqtt] host (your AWS IoT endpoint, "
                "`aws iot describe-endpoint --endpoint-type iot:Data-ATS`), GASMON_MQTT_HOST, or use --local"
            )
        if self.mqtt.tls:
            for name, path in (("root_ca", self.mqtt.root_ca), ("cert", self.mqtt.cert), ("key", self.mqtt.key)):
                if path is None:
                    raise ConfigError(
                        f"[mqtt] {name} is not set: mutual TLS to AWS IoT needs the root CA, the device "
                        f"certificate and its private key (GASMON_MQTT_{name.upper()}), or set tls = false "
                        "for a local broker"
                    )
                if not path.is_file():
                    raise ConfigError(f"[mqtt] {name} = {path} does not exist or is not a file")
                if not os.access(path, os.R_OK):
                    raise ConfigError(f"[mqtt] {name} = {path} is not readable by this user")


def default_queue_path() -> Path:
    """`$STATE_DIRECTORY/queue.sqlite3` under systemd, else `$XDG_STATE_HOME/gasmon/` (or `~/.local/state`)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "queue.sqlite3"
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "gasmon" / "queue.sqlite3"


# ---------------------------------------------------------------------------------------------
# Loading

# Environment variable -> (section, key, parser). Section "" is the top level.
Parser = Callable[[str], Any]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


ENV_OVERRIDES: dict[str, tuple[str, str, Parser]] = {
    "GASMON_THING_NAME": ("", "thing_name", str),
    "GASMON_GROUPID": ("", "groupid", str),
    "GASMON_GPS": ("", "gps", str),
    "GASMON_INTERVAL": ("", "interval_seconds", float),
    "GASMON_TIMEZONE": ("", "timezone", str),
    "GASMON_TIME_FORMAT": ("", "time_format", str),
    "GASMON_ENDPOINT": ("api", "endpoint", str),
    "GASMON_API_KEY": ("api", "api_key", str),
    "GASMON_BATCH_SIZE": ("api", "batch_size", int),
    "GASMON_QUEUE_PATH": ("queue", "path", str),
    "GASMON_QUEUE_MAX_BYTES": ("queue", "max_bytes", int),
    "GASMON_BACKOFF_BASE": ("backoff", "base_seconds", float),
    "GASMON_BACKOFF_CAP": ("backoff", "cap_seconds", float),
    "GASMON_MQTT_HOST": ("mqtt", "host", str),
    "GASMON_MQTT_PORT": ("mqtt", "port", int),
    "GASMON_MQTT_TLS": ("mqtt", "tls", _parse_bool),
    "GASMON_MQTT_ROOT_CA": ("mqtt", "root_ca", str),
    "GASMON_MQTT_CERT": ("mqtt", "cert", str),
    "GASMON_MQTT_KEY": ("mqtt", "key", str),
    "GASMON_MQTT_CLIENT_ID": ("mqtt", "client_id", str),
    "GASMON_WARNING_TOPIC": ("mqtt", "warning_topic", str),
    "GASMON_SOURCE": ("source", "kind", str),
    "GASMON_CSV_PATH": ("source", "csv_path", str),
    "GASMON_HOOK": ("hook", "kind", str),
    "GASMON_BUZZER_PIN": ("hook", "gpio_pin", int),
}


def load_config(
    path: str | Path | None = None,
    *,
    endpoints_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> DeviceConfig:
    """Read the config file (if any), the local stack's endpoints file (if asked) and the environment.

    `path` None means `GASMON_CONFIG`, else `/etc/gasmon/device.toml` when it exists, else no file.
    `endpoints_file` (or `endpoints_file` in the file, or `GASMON_ENDPOINTS_FILE`) points at the
    `.local/endpoints.json` that `make local` writes.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    config_path = Path(path) if path else (Path(env["GASMON_CONFIG"]) if env.get("GASMON_CONFIG") else None)
    if config_path is None and DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    if config_path is not None:
        raw = _read_toml(config_path)

    from_file = raw.pop("endpoints_file", None)
    endpoints = endpoints_file or env.get("GASMON_ENDPOINTS_FILE") or from_file
    if endpoints:
        _merge(raw, endpoints_overrides(Path(str(endpoints))))

    for name, (section, key, parser) in ENV_OVERRIDES.items():
        if name in env and env[name] != "":
            try:
                value = parser(env[name])
            except ValueError as exc:
                raise ConfigError(f"{name}={env[name]!r}: {exc}") from None
            _merge(raw, {section: {key: value}} if section else {key: value})
    return build_config(raw)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, Mapping):
            target[key] = dict(value)
        else:
            target[key] = value


def readings_url(api: str) -> str:
    """The `POST /readings` URL from either the API's base URL or the full URL."""
    trimmed = api.rstrip("/")
    if trimmed.endswith(("/readings", "/gasdetector")):
        return trimmed
    return f"{trimmed}/readings"


def mqtt_host_port(value: Any) -> tuple[str, int | None]:
    """Host and port from `mqtt://host:port`, `host:port`, `host`, or `{"host": ..., "port": ...}`."""
    if isinstance(value, Mapping):
        port = value.get("port")
        return str(value.get("host", "")), int(port) if port is not None else None
    text = str(value)
    parts = urlsplit(text if "://" in text else f"mqtt://{text}")
    return parts.hostname or "", parts.port


def read_endpoints_file(path: Path) -> Any:
    """The JSON `make local` wrote to `path` (`.local/endpoints.json`), or a ConfigError saying
    what to do when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: start the local stack with `make local` first") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


def endpoints_overrides(path: Path) -> dict[str, Any]:
    """Settings taken from `make local`'s `.local/endpoints.json` (keys `api`, `mqtt`, `api_key`, ...)."""
    data = read_endpoints_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    overrides: dict[str, Any] = {}
    if data.get("api"):
        overrides["api"] = {"endpoint": readings_url(str(data["api"]))}
    if data.get("api_key"):
        overrides.setdefault("api", {})["api_key"] = str(data["api_key"])
        # The key is one device's (sim-pi-01 in group 1): post as that device, or get 403.
        owner = data.get("api_key_device")
        if isinstance(owner, dict):
            if owner.get("thing"):
                overrides["thing_name"] = str(owner["thing"])
            if owner.get("groupid"):
                overrides["groupid"] = str(owner["groupid"])
    if data.get("mqtt"):
        host, port = mqtt_host_port(data["mqtt"])
        mqtt: dict[str, Any] = {"host": host, "tls": False}
        mqtt["port"] = port or 1883
        overrides["mqtt"] = mqtt
    return overrides


# ---------------------------------------------------------------------------------------------
# Validation: raw TOML-shaped dict -> DeviceConfig


class _Section:
    """Typed reads from one table of the raw config, with errors that name the setting."""

    def __init__(self, raw: Any, name: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"[{name}] must be a table")
        self.raw = raw
        self.name = name

    def _where(self, key: str) -> str:
        return f"[{self.name}] {key}" if self.name else key

    def text(self, key: str, default: str) -> str:
        value = self.raw.get(key, default)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{self._where(key)} must be text")
        return value

    def number(self, key: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{self._where(key)} must be a number")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self._where(key)} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{self._where(key)} must be at most {maximum}")
        return float(value)

    def integer(self, key: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._where(key)} must be a whole number")
        self.number(key, value, minimum, maximum)
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._where(key)} must be true or false")
        return value

    def path(self, key: str, default: Path | None) -> Path | None:
        value = self.raw.get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{self._where(key)} must be a file path")
        return Path(value).expanduser()

    def choice(self, key: str, default: str, options: tuple[str, ...]) -> Any:
        value = self.text(key, default)
        if value not in options:
            raise ConfigError(f"{self._where(key)} must be one of {', '.join(options)} (got {value!r})")
        return value


def _sensors(raw: Any) -> tuple[SensorSpec, ...]:
    if raw is None:
        return DEFAULT_SENSORS
    if not isinstance(raw, list) or not raw:
        raise ConfigError("[[sensors]] must be a list of tables, one per gas")
    specs = []
    for index, item in enumerate(raw):
        section = _Section(item, f"sensors.{index}")
        gas = section.text("gas", "")
        if not gas or not gas.replace("_", "").isalnum() or gas.lower() != gas:
            raise ConfigError(f"[[sensors]] #{index + 1}: gas must be a lower-case name such as co, no2, c2h5oh, h2")
        channel = section.raw.get("channel")
        a, b, r0 = section.raw.get("a"), section.raw.get("b"), section.raw.get("r0_ohms")
        specs.append(
            SensorSpec(
                gas=gas,
                sensorid=section.text("sensorid", ""),
                sensortype=section.text("sensortype", ""),
                channel=section.integer("channel", 0, 0, 7) if channel is not None else None,
                curve=section.text("curve", ""),
                a=section.number("a", 0.0) if a is not None else None,
                b=section.number("b", 0.0) if b is not None else None,
                r0_ohms=section.number("r0_ohms", 1.0, minimum=1e-9) if r0 is not None else None,
                load_ohms=section.number("load_ohms", 10_000.0, minimum=1e-9),
            )
        )
        if not specs[-1].sensorid or not specs[-1].sensortype:
            raise ConfigError(f"[[sensors]] {gas}: sensorid and sensortype are required")
    if len({s.gas for s in specs}) != len(specs):
        raise ConfigError("[[sensors]] lists the same gas twice")
    return tuple(specs)


def _reject_unknown_keys(raw: Mapping[str, Any]) -> None:
    """A misspelt setting must not be silently ignored: name it, and suggest the closest known one."""
    sections: dict[str, type] = {
        "api": ApiSettings,
        "queue": QueueSettings,
        "backoff": BackoffSettings,
        "mqtt": MqttSettings,
        "source": SourceSettings,
        "hook": HookSettings,
    }
    top = {f.name for f in fields(DeviceConfig)} | {"interval_seconds", "endpoints_file"}
    checks: list[tuple[str, Any, set[str]]] = [("", raw, top)]
    checks += [(name, raw.get(name), {f.name for f in fields(kind)}) for name, kind in sections.items()]
    sensors = raw.get("sensors")
    if isinstance(sensors, list):
        checks += [("sensors", item, {f.name for f in fields(SensorSpec)}) for item in sensors]
    for section, table, known in checks:
        if not isinstance(table, Mapping):
            continue
        for key in table:
            if key not in known:
                where = f"[{section}] {key}" if section else key
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"unknown setting {where}{hint}")


def build_config(raw: Mapping[str, Any]) -> DeviceConfig:
    """Validate a TOML-shaped mapping into a `DeviceConfig`, raising `ConfigError` on the first mistake."""
    _reject_unknown_keys(raw)
    top = _Section(raw, "")
    api_s, queue_s = _Section(raw.get("api"), "api"), _Section(raw.get("queue"), "queue")
    backoff_s, mqtt_s = _Section(raw.get("backoff"), "backoff"), _Section(raw.get("mqtt"), "mqtt")
    source_s, hook_s = _Section(raw.get("source"), "source"), _Section(raw.get("hook"), "hook")

    timezone = top.text("timezone", "Asia/Seoul")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone {timezone!r} is not a known time zone (for example Asia/Seoul)") from None

    gps = top.text("gps", "")
    if gps:
        _check_gps(gps)

    queue_default = QueueSettings()
    command = hook_s.raw.get("command", [])
    if isinstance(command, str):
        command = command.split()
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        raise ConfigError("[hook] command must be a list of strings, for example ['/usr/local/bin/beep', '-l', '500']")

    config = DeviceConfig(
        thing_name=top.text("thing_name", "RPI"),
        groupid=top.text("groupid", "1"),
        gps=gps,
        interval_seconds=top.number("interval_seconds", 5.0, minimum=0.01),
        timezone=timezone,
        time_format=top.choice("time_format", "iso", ("iso", "seed")),
        sensors=_sensors(raw.get("sensors")),
        api=ApiSettings(
            endpoint=api_s.text("endpoint", ""),
            api_key=api_s.text("api_key", ""),
            batch_size=api_s.integer("batch_size", 100, 1, MAX_BATCH_DOCUMENTS),
            max_batch_bytes=api_s.integer("max_batch_bytes", 900_000, 1024, 1_000_000),
            connect_timeout_seconds=api_s.number("connect_timeout_seconds", 5.0, minimum=0.1),
            read_timeout_seconds=api_s.number("read_timeout_seconds", 15.0, minimum=0.1),
        ),
        queue=QueueSettings(
            path=queue_s.path("path", queue_default.path) or queue_default.path,
            max_bytes=queue_s.integer("max_bytes", queue_default.max_bytes, minimum=64 * 1024),
            max_dead_letters=queue_s.integer("max_dead_letters", 10_000, minimum=1),
        ),
        backoff=BackoffSettings(
            base_seconds=backoff_s.number("base_seconds", 1.0, minimum=0.001),
            cap_seconds=backoff_s.number("cap_seconds", 300.0, minimum=0.001),
            max_retry_after_seconds=backoff_s.number("max_retry_after_seconds", 900.0, minimum=0),
        ),
        mqtt=MqttSettings(
            host=mqtt_s.text("host", ""),
            port=mqtt_s.integer("port", 8883, 1, 65535),
            tls=mqtt_s.flag("tls", True),
            root_ca=mqtt_s.path("root_ca", None),
            cert=mqtt_s.path("cert", None),
            key=mqtt_s.path("key", None),
            client_id=mqtt_s.text("client_id", ""),
            keepalive_seconds=mqtt_s.integer("keepalive_seconds", 30, 5, 1200),
            warning_topic=mqtt_s.text("warning_topic", DEFAULT_WARNING_TOPIC),
            presence_topic=mqtt_s.text("presence_topic", DEFAULT_PRESENCE_TOPIC),
            clean_session=mqtt_s.flag("clean_session", False),
            only_own_group=mqtt_s.flag("only_own_group", False),
            reconnect_base_seconds=mqtt_s.number("reconnect_base_seconds", 1.0, minimum=0.001),
            reconnect_cap_seconds=mqtt_s.number("reconnect_cap_seconds", 120.0, minimum=0.001),
        ),
        source=SourceSettings(
            kind=source_s.choice("kind", "simulated", ("simulated", "csv", "adc")),
            csv_path=source_s.path("csv_path", None),
            csv_times=source_s.choice("csv_times", "now", ("recorded", "now")),
            csv_loop=source_s.flag("csv_loop", False),
            seed=source_s.integer("seed", 0) if "seed" in source_s.raw else None,
            adc_chip=source_s.choice("adc_chip", "mcp3008", ("mcp3008", "ads1115")),
            spi_bus=source_s.integer("spi_bus", 0, 0),
            spi_device=source_s.integer("spi_device", 0, 0),
            i2c_bus=source_s.integer("i2c_bus", 1, 0),
            i2c_address=source_s.integer("i2c_address", 0x48, 0x48, 0x4B),
            adc_vref=source_s.number("adc_vref", 3.3, minimum=0.1),
            supply_volts=source_s.number("supply_volts", 5.0, minimum=0.1),
            divider_ratio=source_s.number("divider_ratio", 1.0, minimum=1.0),
            samples_per_reading=source_s.integer("samples_per_reading", 5, 1, 100),
        ),
        hook=HookSettings(
            kind=hook_s.choice("kind", "log", ("log", "gpio", "command", "python")),
            gpio_pin=hook_s.integer("gpio_pin", 18, 0, 40),
            buzz_seconds=hook_s.number("buzz_seconds", 2.0, minimum=0),
            command=tuple(command),
            target=hook_s.text("target", ""),
            timeout_seconds=hook_s.number("timeout_seconds", 10.0, minimum=0.1),
        ),
    )
    if config.source.kind == "csv" and config.source.csv_path is None:
        raise ConfigError("[source] kind = 'csv' needs csv_path (or GASMON_CSV_PATH)")
    if config.hook.kind == "command" and not config.hook.command:
        raise ConfigError("[hook] kind = 'command' needs command = ['program', 'arg', ...]")
    if config.hook.kind == "python" and ":" not in config.hook.target:
        raise ConfigError("[hook] kind = 'python' needs target = 'package.module:function'")
    if "{thing}" not in config.mqtt.presence_topic:
        raise ConfigError("[mqtt] presence_topic must contain {thing}, for example my/things/{thing}/update")
    return config


def _check_gps(gps: str) -> None:
    problem = f"gps = {gps!r} must be 'latitude, longitude' in decimal degrees, e.g. '37.61, 126.99'"
    parts = gps.split(",")
    if len(parts) != 2:
        raise ConfigError(problem)
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(problem) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # NaN fails these too
        raise ConfigError(problem)
