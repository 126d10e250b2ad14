"""The rules engine: template.yaml's `AWS::IoT::TopicRule`s run against every message.

For each message the broker carries (client publishes, Last Wills, lifecycle events, shadow
responses, iot-data Publish calls), every enabled rule whose FROM filter matches evaluates its
SQL; when WHERE passes, each action runs with the SQL result:

- `Lambda`: the function whose ARN the rule names is invoked asynchronously (queued on a worker,
  as AWS IoT invokes Lambda with the Event invocation type);
- `Republish`: the result is published to the action's topic after substitution templates
  (`${topic(3)}`, `$$` for `$`) are filled, so a rule can write into a thing shadow;
- `Sns` and `Sqs`: the result is published to the topic or sent to the queue (in moto).

A failing action runs the rule's `ErrorAction` with AWS's error payload. Republished messages
run through the rules again, as in AWS; a loop is cut after `MAX_REPUBLISH_DEPTH` hops.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gasmon_local.iot_sql import IotQuery, IotSqlError, MessageContext, substitute
from gasmon_local.template import TopicRuleSpec

log = logging.getLogger("rules")

MAX_REPUBLISH_DEPTH = 8
SUPPORTED_ACTIONS = ("Lambda", "Republish", "Sns", "Sqs")
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("republish_depth", default=0)


class ActionTargets(Protocol):
    """Where actions land; the local stack wires these to the runtime, the broker and moto."""

    def invoke_lambda(self, function_arn: str, event: Any, source: str) -> None:
        """Queue an asynchronous invocation (never blocks the broker)."""
        ...

    async def republish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish a message into the broker, as the rules engine's own client."""
        ...

    def sns_publish(self, topic_arn: str, message: str) -> None:
        """Queue an SNS Publish."""
        ...

    def sqs_send(self, queue_url: str, body: str) -> None:
        """Queue an SQS SendMessage."""
        ...


@dataclass(frozen=True)
class Rule:
    """A loaded rule: its name, parsed SQL and resolved actions."""

    name: str
    query: IotQuery
    actions: tuple[dict[str, Any], ...]
    error_action: dict[str, Any] | None = None


def load_rules(specs: Sequence[TopicRuleSpec], problems: list[str] | None = None) -> list[Rule]:
    """Parse every enabled rule's SQL; unsupported actions are logged once and left out.

    A rule whose SQL this evaluator cannot run faithfully is not loaded: it is logged as an error
    and added to `problems` (the stack shows them in its banner) instead of running differently.
    """
    rules = []
    for spec in specs:
        if spec.disabled:
            log.info("rule %s is disabled in the template", spec.name)
            continue
        if spec.sql_version not in ("2016-03-23", "2015-10-08", "beta"):
            log.warning("rule %s: unknown AwsIotSqlVersion %s, evaluating as 2016-03-23", spec.name, spec.sql_version)
        actions = []
        for action in spec.actions:
            kind = next(iter(action), "?")
            if kind in SUPPORTED_ACTIONS:
                actions.append(action)
            else:
                log.warning("rule %s: %s action is not run locally (ignored)", spec.name, kind)
        try:
            query = IotQuery(spec.sql)
        except IotSqlError as exc:
            log.error("rule %s is not loaded: %s", spec.name, exc)
            if problems is not None:
                problems.append(f"rule {spec.name}: {exc}")
            continue
        rules.append(Rule(spec.name, query, tuple(actions), spec.error_action))
    return rules


class RuleEngine:
    """Evaluates rules against messages and runs their actions."""

    def __init__(self, rules: Sequence[Rule], targets: ActionTargets) -> None:
        self.rules = list(rules)
        self.targets = targets

    async def on_message(self, topic: str, payload: bytes, client_id: str | None, timestamp_ms: int) -> list[str]:
        """Run every matching rule on one message; returns the names of the rules that fired."""
        fired = []
        context = MessageContext(topic=topic, client_id=client_id, timestamp_ms=timestamp_ms)
        for rule in self.rules:
            if not rule.query.matches(topic):
                continue
            try:
                result = rule.query.apply(payload, context)
            except Exception:  # a bad message must not stop the broker; AWS logs and drops it too
                log.exception("rule %s: SQL failed on %s", rule.name, topic)
                continue
            if result is None:
                continue
            fired.append(rule.name)
            document = _document(payload)
            for action in rule.actions:
                try:
                    await self._run(rule, action, result, document, context)
                except Exception as exc:
                    log.error("rule %s: %s action failed: %s", rule.name, next(iter(action)), exc)
                    await self._error_action(rule, action, exc, payload, context)
        return fired

    async def _run(
        self, rule: Rule, action: dict[str, Any], result: dict[str, Any] | bytes, document: Any, ctx: MessageContext
    ) -> None:
        kind, settings = next(iter(action.items()))
        body = result if isinstance(result, bytes) else json.dumps(result).encode()
        if kind == "Lambda":
            event = result if isinstance(result, dict) else _undecodable(result)
            log.info("rule %s: %s -> lambda %s", rule.name, ctx.topic, str(settings["FunctionArn"]).rsplit(":", 1)[-1])
            self.targets.invoke_lambda(str(settings["FunctionArn"]), event, f"rule {rule.name}")
        elif kind == "Republish":
            topic = substitute(str(settings["Topic"]), document, ctx)
            depth = _depth.get()
            if depth >= MAX_REPUBLISH_DEPTH:
                raise RuntimeError(f"republish loop cut after {depth} hops at {topic}")
            log.info("rule %s: %s -> republish %s", rule.name, ctx.topic, topic)
            token = _depth.set(depth + 1)
            try:
                await self.targets.republish(topic, body, int(settings.get("Qos", 0)))
            finally:
                _depth.reset(token)
        elif kind == "Sns":
            message = body.decode(errors="replace")
            if settings.get("MessageFormat") == "JSON":
                message = json.dumps({"default": message})
            log.info("rule %s: %s -> sns %s", rule.name, ctx.topic, settings["TargetArn"])
            self.targets.sns_publish(str(settings["TargetArn"]), message)
        elif kind == "Sqs":
            text = base64.b64encode(body).decode() if settings.get("UseBase64") else body.decode(errors="replace")
            log.info("rule %s: %s -> sqs %s", rule.name, ctx.topic, settings["QueueUrl"])
            self.targets.sqs_send(str(settings["QueueUrl"]), text)

    async def _error_action(
        self, rule: Rule, action: dict[str, Any], error: Exception, payload: bytes, ctx: MessageContext
    ) -> None:
        if not rule.error_action:
            return
        failure = {
            "ruleName": rule.name,
            "topic": ctx.topic,
            "cloudwatchTraceId": "local",
            "clientId": ctx.client_id or "",
            "base64OriginalPayload": base64.b64encode(payload).decode(),
            "failures": [{"failedAction": f"{next(iter(action))}Action", "errorMessage": str(error)}],
        }
        try:
            await self._run(rule, rule.error_action, failure, failure, ctx)
        except Exception:
            log.exception("rule %s: error action failed too", rule.name)


def _document(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _undecodable(payload: bytes) -> dict[str, Any]:
    # AWS hands binary payloads to Lambda base64-encoded; gasmon's rules only see JSON.
    return {"base64Payload": base64.b64encode(payload).decode()}
