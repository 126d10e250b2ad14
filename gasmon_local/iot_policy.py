"""AWS IoT Core policy evaluation, as the message broker does it for CONNECT, PUBLISH, SUBSCRIBE, RECEIVE.

Pure: policy documents (already parsed JSON) and a request in, a decision out; no I/O.

What it follows from the AWS IoT developer guide ("AWS IoT Core policies", "Policy actions",
"Action resources", "Policy variables"):

- A request is allowed when some statement of some attached policy allows it and no statement
  denies it (an explicit Deny overrides any Allow; nothing matching means denied).
- Actions: `iot:Connect` on `client/<clientId>`, `iot:Publish` and `iot:Receive` on
  `topic/<topic>`, `iot:Subscribe` on `topicfilter/<filter>` (a shared subscription's filter
  is the whole `$share/<group>/<filter>`). Action names are case-insensitive and may use `*`/`?`.
- Resources are ARNs matched case-sensitively with `*` (any run of characters, `/` included)
  and `?` (one character); MQTT's `+` and `#` are plain characters in a policy, as in AWS.
- Policy variables `${iot:ClientId}`, `${iot:Connection.Thing.ThingName}`,
  `${iot:Connection.Thing.IsAttached}` (and `${iot:Connection.Thing.ThingTypeName}`,
  `${iot:Certificate.Subject.CommonName}` when known) are replaced in resources and condition
  values. A variable with no value (no thing attached, say) makes that resource match nothing,
  as IAM does with an unresolvable variable.
- Conditions: StringEquals, StringNotEquals, StringLike, StringNotLike, Bool (with `...IfExists`),
  on the same context keys. A policy using anything else (NotAction, NotResource, an unknown
  operator or variable) is not guessed at: `parse_policy` raises `PolicyUnreadableError`, and the
  caller reports it and leaves that policy out, so it can only take permissions away, never add.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONNECT = "iot:Connect"
PUBLISH = "iot:Publish"
SUBSCRIBE = "iot:Subscribe"
RECEIVE = "iot:Receive"

THING_NAME = "iot:Connection.Thing.ThingName"
IS_ATTACHED = "iot:Connection.Thing.IsAttached"
CLIENT_ID = "iot:ClientId"
KNOWN_VARIABLES = frozenset(
    {
        CLIENT_ID,
        THING_NAME,
        IS_ATTACHED,
        "iot:Connection.Thing.ThingTypeName",
        "iot:Certificate.Subject.CommonName",
    }
)
OPERATORS = frozenset({"StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "Bool"})
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class PolicyUnreadableError(ValueError):
    """A policy document this evaluator cannot read faithfully (it is then not applied)."""


@dataclass(frozen=True)
class Condition:
    operator: str
    key: str
    values: tuple[str, ...]
    if_exists: bool = False


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" or "Deny"
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    sid: str = ""


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class Decision:
    """The outcome, and the policy (and statement) that decided it when one did."""

    allowed: bool
    policy: str | None = None
    statement: str | None = None
    considered: tuple[str, ...] = ()  # the policies evaluated, named in an implicit deny

    @property
    def because(self) -> str:
        if self.policy is None:
            if not self.considered:
                return "no policy is attached (implicit deny)"
            return f"no statement of {', '.join(self.considered)} allows it (implicit deny)"
        verb = "allowed" if self.allowed else "explicitly denied"
        return f"{verb} by {self.policy}" + (f" ({self.statement})" if self.statement else "")


@dataclass(frozen=True)
class Connection:
    """What the policy variables of one connection resolve to."""

    client_id: str
    thing_name: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, str]:
        values = {CLIENT_ID: self.client_id, IS_ATTACHED: "true" if self.thing_name else "false"}
        if self.thing_name:
            values[THING_NAME] = self.thing_name
        return values | dict(self.variables)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise PolicyUnreadableError(f"{what} must be a string or a list of strings")
    return tuple(items)


def _check_variables(text: str) -> None:
    for name in _VARIABLE.findall(text):
        if name not in KNOWN_VARIABLES:
            raise PolicyUnreadableError(f"policy variable ${{{name}}} is not supported here")


def parse_policy(name: str, document: Mapping[str, Any] | str) -> Policy:
    """Read one policy document (JSON text or parsed); raise PolicyUnreadableError if it cannot be read."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise PolicyUnreadableError(f"not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise PolicyUnreadableError("the document is not a JSON object")
    raw = document.get("Statement")
    raw_statements = raw if isinstance(raw, list) else [raw]
    statements = []
    for index, item in enumerate(raw_statements):
        if not isinstance(item, Mapping):
            raise PolicyUnreadableError(f"statement {index} is not an object")
        unknown = set(item) - {"Sid", "Effect", "Action", "Resource", "Condition"}
        if unknown:
            raise PolicyUnreadableError(f"statement {index} uses {', '.join(sorted(unknown))}, not supported here")
        effect = item.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyUnreadableError(f"statement {index}: Effect must be Allow or Deny, got {effect!r}")
        actions = _strings(item.get("Action"), f"statement {index} Action")
        resources = _strings(item.get("Resource"), f"statement {index} Resource")
        for resource in resources:
            _check_variables(resource)
        conditions = []
        raw_conditions = item.get("Condition") or {}
        if not isinstance(raw_conditions, Mapping):
            raise PolicyUnreadableError(f"statement {index}: Condition must be an object")
        for operator, tests in raw_conditions.items():
            base = operator.removesuffix("IfExists")
            if base not in OPERATORS or not isinstance(tests, Mapping):
                raise PolicyUnreadableError(f"statement {index}: condition operator {operator} is not supported here")
            for key, values in tests.items():
                if key not in KNOWN_VARIABLES:
                    raise PolicyUnreadableError(f"statement {index}: condition key {key} is not supported here")
                strings = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(values))
                for value in strings:
                    _check_variables(value)
                conditions.append(Condition(base, key, strings, operator.endswith("IfExists")))
        statements.append(Statement(effect, actions, resources, tuple(conditions), str(item.get("Sid") or "")))
    return Policy(name, tuple(statements))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pattern(glob: str, ignore_case: bool = False) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def substitute(text: str, context: Mapping[str, str]) -> str | None:
    """Replace policy variables with their values; None when one has no value."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        value = context.get(match.group(1))
        if value is None:
            missing = True
            return ""
        return value

    result = _VARIABLE.sub(replace, text)
    return None if missing else result


def _condition_holds(condition: Condition, context: Mapping[str, str]) -> bool:
    actual = context.get(condition.key)
    if actual is None:
        return condition.if_exists or condition.operator in ("StringNotEquals", "StringNotLike")
    expected = [substitute(value, context) for value in condition.values]
    known = [value for value in expected if value is not None]
    match condition.operator:
        case "StringEquals":
            return actual in known
        case "StringNotEquals":
            return actual not in known
        case "StringLike":
            return any(_pattern(value).fullmatch(actual) for value in known)
        case "StringNotLike":
            return not any(_pattern(value).fullmatch(actual) for value in known)
        case _:  # Bool
            return actual.lower() in [value.lower() for value in known]


def _statement_matches(statement: Statement, action: str, resource: str, context: Mapping[str, str]) -> bool:
    if not any(_pattern(pattern, ignore_case=True).fullmatch(action) for pattern in statement.actions):
        return False
    resolved = [substitute(pattern, context) for pattern in statement.resources]
    if not any(pattern is not None and _pattern(pattern).fullmatch(resource) for pattern in resolved):
        return False
    return all(_condition_holds(condition, context) for condition in statement.conditions)


def evaluate(policies: Sequence[Policy], action: str, resource: str, connection: Connection) -> Decision:
    """Whether `action` on `resource` is allowed for this connection under these policies."""
    context = connection.context()
    allowed: Decision | None = None
    for policy in policies:
        for statement in policy.statements:
            if not _statement_matches(statement, action, resource, context):
                continue
            if statement.effect == "Deny":
                return Decision(False, policy.name, statement.sid or None)
            if allowed is None:
                allowed = Decision(True, policy.name, statement.sid or None)
    return allowed or Decision(False, considered=tuple(policy.name for policy in policies))


@dataclass(frozen=True)
class Arns:
    """The resource ARNs of one account and region, as AWS IoT names them."""

    region: str
    account_id: str
    partition: str = "aws"

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:{self.partition}:iot:{self.region}:{self.account_id}:{kind}/{name}"

    def client(self, client_id: str) -> str:
        return self._arn("client", client_id)

    def topic(self, topic: str) -> str:
        return self._arn("topic", topic)

    def topic_filter(self, topic_filter: str) -> str:
        return self._arn("topicfilter", topic_filter)


def readable_policies(documents: Iterable[tuple[str, Any]]) -> tuple[list[Policy], list[str]]:
    """Parse each (name, document); return the readable ones and a problem line for each other."""
    policies, problems = [], []
    for name, document in documents:
        try:
            policies.append(parse_policy(name, document))
        except PolicyUnreadableError as exc:
            problems.append(f"IoT policy {name} cannot be evaluated locally ({exc}); it is not applied")
    return policies, problems
