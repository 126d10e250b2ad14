"""The whole local stack, wired from template.yaml: what `gasmon-local` starts and stops.

Start order: moto (AWS APIs) -> the MQTT broker and its iot-data endpoint -> the template,
resolved against those endpoints -> tables, queues, topics and subscriptions in moto -> the
function runtime with each function's environment -> rules, SQS event sources, the SNS bridge
(e-mail, SNS-subscribed functions), rate schedules -> the HTTP gateway ->
`<data-dir>/endpoints.json` -> the simulated fleet. Stop runs the other way round, letting
devices disconnect cleanly and queued invocations finish first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gasmon_admin.devices import CERT_FILE, KEY_FILE, ROOT_CA_FILE
from gasmon_admin.target import Target
from gasmon_device.config import DEFAULT_PRESENCE_TOPIC, MqttSettings
from gasmon_local import aws, iot_policy, lifecycle, schedules
from gasmon_local.broker import IotCore, TlsListener
from gasmon_local.dynamodb_journal import DynamoDbJournal
from gasmon_local.faults import FaultPlan
from gasmon_local.functions import DEFAULT_CONCURRENCY, ROOT, FunctionNotFoundError, FunctionRuntime
from gasmon_local.gateway import API_KEY_ENV, ApiGateway
from gasmon_local.guard import DataDirLock, check_ports
from gasmon_local.identities import ensure_credentials
from gasmon_local.iot_data import IotDataApp
from gasmon_local.iot_identity import MotoIotRegistry
from gasmon_local.local_ca import LocalCA
from gasmon_local.rules import Rule, RuleEngine, load_rules
from gasmon_local.servers import ServerThread
from gasmon_local.shadows import ShadowStore
from gasmon_local.template import ACCOUNT_ID, REGION, SnsEventSource, Stack, StackContext, load

log = logging.getLogger("local")
GRACE_VARIABLE = "GRACE_SECONDS"
LOCAL_EMAIL = "operator@gasmon.local"


@dataclass
class Options:
    """What `gasmon-local` was asked for."""

    template: Path = ROOT / "template.yaml"
    data_dir: Path = Path(".local")
    host: str = "127.0.0.1"
    http_port: int = 3000
    mqtt_port: int = 1883
    mqtts_port: int = 8883
    strict: bool = False  # no plain (unauthenticated) MQTT listener
    iot_data_port: int = 3001
    aws_port: int = 4566
    devices: int = 3
    interval: float = 5.0
    grace: float | None = None
    grace_explicit: bool = True  # False when `grace` is gasmon-local's demo default
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    log_level: int = 20  # logging.INFO
    faults: str = ""  # --faults: KIND=PROBABILITY,... (gasmon_local.faults)
    fault_seed: int = 0
    concurrency: int = DEFAULT_CONCURRENCY  # --concurrency: environments per function (gasmon_local.functions)


def fleet_mqtt(data_dir: Path, host: str, tls_port: int, things: list[str]) -> list[MqttSettings]:
    """The simulated Pis' MQTT settings: the TLS listener, each with its provisioned certificate
    and key from `<data-dir>/fleet/<thing>/`, and the local CA as the root, as a Pi holds them."""
    settings = []
    for thing in things:
        folder = data_dir / "fleet" / thing
        settings.append(
            MqttSettings(
                host=host,
                port=tls_port,
                tls=True,
                root_ca=folder / ROOT_CA_FILE,
                cert=folder / CERT_FILE,
                key=folder / KEY_FILE,
                clean_session=True,
                presence_topic=DEFAULT_PRESENCE_TOPIC,
                reconnect_base_seconds=1.0,
                reconnect_cap_seconds=30.0,
            )
        )
    return settings


def local_parameter_overrides(template: Mapping[str, Any], options: Options) -> tuple[dict[str, str], bool]:
    """Parameter overrides for a local run, and whether the grace period reaches any function.

    - An e-mail parameter (its name contains "email") left empty gets `operator@gasmon.local`, so
      the template's email subscription exists and alerts show up in the mail folder.
    - `--grace` overrides the parameter that functions' GRACE_SECONDS refers to (so a delay
      queue built from the same parameter follows); if GRACE_SECONDS is a literal it is
      overridden in the functions' environments instead (see `function_environments`).
    """
    overrides = dict(options.parameter_overrides)
    declared: dict[str, Any] = template.get("Parameters") or {}
    for name, spec in declared.items():
        if "email" in name.lower() and not spec.get("Default") and name not in overrides:
            overrides[name] = LOCAL_EMAIL
    grace_applies = False
    if options.grace is not None:
        sources = [(template.get("Globals") or {}).get("Function") or {}]
        sources += [
            resource.get("Properties") or {}
            for resource in (template.get("Resources") or {}).values()
            if resource.get("Type") == "AWS::Serverless::Function"
        ]
        references = [
            ((source.get("Environment") or {}).get("Variables") or {}).get(GRACE_VARIABLE) for source in sources
        ]
        parameters = {ref["Ref"] for ref in references if isinstance(ref, dict) and ref.get("Ref") in declared}
        for parameter in parameters:
            overrides[parameter] = _number(options.grace)
        grace_applies = any(reference is not None for reference in references)
    return overrides, grace_applies


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def process_environment(aws_endpoint: str, iot_data_endpoint: str, region: str) -> dict[str, str]:
    """Variables set once for the whole process: no function may ever reach real AWS."""
    return {
        **aws.FAKE_CREDENTIALS,
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ENDPOINT_URL_IOT_DATA": iot_data_endpoint,
        "IOT_DATA_ENDPOINT": iot_data_endpoint,
        "POWERTOOLS_TRACE_DISABLED": "true",
        # The EMF metric blobs Powertools prints after every invocation drown the local log.
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


def cursor_key(data_dir: Path) -> str:
    """The key the query API signs cursors with: `<data-dir>/cursor-key`, made once (mode 600),
    so cursors stay valid across a restart and differ between data directories."""
    path = data_dir / "cursor-key"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def function_environments(
    stack: Stack, common: Mapping[str, str], data_dir: Path, grace: float | None
) -> dict[str, dict[str, str]]:
    """Each function's variables: template (Globals + own) + the local overrides."""
    environments = {}
    for logical_id, spec in stack.functions().items():
        variables = dict(spec.environment)
        variables.setdefault("POWERTOOLS_METRICS_NAMESPACE", "gasmon")
        variables |= dict(common)
        variables |= {"READING_STORE": "sqlite", "SQLITE_PATH": str((data_dir / "readings.sqlite3").resolve())}
        # The embedded store is SQLite, so presence e-mails can name a device's group and place.
        variables |= {"DEVICE_DIRECTORY": "sqlite"}
        # The query API signs its cursors with a key kept in the data directory (see `cursor_key`).
        variables |= {"CURSOR_KEY": cursor_key(data_dir)}
        if grace is not None and GRACE_VARIABLE in variables:
            variables[GRACE_VARIABLE] = _number(grace)
        environments[logical_id] = variables
    return environments


def _subscribe_function(bridge: aws.SnsBridge, runtime: FunctionRuntime, source: SnsEventSource) -> None:
    """An SNS event of a function: SNS invokes it asynchronously with SNS's event."""
    attributes = {}
    if source.filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(source.filter_policy)
    if source.filter_policy_scope:
        attributes["FilterPolicyScope"] = source.filter_policy_scope
    subscription: list[str] = []

    def handle(envelope: dict[str, Any]) -> None:
        runtime.invoke_async(source.function, aws.sns_event(envelope, subscription[0]), f"sns {source.topic_arn}")

    subscription.append(bridge.subscribe(source.topic_arn, attributes, handle, source.function))


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def _needs_key(route: Any) -> bool:
    return route.authorizer is not None or bool(route.api_key_required)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class LocalTargets:
    """Where rule actions land: the function runtime, the broker, and moto."""

    def __init__(self, runtime: FunctionRuntime, core: IotCore, aws_endpoint: str, region: str) -> None:
        self.runtime = runtime
        self.core = core
        self.sns = aws.client("sns", aws_endpoint, region)
        self.sqs = aws.client("sqs", aws_endpoint, region)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rule-actions")

    def invoke_lambda(self, function_arn: str, event: Any, source: str) -> None:
        try:
            self.runtime.invoke_async(function_arn, event, source)
        except FunctionNotFoundError as exc:
            logging.getLogger("rules").error("%s: %s", source, exc)

    async def republish(self, topic: str, payload: bytes, qos: int) -> None:
        await self.core.publish(topic, payload, qos)

    def sns_publish(self, topic_arn: str, message: str) -> None:
        self.executor.submit(self.sns.publish, TopicArn=topic_arn, Message=message)

    def sqs_send(self, queue_url: str, body: str) -> None:
        self.executor.submit(self.sqs.send_message, QueueUrl=queue_url, MessageBody=body)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


FleetRunner = Callable[..., object]


class LocalStack:
    """Starts, reports and stops every piece; `run` is the whole lifetime of `gasmon-local`."""

    def __init__(self, options: Options, fleet: FleetRunner | None = None) -> None:
        self.options = options
        self.data_dir = options.data_dir.resolve()
        self.fleet = fleet
        self.stop_threads = threading.Event()
        self.endpoints: dict[str, Any] = {}
        self.rules: list[Rule] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Start everything, wait for `stop`, then stop what was started, newest first.

        Each piece registers its own stop as it starts, so a failure half-way through (a port in
        use, say) still stops whatever had already started.
        """
        async with contextlib.AsyncExitStack() as started:
            await self._start(started)
            await stop.wait()
            log.info("stopping...")
        log.info("stopped; data kept in %s", self.data_dir)

    def ports(self) -> list[tuple[str, int]]:
        """Every port this stack will listen on, with the flag that sets it."""
        options = self.options
        return [
            ("--http-port", options.http_port),
            *([] if options.strict else [("--mqtt-port", options.mqtt_port)]),
            ("--mqtts-port", options.mqtts_port),
            ("--iot-data-port", options.iot_data_port),
            ("--aws-port", options.aws_port),
        ]

    async def _start(self, started: contextlib.AsyncExitStack) -> None:
        options = self.options
        # The lock first: until it is ours, another stack may own everything in the data dir.
        lock = DataDirLock(self.data_dir).acquire()
        started.callback(lock.release)
        check_ports(options.host, self.ports())
        endpoints_file = self.data_dir / "endpoints.json"
        endpoints_file.unlink(missing_ok=True)  # a stale one from a stack that was killed
        started.callback(endpoints_file.unlink, missing_ok=True)

        snapshot_dir = self.data_dir / "dynamodb"
        journal = DynamoDbJournal(snapshot_dir / "journal.jsonl")
        moto = aws.MotoServer(options.host, options.aws_port, journal=journal)
        aws_url = moto.start()
        started.callback(moto.stop)
        core = IotCore(
            ShadowStore(self.data_dir / "shadows.json"),
            lifecycle.VersionCounter(self.data_dir / "lifecycle-versions.json"),
            options.host,
            None if options.strict else options.mqtt_port,
            tls=self._tls_listener(),
            registry=MotoIotRegistry(aws_url, REGION),
            arns=iot_policy.Arns(REGION, ACCOUNT_ID),
        )
        await core.start()
        started.push_async_callback(core.stop)
        iot_data = ServerThread(IotDataApp(core), options.host, options.iot_data_port, "iot-data").start()
        started.push_async_callback(asyncio.to_thread, iot_data.stop)

        raw = load(options.template)
        overrides, grace_applies = local_parameter_overrides(raw, options)
        context = StackContext(aws_endpoint=aws_url, region=REGION)
        stack = Stack(raw, context, overrides, options.template.resolve().parent)
        region = stack.context.region
        common = process_environment(aws_url, iot_data.url, region)
        os.environ.update(common)
        bucket_dir = self.data_dir / "s3"
        problems = await asyncio.to_thread(aws.create_resources, stack, aws_url, snapshot_dir, journal, bucket_dir)
        # A policy the broker cannot read is never silently allowed: it is left out, and said here.
        problems += iot_policy.readable_policies((p.name, p.document) for p in stack.iot_policies())[1]
        started.push_async_callback(asyncio.to_thread, aws.save_tables, stack, aws_url, snapshot_dir, journal)
        started.push_async_callback(asyncio.to_thread, aws.save_buckets, stack, aws_url, bucket_dir)

        functions = stack.functions()
        environments = function_environments(stack, common, self.data_dir, options.grace)
        self.fault_plan = FaultPlan.from_spec(options.faults, options.fault_seed)
        runtime = FunctionRuntime(
            functions,
            environments,
            deliver=aws.Delivery(aws_url, region).send,
            isolation="process",
            concurrency=options.concurrency,
            faults=self.fault_plan or None,
        )
        targets = LocalTargets(runtime, core, aws_url, region)
        started.callback(targets.close)
        started.callback(runtime.close)
        self.rules = load_rules(stack.topic_rules(), problems)
        core.rules = RuleEngine(self.rules, targets)

        started.callback(self.stop_threads.set)
        for spec in functions.values():
            for source in spec.sqs_sources:
                if not source.enabled:
                    continue
                try:
                    aws.SqsPoller(source, runtime.invoke, aws_url, region, self.stop_threads).start()
                except Exception as exc:  # a queue outside the template, say
                    problems.append(f"SQS event of {spec.logical_id} on {source.queue_arn}: {exc}")
        bridge = aws.SnsBridge(aws_url, region, self.stop_threads)
        mail = aws.MailBridge(stack, bridge, self.data_dir / "mail")
        mail.start()
        sns_sources = [source for spec in functions.values() for source in spec.sns_sources]
        sns_sources += [  # SNS subscriptions with protocol lambda, to a function of the template
            SnsEventSource(s.endpoint, s.topic_arn, _json_or_none(s.attributes.get("FilterPolicy")))
            for s in stack.subscriptions()
            if s.protocol == "lambda"
        ]
        for sns_source in sns_sources:
            try:
                _subscribe_function(bridge, runtime, sns_source)
            except Exception as exc:
                problems.append(f"SNS subscription of {sns_source.function} to {sns_source.topic_arn}: {exc}")
        schedules.start_schedules(
            [schedule for spec in functions.values() for schedule in spec.schedules],
            runtime.invoke_async,
            region,
            stack.context.account_id,
            self.stop_threads,
        )
        routes = [route for spec in functions.values() for route in spec.api_routes]
        gateway_app = ApiGateway(routes, runtime.invoke, static_dir=ROOT / "dashboard")
        gateway = ServerThread(gateway_app, options.host, options.http_port, "api").start()
        started.push_async_callback(asyncio.to_thread, gateway.stop)

        # Credentials as an operator makes them: `gasmon-admin`'s provisioning, against moto.
        outputs = stack.outputs() | {"ApiUrl": gateway.url}
        target = Target(
            iot=aws.client("iot", aws_url, region),
            dynamodb=aws.client("dynamodb", aws_url, region),
            device_table=outputs.get("DeviceTableName", ""),
            device_policy=outputs.get("DevicePolicyName", ""),
            api_url=gateway.url,
            mqtt_host=options.host,
            mqtt_port=core.tls_port,  # devices connect as in AWS: TLS, their own certificate
            warning_topic=outputs.get("WarningTopic", "pi/1"),
            data_dir=self.data_dir,
        )
        env_key = os.environ.get(API_KEY_ENV) or None
        credentials = await asyncio.to_thread(ensure_credentials, target, self.data_dir, options.devices, env_key)
        api_key = credentials.device_keys[0]
        key_source = f"{credentials.things[0]}, {API_KEY_ENV}" if env_key else credentials.things[0]

        self.endpoints = {
            "api": gateway.url,
            **({} if options.strict else {"mqtt": f"mqtt://{options.host}:{core.port}"}),
            "mqtts": f"mqtts://{options.host}:{core.tls_port}",
            "ca_file": str(LocalCA(self.data_dir).ca_file),
            "iot_data": iot_data.url,
            "aws": aws_url,
            "api_key": api_key,
            # Whose key `api_key` is: the device agent's `--local` posts as this thing and group.
            "api_key_device": {"thing": credentials.things[0], "groupid": "1"},
            "viewer_key": credentials.viewer_key,
            "viewer_url": f"{gateway.url}/#key={credentials.viewer_key}",
            "mail_dir": str(mail.mail_dir),
            "region": region,
            "sqlite_path": str(self.data_dir / "readings.sqlite3"),
            # Where ingest's archive stream delivers (gzip JSON lines under readings/dt=YYYY-MM-DD/).
            "archive_bucket": next((stream.bucket for stream in stack.delivery_streams()), None),
            "data_dir": str(self.data_dir),
            "outputs": outputs,
            # The template parameters this stack runs with (defaults and --parameter overrides).
            "parameters": stack.parameters,
            "pid": os.getpid(),
        }
        self._banner(stack, routes, key_source, grace_applies, len(mail.subscriptions), problems)
        scratch = endpoints_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.endpoints, indent=2) + "\n")
        scratch.rename(endpoints_file)

        fleet_thread = None
        if options.devices > 0 and self.fleet is not None:
            # Each simulated Pi connects as AWS IoT Core expects: TLS, its provisioned certificate,
            # its thing name as client id, the stack's device policy enforced.
            fleet_thread = threading.Thread(
                target=self.fleet,
                kwargs={
                    "api_url": gateway.url,
                    "api_key": credentials.device_keys,
                    "mqtt_host": options.host,
                    "mqtt_port": core.tls_port,
                    "devices": options.devices,
                    "interval": options.interval,
                    "stop_event": self.stop_threads,
                    "mqtt_settings": fleet_mqtt(self.data_dir, options.host, core.tls_port, credentials.things),
                },
                name="fleet",
                daemon=True,
            )
            fleet_thread.start()
        started.push_async_callback(self._settle, fleet_thread, runtime)

    def _tls_listener(self) -> TlsListener:
        """The broker's TLS certificate, issued by the local CA at each start (the CA itself is kept)."""
        ca = LocalCA(self.data_dir)
        ca_file = ca.ensure()
        issued = ca.issue_server_certificate((self.options.host, "localhost"))
        certfile, keyfile = ca.directory / "broker.pem", ca.directory / "broker.key"
        certfile.write_text(issued.certificate_pem)
        descriptor = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(issued.private_key_pem)
        return TlsListener(self.options.mqtts_port, certfile, keyfile, ca_file)

    async def _settle(self, fleet_thread: threading.Thread | None, runtime: FunctionRuntime) -> None:
        """First step of stopping: devices disconnect cleanly, queued invocations finish."""
        self.stop_threads.set()
        if fleet_thread is not None:
            await asyncio.to_thread(fleet_thread.join, 10)
        await asyncio.sleep(0.2)  # let the devices' clean disconnects reach the rules
        try:
            await asyncio.to_thread(runtime.drain, 10)
        except TimeoutError:
            log.warning("some queued invocations did not finish")

    def _banner(
        self,
        stack: Stack,
        routes: list[Any],
        key_source: str,
        grace_applies: bool,
        mail_count: int,
        problems: list[str],
    ) -> None:
        e = self.endpoints
        lines = [
            f"gasmon local stack is up ({_relative(self.options.template)}, data in {_relative(self.data_dir)})",
            f"  api       {e['api']}  device key (x-api-key): {e['api_key']}  ({key_source})",
            f"  dashboard {e['viewer_url']}  (viewer key: reads only)",
        ]
        lines += [
            f"            {r.method} {r.path} -> {r.function}{'' if _needs_key(r) else ' (no key)'}" for r in routes
        ]
        lines += [
            f"  mqtts     {e['mqtts']}  (AWS IoT Core: X.509 client certificates from the local CA, "
            "the template's IoT policies, lifecycle events, rules, shadows)",
            f"            root CA {e['ca_file']}; certificates: gasmon-admin --local provision",
        ]
        if "mqtt" in e:
            lines.append(
                f"  mqtt      {e['mqtt']}  UNAUTHENTICATED, local only: no certificates or policies (--strict: off)"
            )
        lines += [
            f"  iot-policies {', '.join(p.name for p in stack.iot_policies()) or 'none'} (enforced on mqtts)",
            f"  iot-data  {e['iot_data']}",
            f"  aws       {e['aws']}  (moto: SNS, SQS, DynamoDB, S3, Firehose, the IoT registry)",
            f"  archive   s3://{e['archive_bucket']}/readings/  (gzip JSON lines; {_relative(self.data_dir)}/s3)"
            if e.get("archive_bucket")
            else "  archive   none in the template",
            f"  mail      {e['mail_dir']}  ({mail_count} email subscription(s))",
            f"  rules     {', '.join(rule.name for rule in self.rules) or 'none in the template'}",
            f"  functions {', '.join(stack.functions())}",
            f"            each in processes of its own, up to {self.options.concurrency} at once (--concurrency)"
            " or its ReservedConcurrentExecutions if lower",
        ]
        for problem in problems:
            lines.append(f"  NOT WIRED: {problem}")
        if stack.unwired_events:
            lines.append(f"  not wired locally: {', '.join(stack.unwired_events)}")
        if grace_applies:
            lines.append(f"  presence  grace period {_number(self.options.grace or 0)} s (--grace)")
        elif self.options.grace is not None and self.options.grace_explicit:
            lines.append(f"  note: --grace has no effect, no function of the template declares {GRACE_VARIABLE}")
        if self.fault_plan:
            lines.append(f"  FAULTS    {self.fault_plan.describe()} (--faults, --fault-seed)")
        lines.append(f"  endpoints written to {self.data_dir / 'endpoints.json'}; Ctrl-C stops")
        for line in lines:
            log.info("%s", line)
