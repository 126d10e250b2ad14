"""`make smoke`: one reading through the whole system, the way a Pi and an operator see it.

    gasmon-smoke --stack gasmon [--region ap-northeast-2]       # a deployed stack (make smoke STACK=gasmon)
    gasmon-smoke --endpoints-file .local/endpoints.json          # make local (make smoke LOCAL=1)

Steps, one PASS/FAIL line each (exit status 1 on any failure):
  stack      read the stack's outputs and parameters (warning level, time zone, alarm rules)
  device     provision a dedicated smoke device with gasmon-admin's code, or reuse it
  subscribe  listen on the warning topic: in AWS over WebSocket signed with SigV4 (your AWS
             credentials), locally with the smoke device's certificate on the TLS listener
  post       POST seed-shaped four-gas documents, current, with the device's key: clean air,
             then NO2 over the warning level
  warning    the alarm's `open` message for that reading arrives on the warning topic
  read back  GET /warnings (viewer key) lists the reading
  clear      POST clean air until the alarm clears; its `clear` message arrives

Why repeated runs pass honestly: an alarm sends its warning when it opens, and an open alarm
sends none for the next reading over the level. So each run opens and closes its own episode:
the warning, then clean air until the alarm clears (the clear rule: `AlarmClearReadings`
readings below the clear line spanning `AlarmClearSeconds`). If GET /alarms shows the smoke
device's alarm still open (an interrupted run), the run sends clean air first to close it.
Alarms follow the newest reading and ignore older ones, so each run's readings start after the
smoke device's newest reading (GET /devices and the state file), at most a few minutes ahead of
now (ingest refuses readings over 5 minutes ahead).
The device's key and certificate are kept in `<data-dir>/smoke/` locally and `.smoke/<stack>/`
for a deployed stack.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

from gasmon.defaults import DEFAULT_CRITICAL_THRESHOLDS, DEFAULT_THRESHOLDS
from gasmon.readings import warning_topic
from gasmon_admin import devices
from gasmon_admin.target import AdminError, Target, from_endpoints, from_stack

SMOKE_THING = "gasmon-smoke"
SMOKE_GROUP = "smoke"
SMOKE_GPS = "37.61002501514269, 126.99636868892937"  # the seed's location
# The seed's sensors and clean-air values (events/ingest_seed_document.json).
SEED_GASES = (
    ("co", "0005", "8", 26.20),
    ("no2", "0006", "9", 52.00),
    ("c2h5oh", "0007", "27", 26.11),
    ("h2", "0008", "30", 400.0),
)
SEED_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # zone-less: the deployment's LocalTimezone
MAX_AHEAD = timedelta(seconds=280)  # ingest refuses readings over 300 s ahead (MAX_FUTURE_SECONDS)
DEFAULT_PARAMETERS = {
    "Thresholds": json.dumps(DEFAULT_THRESHOLDS),
    "CriticalThresholds": json.dumps(DEFAULT_CRITICAL_THRESHOLDS),
    "AlarmHysteresisPercent": "10",
    "AlarmClearReadings": "3",
    "AlarmClearSeconds": "60",
    "LocalTimezone": "Asia/Seoul",
    "WarningTopic": "pi/1",
}
HTTP_TIMEOUT = 10.0


class SmokeError(Exception):
    """A step failed; the message says what was seen instead."""


# ---------------------------------------------------------------- the plan (pure)


@dataclass(frozen=True)
class Rules:
    """What the smoke run needs to know of the deployment's parameters."""

    warning: Mapping[str, float]
    critical: Mapping[str, float]
    hysteresis: float  # fraction of the warning level
    clear_readings: int
    clear_seconds: int
    timezone: str
    topic: str

    @classmethod
    def of(cls, parameters: Mapping[str, Any]) -> Rules:
        """From template parameters (a deployed stack's, or the local stack's); defaults fill gaps."""
        merged = {**DEFAULT_PARAMETERS, **{k: v for k, v in parameters.items() if v not in (None, "")}}
        return cls(
            warning={**DEFAULT_THRESHOLDS, **json.loads(str(merged["Thresholds"]))},
            critical={**DEFAULT_CRITICAL_THRESHOLDS, **json.loads(str(merged["CriticalThresholds"]))},
            hysteresis=float(merged["AlarmHysteresisPercent"]) / 100,
            clear_readings=int(merged["AlarmClearReadings"]),
            clear_seconds=int(float(merged["AlarmClearSeconds"])),
            timezone=str(merged["LocalTimezone"]),
            topic=str(merged["WarningTopic"]),
        )

    def clean_value(self, gas: str, seed_value: float) -> float:
        """A value well below the gas's clear line (the seed's own where that is low enough)."""
        warning = self.warning.get(gas)
        if warning is None:
            return seed_value
        return round(min(seed_value, warning * (1 - self.hysteresis) / 2), 2)

    def warning_value(self, gas: str) -> float:
        """A value over the warning level and below the critical level: the alarm opens at `warning`."""
        warning = self.warning[gas]
        critical = self.critical.get(gas)
        value = warning * 1.5
        if critical is not None and value >= critical:
            value = (warning + critical) / 2
        return round(value, 2)


@dataclass(frozen=True)
class Plan:
    """The documents of one run: `first` (clean air if an alarm was left open, then NO2 over the
    level), `second` (clean air until the alarm clears), with the times of the warning and of the
    clearing reading."""

    first: list[dict[str, Any]]
    second: list[dict[str, Any]]
    warning_at: datetime
    clear_at: datetime
    warning_value: float
    gas: str = "no2"

    @property
    def last_at(self) -> datetime:
        return self.clear_at

    @property
    def readings(self) -> int:
        return sum(len(doc) - 2 for doc in (*self.first, *self.second))  # groupid and gps are not gases


def clean_steps(rules: Rules) -> tuple[int, int]:
    """(readings, seconds between them) that satisfy the clear rule: at least `clear_readings`
    readings spanning at least `clear_seconds`, 30 s apart at most."""
    count = max(rules.clear_readings, math.ceil(rules.clear_seconds / 30) + 1 if rules.clear_seconds else 1)
    step = math.ceil(rules.clear_seconds / (count - 1)) if count > 1 and rules.clear_seconds else 1
    return count, max(step, 1)


def span(rules: Rules, pre_clean: bool) -> timedelta:
    """From a run's first reading to its last."""
    count, step = clean_steps(rules)
    if pre_clean:
        return timedelta(seconds=2 * (count - 1) * step + 2)
    return timedelta(seconds=(count - 1) * step + 1)


def start_of_run(now: datetime, newest: datetime | None, rules: Rules, pre_clean: bool = False) -> datetime:
    """The first reading's time: far enough back that the whole run lies before now, but after
    the smoke device's newest reading (an alarm ignores readings older than the newest it saw).
    Raises SmokeError when that would put readings more than MAX_AHEAD in the future."""
    length = span(rules, pre_clean)
    start = (now - length - timedelta(seconds=30)).replace(microsecond=0)
    if newest is not None and newest + timedelta(seconds=1) > start:
        start = (newest + timedelta(seconds=1)).replace(microsecond=0) + timedelta(seconds=1)
    if start + length > now + MAX_AHEAD:
        assert newest is not None  # a run that starts in the past always fits
        wait = (start + length - now - MAX_AHEAD).total_seconds()
        raise SmokeError(
            f"the smoke device's newest reading is at {newest:%H:%M:%S} UTC, and this run's would be more "
            f"than {MAX_AHEAD.total_seconds():.0f} s ahead of now: run it again in {math.ceil(wait)} s"
        )
    return start


def document(rules: Rules, group: str, at: datetime, no2: float | None = None) -> dict[str, Any]:
    """A seed-shaped four-gas document (values as strings, zone-less local time) at `at`."""
    stamp = stamp_of(rules, at)
    doc: dict[str, Any] = {"groupid": group, "gps": SMOKE_GPS}
    for gas, sensor, kind, seed_value in SEED_GASES:
        value = no2 if gas == "no2" and no2 is not None else rules.clean_value(gas, seed_value)
        doc[gas] = {"sensorid": sensor, "sensortype": kind, "value": f"{value:.2f}", "createdtime": stamp}
    return doc


def plan(rules: Rules, group: str, start: datetime, pre_clean: bool = False) -> Plan:
    """The NO2 warning then clean air until the alarm clears; with `pre_clean`, clean air first
    (it closes an alarm an interrupted run left open, so this run's warning opens a new one)."""
    count, step = clean_steps(rules)
    before = [start + timedelta(seconds=i * step) for i in range(count)] if pre_clean else []
    warning_at = before[-1] + timedelta(seconds=1) if before else start
    after = [warning_at + timedelta(seconds=1 + i * step) for i in range(count)]
    value = rules.warning_value("no2")
    first = [document(rules, group, at) for at in before] + [document(rules, group, warning_at, no2=value)]
    second = [document(rules, group, at) for at in after]
    return Plan(first, second, warning_at, after[-1], value)


def stamp_of(rules: Rules, at: datetime) -> str:
    return at.astimezone(ZoneInfo(rules.timezone)).strftime(SEED_TIME_FORMAT)


def _is_no2_event(message: Mapping[str, Any], event: str, rules: Rules, group: str, at: datetime) -> bool:
    """The run's NO2 alarm message `event`, caused by its reading at `at`."""
    return (
        message.get("event") == event
        and message.get("gas") == "no2"
        and message.get("groupid") == group
        and message.get("createdtime") == stamp_of(rules, at)
    )


def is_open_message(message: Mapping[str, Any], rules: Rules, group: str, at: datetime) -> bool:
    """The alarm's `open` for the run's NO2 reading."""
    return _is_no2_event(message, "open", rules, group, at)


def is_clear_message(message: Mapping[str, Any], rules: Rules, group: str, at: datetime) -> bool:
    """The alarm's `clear` on the run's last clean reading."""
    return _is_no2_event(message, "clear", rules, group, at)


# ---------------------------------------------------------------- the outside world


@dataclass
class Where:
    """The stack under test: its admin target, parameters, and where the smoke files live."""

    target: Target
    parameters: dict[str, Any]
    state_dir: Path
    label: str
    region: str | None = None
    viewer_key: str | None = None  # the local stack hands one out in endpoints.json
    stack: str | None = None


def local(endpoints_file: Path) -> Where:
    """`make local`'s stack, from its endpoints.json."""
    target = from_endpoints(endpoints_file)
    endpoints = json.loads(endpoints_file.read_text())
    assert target.data_dir is not None
    return Where(
        target=target,
        parameters=dict(endpoints.get("parameters") or {}),
        state_dir=target.data_dir / "smoke",
        label=f"local stack ({endpoints_file})",
        viewer_key=endpoints.get("viewer_key"),
    )


def deployed(stack: str, region: str | None, state_root: Path) -> Where:
    """A deployed stack: its outputs and the parameters it was deployed with."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    target = from_stack(stack, region)
    try:
        described = boto3.Session(region_name=region).client("cloudformation").describe_stacks(StackName=stack)
    except (BotoCoreError, ClientError) as exc:
        raise AdminError(f"cannot read stack {stack}: {exc}") from None
    parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in described["Stacks"][0].get("Parameters", [])}
    region = region or target.iot.meta.region_name
    return Where(target, parameters, state_root / stack, f"stack {stack} ({region})", region=region, stack=stack)


@dataclass
class Credentials:
    thing: str
    group: str
    api_key: str
    viewer_key: str
    device_dir: Path
    newest: datetime | None = None
    how: str = ""


def _state_file(where: Where) -> Path:
    return where.state_dir / "smoke.json"


def credentials(where: Where, thing: str, group: str) -> Credentials:
    """The smoke device's key (provisioned once, reused while it works) and a viewer key."""
    target = where.target
    state_path = _state_file(where)
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    device_dir = where.state_dir / thing
    record = devices.device(target, thing)
    if record is not None and record.state == "revoked":
        raise AdminError(f"{thing} is revoked: pass --thing with a new name")
    if record is not None and record.groupid != group:
        raise AdminError(f"{thing} belongs to group {record.groupid}, not {group}: pass --thing or --group")
    api_key = state.get("api_key") if state.get("thing") == thing else None
    if record is None:
        if devices.thing_exists(target, thing):
            raise AdminError(f"an IoT thing {thing} exists outside the registry: pass --thing with a new name")
        shutil.rmtree(device_dir, ignore_errors=True)
        api_key = devices.provision(target, thing, group, device_dir, location=SMOKE_GPS).api_key
        how = "provisioned"
    elif api_key and devices.key_is_active(target, api_key):
        how = "reused"
    else:
        api_key = devices.rotate(target, thing, timedelta(0))["api_key"]
        how = "reused with a new key"
    if target.local and not (device_dir / devices.CERT_FILE).exists():
        raise AdminError(f"{device_dir} has no certificate for {thing}: revoke it or pass --thing with a new name")
    viewer_key = where.viewer_key or state.get("viewer_key")
    if not viewer_key or not devices.key_is_active(target, viewer_key):
        viewer_key = devices.viewer(target, "smoke")["api_key"]
    newest = datetime.fromisoformat(state["newest"]) if state.get("newest") and state.get("thing") == thing else None
    state = {"thing": thing, "group": group, "api_key": api_key, "viewer_key": viewer_key}
    if newest:
        state["newest"] = newest.isoformat()
    save_state(where, state)
    return Credentials(thing, group, api_key, viewer_key, device_dir, newest, how)


def save_state(where: Where, state: Mapping[str, Any]) -> None:
    where.state_dir.mkdir(parents=True, exist_ok=True)
    where.state_dir.chmod(0o700)
    path = _state_file(where)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(state, indent=2) + "\n")
    scratch.chmod(0o600)
    scratch.rename(path)


class Listener:
    """Messages on the warning topic, collected by the MQTT client's thread into a queue."""

    def __init__(self) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.connection: Any = None

    def _on_message(self, topic: str, payload: bytes, **_: Any) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            self.messages.put(message)

    def connect(self, where: Where, creds: Credentials, topic: str, timeout: float) -> str:
        from awscrt import mqtt

        self.connection, how = connection_for(where, creds)
        self.connection.connect().result(timeout)
        subscribed, _ = self.connection.subscribe(topic=topic, qos=mqtt.QoS.AT_LEAST_ONCE, callback=self._on_message)
        subscribed.result(timeout)
        return f"{topic} on {self.connection.host_name}:{self.connection.port}, {how}"

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        for message in self.seen:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(message)
            if predicate(message):
                return message
        return None

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.disconnect().result(5)
            except Exception:  # noqa: BLE001 - leaving; a failed disconnect changes no result
                pass


def connection_for(where: Where, creds: Credentials) -> tuple[Any, str]:
    """An MQTT connection (not yet connected) to the stack's broker, and how it authenticates.

    In AWS: MQTT over WebSocket on 443, signed with SigV4 from boto3's credentials (profiles and
    SSO included), as an operator; client id `<stack>-smoke-<random>`, so it never takes over a
    device's session. Locally: the smoke device's certificate on the TLS listener, client id =
    its thing name, as a Pi connects to AWS IoT Core.
    """
    from awsiot import mqtt_connection_builder

    target = where.target
    if target.local:
        connection = mqtt_connection_builder.mtls_from_path(
            endpoint=target.mqtt_host,
            port=target.mqtt_port,
            cert_filepath=str(creds.device_dir / devices.CERT_FILE),
            pri_key_filepath=str(creds.device_dir / devices.KEY_FILE),
            ca_filepath=str(creds.device_dir / devices.ROOT_CA_FILE),
            client_id=creds.thing,
            clean_session=True,
            keep_alive_secs=30,
        )
        return connection, f"TLS with {creds.thing}'s certificate, client id {creds.thing}"
    import boto3
    from awscrt import auth

    found = boto3.Session(region_name=where.region).get_credentials()
    if found is None:
        raise SmokeError("no AWS credentials (aws configure, or aws sso login and AWS_PROFILE)")
    frozen = found.get_frozen_credentials()
    client_id = f"{where.stack}-smoke-{uuid.uuid4().hex[:8]}"
    connection = mqtt_connection_builder.websockets_with_default_aws_signing(
        region=where.region,
        credentials_provider=auth.AwsCredentialsProvider.new_static(frozen.access_key, frozen.secret_key, frozen.token),
        endpoint=target.mqtt_host,
        client_id=client_id,
        clean_session=True,
        keep_alive_secs=30,
    )
    return connection, f"WebSocket signed with SigV4 (your AWS credentials), client id {client_id}"


def _get(url: str, key: str, params: Mapping[str, str]) -> dict[str, Any]:
    answer = requests.get(url, headers={"x-api-key": key}, params=dict(params), timeout=HTTP_TIMEOUT)
    if answer.status_code != 200:
        raise SmokeError(f"GET {answer.url} answered {answer.status_code}: {answer.text[:300]}")
    body: dict[str, Any] = answer.json()
    return body


def newest_reading(api: str, creds: Credentials) -> datetime | None:
    """The smoke device's newest reading time, from GET /devices and the state file."""
    page = _get(f"{api}/devices", creds.viewer_key, {"groupid": creds.group})
    seen = [
        datetime.fromisoformat(str(row["last_seen"]).replace("Z", "+00:00"))
        for row in page.get("devices", [])
        if row.get("last_seen") and (row.get("groupid") == creds.group or row.get("device") == creds.thing)
    ]
    candidates = [*seen, *([creds.newest] if creds.newest else [])]
    return max(candidates) if candidates else None


def open_alarm(api: str, creds: Credentials) -> str | None:
    """The id of the smoke device's open NO2 alarm (GET /alarms), or None."""
    page = _get(f"{api}/alarms", creds.viewer_key, {"state": "open", "device": creds.thing, "gas": "no2"})
    alarms = page.get("alarms") or []
    return str(alarms[0]["alarm_id"]) if alarms else None


def post(api: str, creds: Credentials, documents: list[dict[str, Any]]) -> dict[str, Any]:
    answer = requests.post(
        f"{api}/readings", headers={"x-api-key": creds.api_key}, json=documents, timeout=HTTP_TIMEOUT
    )
    if answer.status_code != 200:
        raise SmokeError(f"POST /readings answered {answer.status_code}: {answer.text[:300]}")
    body: dict[str, Any] = answer.json()
    return body


def read_back(api: str, creds: Credentials, the_plan: Plan, rules: Rules, timeout: float) -> dict[str, Any] | None:
    """The run's NO2 reading as GET /warnings lists it (polled: a store may index a moment later)."""
    since = (the_plan.warning_at - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    stamp = stamp_of(rules, the_plan.warning_at)
    deadline = time.monotonic() + timeout
    while True:
        page = _get(f"{api}/warnings", creds.viewer_key, {"gas": "no2", "groupid": creds.group, "since": since})
        for item in page.get("warnings", []):
            if item.get("createdtime") == stamp and float(item.get("value", -1)) == the_plan.warning_value:
                return dict(item)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


# ---------------------------------------------------------------- the run


@dataclass
class Report:
    """One line per step; `failed` once any step failed."""

    lines: list[str] = field(default_factory=list)
    failed: bool = False
    out: Callable[[str], None] = print

    def step(self, name: str, ok: bool, detail: str) -> bool:
        line = f"{'PASS' if ok else 'FAIL'}  {name:<10} {detail}"
        self.lines.append(line)
        self.out(line)
        self.failed = self.failed or not ok
        return ok

    def skip(self, *names: str) -> None:
        for name in names:
            line = f"SKIP  {name:<10} (an earlier step failed)"
            self.lines.append(line)
            self.out(line)


STEPS = ("stack", "device", "subscribe", "post", "warning", "read back", "clear")


def run(where_of: Callable[[], Where], thing: str, group: str, timeout: float, report: Report | None = None) -> Report:
    """Every step, in order; a step that fails skips those that need it."""
    report = report or Report()
    remaining = list(STEPS)

    def done(name: str, ok: bool, detail: str) -> bool:
        remaining.remove(name)
        if not report.step(name, ok, detail):
            report.skip(*remaining)
            remaining.clear()
            return False
        return True

    try:
        where = where_of()
        rules = Rules.of(where.parameters)
    except (AdminError, SmokeError, ValueError, KeyError) as exc:
        done("stack", False, str(exc))
        return report
    api = where.target.api_url.rstrip("/")
    topic = warning_topic(rules.topic, group)
    if not done(
        "stack",
        True,
        f"{where.label}: api {api}, NO2 warning at {rules.warning['no2']:g}, {rules.timezone}, "
        f"clear after {rules.clear_readings} readings over {rules.clear_seconds} s",
    ):
        return report
    try:
        creds = credentials(where, thing, group)
        newest = newest_reading(api, creds)
        left_open = open_alarm(api, creds)
        start = start_of_run(datetime.now(UTC), newest, rules, pre_clean=left_open is not None)
    except (AdminError, SmokeError, requests.RequestException) as exc:
        done("device", False, str(exc))
        return report
    the_plan = plan(rules, group, start, pre_clean=left_open is not None)
    after = f", after its newest reading {newest:%H:%M:%S} UTC" if newest else ""
    closing = f"; alarm {left_open} is open: clean air closes it first" if left_open else ""
    done("device", True, f"{thing} (group {group}) {creds.how}; readings from {start:%H:%M:%S} UTC{after}{closing}")
    listener = Listener()
    try:
        try:
            detail = listener.connect(where, creds, topic, timeout)
        except Exception as exc:  # noqa: BLE001 - the CRT raises its own error types; the line says which
            done("subscribe", False, f"{type(exc).__name__}: {exc}")
            return report
        done("subscribe", True, detail)
        save_state(where, _state(creds, the_plan.last_at))
        try:
            body = post(api, creds, the_plan.first)
        except (SmokeError, requests.RequestException) as exc:
            done("post", False, str(exc))
            return report
        expected = sum(len(doc) - 2 for doc in the_plan.first)
        ok = body.get("accepted") == expected and not body.get("rejected") and not body.get("conflicts")
        if not done(
            "post",
            ok,
            f"{len(the_plan.first)} document{'s' if len(the_plan.first) != 1 else ''}, "
            f"NO2 {the_plan.warning_value:g} at "
            f"{stamp_of(rules, the_plan.warning_at)} {rules.timezone}: accepted {body.get('accepted')} of "
            f"{expected}, duplicates {body.get('duplicates')}, rejected {body.get('rejected')}",
        ):
            return report
        opened = listener.wait_for(lambda m: is_open_message(m, rules, group, the_plan.warning_at), timeout)
        if not done(
            "warning",
            opened is not None,
            f"alarm {opened['alarm_id']} opened: {opened['warning']} {opened['value']:g} >= {opened['threshold']:g}"
            if opened
            else f"no `open` message for the NO2 reading on {topic} within {timeout:g} s "
            f"({len(listener.seen)} other messages)",
        ):
            return report
        try:
            item = read_back(api, creds, the_plan, rules, timeout)
        except (SmokeError, requests.RequestException) as exc:
            done("read back", False, str(exc))
            return report
        done(
            "read back",
            item is not None,
            f"GET /warnings lists reading {item['reading_id']} (NO2 {item['value']:g}, device {item['device']})"
            if item
            else f"GET /warnings did not list the NO2 reading within {timeout:g} s",
        )
        if item is None:
            return report
        try:
            body = post(api, creds, the_plan.second)
        except (SmokeError, requests.RequestException) as exc:
            done("clear", False, str(exc))
            return report
        cleared = listener.wait_for(lambda m: is_clear_message(m, rules, group, the_plan.clear_at), timeout)
        done(
            "clear",
            cleared is not None,
            f"clean air: alarm {cleared['alarm_id']} cleared at {cleared['value']:g} (the next run warns again)"
            if cleared
            else f"no `clear` message within {timeout:g} s after {len(the_plan.second)} clean documents "
            f"(accepted {body.get('accepted')}); the next run's clean air closes it first",
        )
        return report
    finally:
        listener.close()


def _state(creds: Credentials, newest: datetime) -> dict[str, Any]:
    return {
        "thing": creds.thing,
        "group": creds.group,
        "api_key": creds.api_key,
        "viewer_key": creds.viewer_key,
        "newest": newest.isoformat(),
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gasmon-smoke", description="One reading through the whole system")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", metavar="NAME", help="a deployed stack (boto3's default credentials)")
    where.add_argument("--endpoints-file", type=Path, metavar="F", help="a local stack's endpoints.json")
    parser.add_argument("--region", help="AWS region of --stack (default: boto3's)")
    parser.add_argument("--thing", default=SMOKE_THING, help=f"the smoke device's thing name ({SMOKE_THING})")
    parser.add_argument("--group", default=SMOKE_GROUP, help=f"its groupid ({SMOKE_GROUP})")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each message (20)")
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".smoke"), help="where a deployed stack's smoke key is kept (.smoke)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def where() -> Where:
        if args.stack:
            return deployed(args.stack, args.region, args.state_dir)
        return local(args.endpoints_file)

    report = run(where, args.thing, args.group, args.timeout)
    print(f"smoke: {'FAILED' if report.failed else 'passed'}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
