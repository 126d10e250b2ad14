"""Reading template.yaml the way CloudFormation would, for a stack that lives on this machine.

cfn-lint's decoder reads the YAML (short-form tags such as `!Ref` become `{"Ref": ...}`), then
`Stack` resolves intrinsic functions (Ref, GetAtt, Sub, If, Join, Split, Select, Equals, Not,
And, Or, FindInMap, Base64, ToJsonString) against local physical names: tables, queues and
topics get the names moto will know them by, functions get Lambda-shaped ARNs. Resources this
module does not model (roles, log groups, the OpenSearch domain, SAM's generated resources) get
stable placeholder values, so any template that deploys also resolves here.

Everything is pure: no AWS call, no environment read. `specs` turn the resolved template into the
small dataclasses the rest of `gasmon_local` works from.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ACCOUNT_ID = "123456789012"
REGION = "ap-northeast-2"
STACK_NAME = "gasmon"


class TemplateError(Exception):
    """The template cannot be read or resolved; the message names the resource or field."""


class _NoValue:
    """`AWS::NoValue`: the property or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class StackContext:
    """Where the local stack lives: pseudo parameters and the endpoint moto answers on."""

    stack_name: str = STACK_NAME
    region: str = REGION
    account_id: str = ACCOUNT_ID
    aws_endpoint: str = "http://127.0.0.1:4566"
    partition: str = "aws"


@dataclass(frozen=True)
class AuthorizerSpec:
    """A Lambda REQUEST authorizer of an API (SAM `Auth.Authorizers`): which function, which
    headers are its identity source, and how long API Gateway caches its answer."""

    name: str
    function_arn: str
    identity_headers: tuple[str, ...] = ()
    ttl_seconds: int = 300


@dataclass(frozen=True)
class ApiRoute:
    """One `Api` event of a function: what API Gateway would route to it."""

    function: str
    path: str
    method: str  # upper case, or "ANY"
    api_id: str
    stage: str
    api_key_required: bool
    authorizer: AuthorizerSpec | None = None


@dataclass(frozen=True)
class SqsEventSource:
    """One `SQS` event of a function (an event source mapping)."""

    function: str
    queue_arn: str
    batch_size: int = 10
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class TopicRuleSpec:
    """An `AWS::IoT::TopicRule`: its SQL and its resolved actions."""

    logical_id: str
    name: str
    sql: str
    sql_version: str
    disabled: bool
    actions: tuple[dict[str, Any], ...]
    error_action: dict[str, Any] | None = None


@dataclass(frozen=True)
class SnsEventSource:
    """One `SNS` event of a function (the function subscribed to a topic)."""

    function: str
    topic_arn: str
    filter_policy: dict[str, Any] | None = None
    filter_policy_scope: str | None = None


@dataclass(frozen=True)
class ScheduleSpec:
    """One `Schedule`/`ScheduleV2` event: `rate(...)` runs locally, `cron(...)` is not wired."""

    function: str
    name: str
    expression: str
    input: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class AsyncConfig:
    """How Lambda handles a function's event invocations (EventInvokeConfig, DeadLetterQueue)."""

    max_retry_attempts: int = 2
    on_failure: str | None = None  # destination ARN (SQS, SNS or Lambda)
    on_success: str | None = None
    dead_letter: str | None = None  # SQS or SNS ARN: gets the event itself


@dataclass(frozen=True)
class FunctionSpec:
    """A function as the local runtime needs it: code, handler, resolved environment, events."""

    logical_id: str
    name: str
    arn: str
    code_uri: Path
    handler: str
    runtime: str
    timeout: int
    memory: int
    environment: dict[str, str]
    api_routes: tuple[ApiRoute, ...] = ()
    sqs_sources: tuple[SqsEventSource, ...] = ()
    sns_sources: tuple[SnsEventSource, ...] = ()
    schedules: tuple[ScheduleSpec, ...] = ()
    iot_rules: tuple[TopicRuleSpec, ...] = ()
    async_config: AsyncConfig = field(default_factory=AsyncConfig)
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions: Lambda throttles beyond it


@dataclass(frozen=True)
class QueueSpec:
    """An `AWS::SQS::Queue` with the attributes moto's CreateQueue takes."""

    logical_id: str
    name: str
    arn: str
    attributes: dict[str, str]
    redrive_target_arn: str | None = None
    max_receive_count: int | None = None


@dataclass(frozen=True)
class TableSpec:
    """An `AWS::DynamoDB::Table` (or SAM SimpleTable) as CreateTable arguments."""

    logical_id: str
    name: str
    create_arguments: dict[str, Any]
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class SubscriptionSpec:
    """An SNS subscription, inline in a topic or an `AWS::SNS::Subscription`."""

    topic_arn: str
    protocol: str
    endpoint: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryStreamSpec:
    """An `AWS::KinesisFirehose::DeliveryStream` with an (extended) S3 destination."""

    logical_id: str
    name: str
    bucket: str
    prefix: str
    error_prefix: str
    compression: str
    destination: dict[str, Any]


@dataclass(frozen=True)
class IotPolicySpec:
    """An `AWS::IoT::Policy`: its name and document (policy variables such as
    `${iot:Connection.Thing.ThingName}` kept for IoT to fill in)."""

    logical_id: str
    name: str
    document: dict[str, Any]


@dataclass(frozen=True)
class TopicSpec:
    """An `AWS::SNS::Topic`."""

    logical_id: str
    name: str
    arn: str
    attributes: dict[str, str]


def load(path: str | Path) -> dict[str, Any]:
    """Decode a CloudFormation/SAM template into plain dicts, lists and strings."""
    decoded, problems = decode(str(path))
    if decoded is None:
        detail = "; ".join(str(problem) for problem in problems) or "unreadable"
        raise TemplateError(f"cannot read {path}: {detail}")
    plain: dict[str, Any] = json.loads(json.dumps(decoded))
    return plain


class Stack:
    """A template resolved for one local stack: parameters, conditions, names, intrinsics."""

    def __init__(
        self,
        template: Mapping[str, Any],
        context: StackContext | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.template = template
        self.context = context or StackContext()
        self.base_dir = base_dir or Path.cwd()
        self.resources: dict[str, dict[str, Any]] = dict(template.get("Resources") or {})
        self.parameters = self._parameters(parameter_overrides or {})
        self._conditions: dict[str, bool] = {}
        # Function events the local stack does not deliver (Schedule, SNS...), for one log line.
        self.unwired_events: list[str] = []

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        context: StackContext | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> Stack:
        path = Path(path).resolve()
        return cls(load(path), context, parameter_overrides, base_dir=path.parent)

    # ---- parameters and conditions ----
    def _parameters(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        declared: dict[str, Any] = self.template.get("Parameters") or {}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"parameter override for undeclared parameter(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            value = overrides.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default; pass it with --parameter {name}=VALUE")
            kind = str(spec.get("Type", "String"))
            if kind.startswith("List<") or kind == "CommaDelimitedList":
                values[name] = value if isinstance(value, list) else [part.strip() for part in str(value).split(",")]
            else:
                values[name] = str(value)
        return values

    def condition(self, name: str) -> bool:
        """The value of a named condition (evaluated once)."""
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def active(self, logical_id: str) -> bool:
        """Whether a resource exists in this stack (its Condition, if any, holds)."""
        resource = self.resources.get(logical_id)
        if resource is None:
            return False
        condition = resource.get("Condition")
        return condition is None or self.condition(condition)

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        """Active resources of the given types, by logical id, in template order."""
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in types and self.active(logical_id)
        }

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties with every intrinsic function resolved."""
        resolved = self.resolve(self.resources[logical_id].get("Properties") or {})
        return resolved if isinstance(resolved, dict) else {}

    # ---- physical names, Ref and GetAtt ----
    def physical_name(self, logical_id: str) -> str:
        """The name the resource has in the local stack (its explicit name, else `<stack>-<id>`)."""
        resource = self.resources.get(logical_id, {})
        kind = resource.get("Type", "")
        raw = resource.get("Properties") or {}
        name_property = {
            "AWS::Serverless::Function": "FunctionName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Serverless::SimpleTable": "TableName",
            "AWS::IoT::TopicRule": "RuleName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
            "AWS::IoT::Policy": "PolicyName",
        }.get(kind)
        if name_property and name_property in raw:
            return str(self.resolve(raw[name_property]))
        if kind == "AWS::IoT::TopicRule":
            return logical_id  # rule names allow only [A-Za-z0-9_]
        name = f"{self.context.stack_name}-{logical_id}"
        if kind == "AWS::S3::Bucket":
            return name.lower()  # bucket names allow no capitals
        if kind == "AWS::SQS::Queue" and _truthy(raw.get("FifoQueue")):
            name += ".fifo"
        if kind == "AWS::SNS::Topic" and _truthy(raw.get("FifoTopic")):
            name += ".fifo"
        return name

    def arn(self, service: str, resource: str) -> str:
        ctx = self.context
        return f"arn:{ctx.partition}:{service}:{ctx.region}:{ctx.account_id}:{resource}"

    def ref(self, name: str) -> Any:
        """`Ref` of a parameter, pseudo parameter or resource."""
        ctx = self.context
        pseudo = {
            "AWS::Region": ctx.region,
            "AWS::AccountId": ctx.account_id,
            "AWS::StackName": ctx.stack_name,
            "AWS::StackId": self.arn("cloudformation", f"stack/{ctx.stack_name}/00000000-0000-0000-0000-000000000000"),
            "AWS::Partition": ctx.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self.resources.get(name, {}).get("Type", "")
        physical = self.physical_name(name)
        if kind == "AWS::SQS::Queue":
            return f"{ctx.aws_endpoint}/{ctx.account_id}/{physical}"
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", physical)
        if kind in ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi"):
            return "local"
        return physical  # functions, tables, rules, and placeholders for what is not modelled

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """`Fn::GetAtt` of a resource; unmodelled attributes resolve to a readable placeholder."""
        kind = self.resources.get(logical_id, {}).get("Type", "")
        physical = self.physical_name(logical_id)
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function") and attribute == "Arn":
            return self.arn("lambda", f"function:{physical}")
        if kind == "AWS::SQS::Queue":
            if attribute == "Arn":
                return self.arn("sqs", physical)
            if attribute == "QueueName":
                return physical
            if attribute == "QueueUrl":
                return self.ref(logical_id)
        if kind == "AWS::SNS::Topic":
            if attribute == "TopicArn":
                return self.arn("sns", physical)
            if attribute == "TopicName":
                return physical
        if kind in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            if attribute == "Arn":
                return self.arn("dynamodb", f"table/{physical}")
            if attribute == "StreamArn":
                return self.arn("dynamodb", f"table/{physical}/stream/1970-01-01T00:00:00.000")
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:{self.context.partition}:s3:::{physical}"
        if kind == "AWS::KinesisFirehose::DeliveryStream" and attribute == "Arn":
            return self.arn("firehose", f"deliverystream/{physical}")
        if kind == "AWS::IoT::TopicRule" and attribute == "Arn":
            return self.arn("iot", f"rule/{physical}")
        if attribute == "Arn" and (kind == "AWS::IAM::Role" or logical_id.endswith("Role")):
            return f"arn:{self.context.partition}:iam::{self.context.account_id}:role/{physical}"
        return f"{logical_id}.{attribute}"

    # ---- intrinsic functions ----
    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic function in `value`; `AWS::NoValue` entries are dropped."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _intrinsic(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self.ref(str(argument))
        if name == "Condition":
            return self.condition(str(argument))
        if name == "Fn::GetAtt":
            parts = argument.split(".", 1) if isinstance(argument, str) else [self.resolve(a) for a in argument]
            return self.get_att(str(parts[0]), str(parts[1]))
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        args = self.resolve(argument)
        if name == "Fn::Join":
            delimiter, items = args
            return str(delimiter).join(str(item) for item in items)
        if name == "Fn::Split":
            delimiter, text = args
            return str(text).split(str(delimiter))
        if name == "Fn::Select":
            index, items = args
            return items[int(index)]
        if name == "Fn::Equals":
            left, right = args
            return str(left) == str(right)
        if name == "Fn::Not":
            return not args[0]
        if name == "Fn::And":
            return all(args)
        if name == "Fn::Or":
            return any(args)
        if name == "Fn::FindInMap":
            mapping, top, second = args[:3]
            return self.template["Mappings"][mapping][top][second]
        if name == "Fn::Base64":
            return base64.b64encode(str(args).encode()).decode()
        if name == "Fn::ToJsonString":
            return json.dumps(args, separators=(",", ":"))
        if name == "Fn::Length":
            return len(args)
        if name == "Fn::GetAZs":
            return [f"{self.context.region}{zone}" for zone in "abcd"]
        if name == "Fn::ImportValue":
            return f"import:{args}"
        raise TemplateError(f"unsupported intrinsic function {name}")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], self.resolve(argument[1]) if len(argument) > 1 else {}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, str(text))

    # ---- specs ----
    def function_globals(self) -> dict[str, Any]:
        return dict((self.template.get("Globals") or {}).get("Function") or {})

    def functions(self) -> dict[str, FunctionSpec]:
        """Every active `AWS::Serverless::Function`, with Globals merged in."""
        globals_ = self.function_globals()
        global_env = self.resolve(((globals_.get("Environment") or {}).get("Variables")) or {})
        specs = {}
        for logical_id in self.of_type("AWS::Serverless::Function"):
            props = self.properties(logical_id)
            if props.get("PackageType") == "Image":
                raise TemplateError(f"{logical_id}: image functions are not supported locally")
            variables = dict(global_env) | ((props.get("Environment") or {}).get("Variables") or {})
            code_uri = props.get("CodeUri", globals_.get("CodeUri"))
            handler = props.get("Handler", globals_.get("Handler"))
            if not isinstance(code_uri, str) or not handler:
                raise TemplateError(f"{logical_id}: needs a local CodeUri folder and a Handler")
            name = self.physical_name(logical_id)
            events = self._events(logical_id, self.get_att(logical_id, "Arn"), props.get("Events") or {})
            events.sqs_sources.extend(self._sqs_mappings(logical_id))
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                name=name,
                arn=self.get_att(logical_id, "Arn"),
                code_uri=(self.base_dir / code_uri).resolve(),
                handler=str(handler),
                runtime=str(props.get("Runtime", self.resolve(globals_.get("Runtime", "python3.13")))),
                timeout=int(props.get("Timeout", self.resolve(globals_.get("Timeout", 3)))),
                memory=int(props.get("MemorySize", self.resolve(globals_.get("MemorySize", 128)))),
                environment={key: _env_string(value) for key, value in variables.items()},
                api_routes=tuple(events.api_routes),
                sqs_sources=tuple(events.sqs_sources),
                sns_sources=tuple(events.sns_sources),
                schedules=tuple(events.schedules),
                iot_rules=tuple(events.iot_rules),
                async_config=self._async_config(props, globals_),
                reserved_concurrency=_optional_int(
                    props.get("ReservedConcurrentExecutions")
                    or self.resolve(globals_.get("ReservedConcurrentExecutions"))
                ),
            )
        return specs

    def _sqs_mappings(self, function: str) -> list[SqsEventSource]:
        """`AWS::Lambda::EventSourceMapping` resources that feed an SQS queue to `function`
        (templates use them instead of SAM `SQS` events to keep the poller policy on one queue)."""
        names = {function, self.physical_name(function), self.get_att(function, "Arn")}
        sources = []
        for logical_id in self.of_type("AWS::Lambda::EventSourceMapping"):
            props = self.properties(logical_id)
            source_arn = str(props.get("EventSourceArn", ""))
            if props.get("FunctionName") not in names or ":sqs:" not in source_arn:
                continue
            sources.append(
                SqsEventSource(
                    function=function,
                    queue_arn=source_arn,
                    batch_size=int(props.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    enabled=_truthy(props.get("Enabled", True)),
                )
            )
        return sources

    def _async_config(self, props: dict[str, Any], globals_: dict[str, Any]) -> AsyncConfig:
        invoke_config = props.get("EventInvokeConfig") or self.resolve(globals_.get("EventInvokeConfig")) or {}
        destinations = invoke_config.get("DestinationConfig") or {}
        dead_letter = props.get("DeadLetterQueue") or self.resolve(globals_.get("DeadLetterQueue")) or {}
        return AsyncConfig(
            max_retry_attempts=int(invoke_config.get("MaximumRetryAttempts", 2)),
            on_failure=(destinations.get("OnFailure") or {}).get("Destination"),
            on_success=(destinations.get("OnSuccess") or {}).get("Destination"),
            dead_letter=dead_letter.get("TargetArn"),
        )

    def _events(self, function: str, function_arn: str, events: dict[str, Any]) -> _Events:
        found = _Events()
        for event_id, event in events.items():
            kind = event.get("Type")
            props = event.get("Properties") or {}
            if kind == "Api":
                api_id, stage, api_auth = self._api(props.get("RestApiId"))
                auth = props.get("Auth") or {}
                required = auth.get("ApiKeyRequired", api_auth.get("ApiKeyRequired", False))
                found.api_routes.append(
                    ApiRoute(
                        function=function,
                        path=str(props["Path"]),
                        method=str(props.get("Method", "any")).upper(),
                        api_id=api_id,
                        stage=stage,
                        api_key_required=_truthy(required),
                        authorizer=_authorizer(auth, api_auth),
                    )
                )
            elif kind == "SQS":
                found.sqs_sources.append(
                    SqsEventSource(
                        function=function,
                        queue_arn=str(props["Queue"]),
                        batch_size=int(props.get("BatchSize", 10)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (props.get("FunctionResponseTypes") or []),
                        enabled=_truthy(props.get("Enabled", True)),
                    )
                )
            elif kind == "SNS":
                policy = props.get("FilterPolicy")
                found.sns_sources.append(
                    SnsEventSource(function, str(props["Topic"]), policy, props.get("FilterPolicyScope"))
                )
            elif kind == "IoTRule":
                # SAM turns this into an AWS::IoT::TopicRule with a Lambda action on the function.
                found.iot_rules.append(
                    TopicRuleSpec(
                        logical_id=f"{function}{event_id}",
                        name=f"{function}{event_id}",
                        sql=str(props["Sql"]),
                        sql_version=str(props.get("AwsIotSqlVersion", "2015-10-08")),
                        disabled=False,
                        actions=({"Lambda": {"FunctionArn": function_arn}},),
                    )
                )
            elif kind in ("Schedule", "ScheduleV2") and str(
                props.get("Schedule") or props.get("ScheduleExpression") or ""
            ).startswith("rate("):
                enabled = _truthy(props.get("Enabled", True)) and str(props.get("State", "ENABLED")) == "ENABLED"
                found.schedules.append(
                    ScheduleSpec(
                        function=function,
                        name=f"{function}{event_id}",
                        expression=str(props.get("Schedule") or props.get("ScheduleExpression")),
                        input=props.get("Input"),
                        enabled=enabled,
                    )
                )
            else:
                entry = f"{function}.{event_id} ({kind})"
                if entry not in self.unwired_events:
                    self.unwired_events.append(entry)
        return found

    def _api(self, rest_api_id: Any) -> tuple[str, str, dict[str, Any]]:
        """API id, stage and Auth of the API an event belongs to (SAM's implicit API if none)."""
        if rest_api_id is None:
            api_globals = (self.template.get("Globals") or {}).get("Api") or {}
            return "local", "Prod", self.resolve(api_globals.get("Auth") or {})
        logical_id = next(
            (lid for lid in self.of_type("AWS::Serverless::Api") if self.ref(lid) == rest_api_id),
            None,
        )
        if logical_id is None:
            return str(rest_api_id), "Prod", {}
        props = self.properties(logical_id)
        return str(rest_api_id), str(props.get("StageName", "Prod")), props.get("Auth") or {}

    def topic_rules(self) -> list[TopicRuleSpec]:
        """Every active `AWS::IoT::TopicRule`, and the rules SAM makes of functions' IoTRule events."""
        rules = [rule for spec in self.functions().values() for rule in spec.iot_rules]
        for logical_id in self.of_type("AWS::IoT::TopicRule"):
            payload = self.properties(logical_id).get("TopicRulePayload") or {}
            rules.append(
                TopicRuleSpec(
                    logical_id=logical_id,
                    name=self.physical_name(logical_id),
                    sql=str(payload.get("Sql", "")),
                    sql_version=str(payload.get("AwsIotSqlVersion", "2015-10-08")),
                    disabled=_truthy(payload.get("RuleDisabled", False)),
                    actions=tuple(payload.get("Actions") or ()),
                    error_action=payload.get("ErrorAction"),
                )
            )
        return rules

    def queues(self) -> list[QueueSpec]:
        """Every active `AWS::SQS::Queue`."""
        names = {
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "FifoQueue",
            "ContentBasedDeduplication",
            "DeduplicationScope",
            "FifoThroughputLimit",
        }
        specs = []
        for logical_id in self.of_type("AWS::SQS::Queue"):
            props = self.properties(logical_id)
            attributes = {key: _env_string(value) for key, value in props.items() if key in names}
            redrive = props.get("RedrivePolicy") or {}
            if isinstance(redrive, str):
                redrive = json.loads(redrive)
            name = self.physical_name(logical_id)
            specs.append(
                QueueSpec(
                    logical_id=logical_id,
                    name=name,
                    arn=self.arn("sqs", name),
                    attributes=attributes,
                    redrive_target_arn=redrive.get("deadLetterTargetArn"),
                    max_receive_count=int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
                )
            )
        return specs

    def tables(self) -> list[TableSpec]:
        """Every active DynamoDB table (`AWS::DynamoDB::Table` and SAM's `SimpleTable`)."""
        specs = []
        for logical_id, resource in self.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable").items():
            props = self.properties(logical_id)
            name = self.physical_name(logical_id)
            if resource["Type"] == "AWS::Serverless::SimpleTable":
                key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
                kind = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
                arguments: dict[str, Any] = {
                    "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
                    "BillingMode": "PAY_PER_REQUEST",
                }
            else:
                arguments = {
                    key: props[key]
                    for key in (
                        "KeySchema",
                        "AttributeDefinitions",
                        "BillingMode",
                        "ProvisionedThroughput",
                        "GlobalSecondaryIndexes",
                        "LocalSecondaryIndexes",
                        "StreamSpecification",
                    )
                    if key in props
                }
                arguments.setdefault("BillingMode", "PROVISIONED")
                if arguments["BillingMode"] == "PROVISIONED":
                    arguments.setdefault("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
            ttl = props.get("TimeToLiveSpecification") or {}
            specs.append(
                TableSpec(
                    logical_id=logical_id,
                    name=name,
                    create_arguments={"TableName": name, **_numbers_as_ints(arguments)},
                    ttl_attribute=ttl.get("AttributeName") if _truthy(ttl.get("Enabled", False)) else None,
                )
            )
        return specs

    def buckets(self) -> list[str]:
        """Names of every active `AWS::S3::Bucket`."""
        return [self.physical_name(logical_id) for logical_id in self.of_type("AWS::S3::Bucket")]

    def delivery_streams(self) -> list[DeliveryStreamSpec]:
        """Every active Firehose delivery stream with an S3 destination."""
        specs = []
        for logical_id in self.of_type("AWS::KinesisFirehose::DeliveryStream"):
            props = self.properties(logical_id)
            destination = props.get("ExtendedS3DestinationConfiguration") or props.get("S3DestinationConfiguration")
            if not destination:
                continue
            specs.append(
                DeliveryStreamSpec(
                    logical_id=logical_id,
                    name=self.physical_name(logical_id),
                    bucket=str(destination["BucketARN"]).rsplit(":", 1)[-1],
                    prefix=str(destination.get("Prefix", "")),
                    error_prefix=str(destination.get("ErrorOutputPrefix", "")),
                    compression=str(destination.get("CompressionFormat", "UNCOMPRESSED")),
                    destination=destination,
                )
            )
        return specs

    def topics(self) -> list[TopicSpec]:
        """Every active `AWS::SNS::Topic`."""
        keys = {"DisplayName", "FifoTopic", "ContentBasedDeduplication", "KmsMasterKeyId"}
        specs = []
        for logical_id in self.of_type("AWS::SNS::Topic"):
            props = self.properties(logical_id)
            name = self.physical_name(logical_id)
            attributes = {key: _env_string(value) for key, value in props.items() if key in keys}
            specs.append(TopicSpec(logical_id, name, self.arn("sns", name), attributes))
        return specs

    def iot_policies(self) -> list[IotPolicySpec]:
        """Every active `AWS::IoT::Policy` (the device policy provisioning attaches to certificates)."""
        specs = []
        for logical_id in self.of_type("AWS::IoT::Policy"):
            props = self.properties(logical_id)
            document = props.get("PolicyDocument") or {}
            if isinstance(document, str):
                document = json.loads(document)
            specs.append(IotPolicySpec(logical_id, self.physical_name(logical_id), document))
        return specs

    def outputs(self) -> dict[str, str]:
        """The template's Outputs that resolve locally (as `--stack` reads them from CloudFormation)."""
        values = {}
        for name, output in (self.template.get("Outputs") or {}).items():
            condition = output.get("Condition")
            if condition and not self.condition(condition):
                continue
            try:
                value = self.resolve(output.get("Value"))
            except (TemplateError, KeyError, ValueError):
                continue
            if isinstance(value, str | int | float):
                values[name] = str(value)
        return values

    def subscriptions(self) -> list[SubscriptionSpec]:
        """SNS subscriptions: inline `Subscription` lists and `AWS::SNS::Subscription` resources."""
        specs = []
        for topic in self.topics():
            for item in self.properties(topic.logical_id).get("Subscription") or []:
                specs.append(SubscriptionSpec(topic.arn, str(item["Protocol"]), str(item["Endpoint"])))
        keys = {"FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy"}
        for logical_id in self.of_type("AWS::SNS::Subscription"):
            props = self.properties(logical_id)
            attributes = {
                key: json.dumps(value) if isinstance(value, dict) else _env_string(value)
                for key, value in props.items()
                if key in keys
            }
            topic_arn, protocol, endpoint = (str(props[key]) for key in ("TopicArn", "Protocol", "Endpoint"))
            specs.append(SubscriptionSpec(topic_arn, protocol, endpoint, attributes))
        return specs


def _authorizer(event_auth: dict[str, Any], api_auth: dict[str, Any]) -> AuthorizerSpec | None:
    """The Lambda REQUEST authorizer of a route: the event's `Auth.Authorizer` (`NONE`: none),
    else the API's `DefaultAuthorizer`; authorizers of other kinds are not modelled (None)."""
    name = event_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
    if not name or name in ("NONE", "AWS_IAM"):
        return None
    spec = (api_auth.get("Authorizers") or {}).get(name) or {}
    if not spec.get("FunctionArn") or str(spec.get("FunctionPayloadType", "TOKEN")).upper() != "REQUEST":
        return None
    identity = spec.get("Identity") or {}
    return AuthorizerSpec(
        name=str(name),
        function_arn=str(spec["FunctionArn"]),
        identity_headers=tuple(str(header) for header in identity.get("Headers") or ()),
        ttl_seconds=int(identity.get("ReauthorizeEvery", 300)),
    )


@dataclass
class _Events:
    api_routes: list[ApiRoute] = field(default_factory=list)
    sqs_sources: list[SqsEventSource] = field(default_factory=list)
    sns_sources: list[SnsEventSource] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    iot_rules: list[TopicRuleSpec] = field(default_factory=list)


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _env_string(value: Any) -> str:
    """Lambda environment values are strings; CloudFormation turns booleans into 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _numbers_as_ints(value: Any) -> Any:
    """CreateTable wants integers where templates often hold strings ("5")."""
    if isinstance(value, dict):
        return {
            key: int(item) if key.endswith("Units") and str(item).isdigit() else _numbers_as_ints(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_numbers_as_ints(item) for item in value]
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)
