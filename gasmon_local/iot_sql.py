"""AWS IoT SQL (version 2016-03-23), parsed by sqlglot and evaluated against one MQTT message.

Supported, because gasmon's rules and the seeds use it: a SELECT list of `*`, nested fields
(`state.reported.connected`), array indexes, literals, arithmetic and aliases; FROM a quoted
topic filter with `+` and `#`; WHERE with comparisons, AND/OR/NOT, IS [NOT] NULL, booleans,
strings and numbers; and the functions topic(n), clientid(), timestamp(), newuuid(),
principal(), lower(), upper(), concat(), abs(), get(), isundefined(), isnull(), and
cast(x AS String|Int|Decimal|Bool).

Semantics follow the AWS documentation: a field that is missing is *undefined*, a selected
undefined field is left out of the result, comparing values of different types is undefined,
and a WHERE clause passes only when it is true. Anything outside this subset is refused when
the rule is loaded, so a rule never silently behaves differently from AWS.
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError


class IotSqlError(ValueError):
    """The rule's SQL is not valid AWS IoT SQL, or uses something this evaluator does not support."""


class _Undefined:
    def __repr__(self) -> str:
        return "Undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


@dataclass(frozen=True)
class MessageContext:
    """What the SQL functions can see besides the payload."""

    topic: str
    client_id: str | None = None
    timestamp_ms: int = 0
    principal: str | None = None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (`+` one level, `#` the rest; `$` topics need an explicit prefix)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    levels = topic.split("/")
    for index, level in enumerate(topic_filter.split("/")):
        if level == "#":
            return True
        if index >= len(levels) or level not in ("+", levels[index]):
            return False
    return len(topic_filter.split("/")) == len(levels)


_SUPPORTED_NODES = (
    exp.Select,
    exp.From,
    exp.Table,
    exp.Where,
    exp.Identifier,
    exp.Alias,
    exp.Star,
    exp.Column,
    exp.Dot,
    exp.Bracket,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Anonymous,
    exp.Timestamp,
    exp.Lower,
    exp.Upper,
    exp.Abs,
    exp.Concat,
    exp.Cast,
    exp.DataType,
)
_FUNCTIONS = {"topic", "clientid", "timestamp", "newuuid", "principal", "get", "isundefined", "isnull"}


def _parse(sql: str) -> exp.Select:
    try:
        tree = sqlglot.parse_one(sql)
    except ParseError as exc:
        raise IotSqlError(f"cannot parse {sql!r}: {exc}") from None
    if not isinstance(tree, exp.Select):
        raise IotSqlError(f"not a SELECT statement: {sql!r}")
    for node in tree.walk():
        if not isinstance(node, _SUPPORTED_NODES):
            raise IotSqlError(f"unsupported in AWS IoT SQL here: {node.sql()!r} in {sql!r}")
        if isinstance(node, exp.Anonymous) and node.name.lower() not in _FUNCTIONS:
            raise IotSqlError(f"unsupported function {node.name}() in {sql!r}")
    return tree


class IotQuery:
    """One rule's SQL: which topics it listens to, and what it makes of a message."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        tree = _parse(sql)
        source = tree.args.get("from_") or tree.args.get("from")
        table = source.this if source is not None else None
        if not isinstance(table, exp.Table) or not table.this.args.get("quoted"):
            raise IotSqlError(f"FROM needs a quoted topic filter such as FROM 'a/+/b': {sql!r}")
        self.topic_filter: str = table.name
        self._select: list[exp.Expression] = list(tree.expressions)
        where = tree.args.get("where")
        self._where: exp.Expression | None = where.this if where is not None else None
        self._star_only = len(self._select) == 1 and isinstance(self._select[0], exp.Star)

    def matches(self, topic: str) -> bool:
        return topic_matches(self.topic_filter, topic)

    def apply(self, payload: bytes, context: MessageContext) -> dict[str, Any] | bytes | None:
        """The rule's output for a message on a matching topic, or None when WHERE rejects it.

        A payload that is not JSON passes through unchanged for `SELECT *` (as AWS does with
        binary payloads); otherwise its fields are undefined.
        """
        try:
            document: Any = json.loads(payload) if payload else UNDEFINED
        except (json.JSONDecodeError, UnicodeDecodeError):
            document = UNDEFINED
        if self._where is not None and evaluate(self._where, document, context) is not True:
            return None
        if document is UNDEFINED and self._star_only:
            return payload
        result: dict[str, Any] = {}
        for item in self._select:
            if isinstance(item, exp.Star):
                if isinstance(document, dict):
                    result.update(document)
                continue
            value = evaluate(item.this if isinstance(item, exp.Alias) else item, document, context)
            if value is not UNDEFINED:
                result[_output_name(item)] = value
        return result


def _output_name(item: exp.Expression) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    if isinstance(item, exp.Dot):
        return str(item.expression.name)
    return item.sql()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        return True
    return type(left) is type(right)


_ORDERING: dict[type[exp.Expression], Callable[[Any, Any], bool]] = {
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
}
_ARITHMETIC: dict[type[exp.Expression], Callable[[Any, Any], Any]] = {
    exp.Add: operator.add,
    exp.Sub: operator.sub,
    exp.Mul: operator.mul,
    exp.Div: operator.truediv,
    exp.Mod: operator.mod,
}


def _field(container: Any, key: str) -> Any:
    if isinstance(container, dict) and key in container:
        return container[key]
    return UNDEFINED


def evaluate(node: exp.Expression, document: Any, context: MessageContext) -> Any:
    """Evaluate one expression against a decoded payload; missing things are `UNDEFINED`."""
    if isinstance(node, exp.Paren):
        return evaluate(node.this, document, context)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        number = float(node.this)
        return int(number) if number.is_integer() and "." not in node.this and "e" not in node.this.lower() else number
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Column):
        value = document
        for part in node.parts:
            value = _field(value, part.name)
        return value
    if isinstance(node, exp.Dot):
        return _field(evaluate(node.this, document, context), node.expression.name)
    if isinstance(node, exp.Bracket):
        container = evaluate(node.this, document, context)
        index = evaluate(node.expressions[0], document, context)
        if isinstance(container, list) and _is_number(index) and 0 <= int(index) < len(container):
            return container[int(index)]
        return UNDEFINED
    if isinstance(node, exp.Neg):
        value = evaluate(node.this, document, context)
        return -value if _is_number(value) else UNDEFINED
    if isinstance(node, (exp.And, exp.Or, exp.Not)):
        return _logic(node, document, context)
    if isinstance(node, (exp.EQ, exp.NEQ)):
        left, right = evaluate(node.this, document, context), evaluate(node.expression, document, context)
        if left is UNDEFINED or right is UNDEFINED or not _same_kind(left, right):
            return UNDEFINED
        return (left == right) if isinstance(node, exp.EQ) else (left != right)
    if type(node) in _ORDERING:
        left, right = evaluate(node.this, document, context), evaluate(node.expression, document, context)
        comparable = (_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str))
        return _ORDERING[type(node)](left, right) if comparable else UNDEFINED
    if type(node) in _ARITHMETIC:
        left, right = evaluate(node.this, document, context), evaluate(node.expression, document, context)
        if not (_is_number(left) and _is_number(right)) or (isinstance(node, (exp.Div, exp.Mod)) and right == 0):
            return UNDEFINED
        return _ARITHMETIC[type(node)](left, right)
    if isinstance(node, exp.Is):
        value = evaluate(node.this, document, context)
        return value is None
    return _function(node, document, context)


def _logic(node: exp.Expression, document: Any, context: MessageContext) -> Any:
    """Three-valued logic: true, false, or undefined when a side is not a boolean."""

    def boolean(side: exp.Expression) -> Any:
        value = evaluate(side, document, context)
        return value if isinstance(value, bool) else UNDEFINED

    if isinstance(node, exp.Not):
        value = boolean(node.this)
        return UNDEFINED if value is UNDEFINED else not value
    left, right = boolean(node.this), boolean(node.expression)
    if isinstance(node, exp.And):
        if left is False or right is False:
            return False
        return UNDEFINED if UNDEFINED in (left, right) else True
    if left is True or right is True:
        return True
    return UNDEFINED if UNDEFINED in (left, right) else False


def _cast(value: Any, to: exp.DataType) -> Any:
    """IoT SQL's cast(x AS String|Int|Decimal|Bool); what cannot convert is undefined."""
    kind = to.this
    types = exp.DataType.Type
    if value is UNDEFINED or value is None:
        return UNDEFINED
    try:
        if kind in (types.TEXT, types.VARCHAR, types.CHAR):
            if isinstance(value, bool):
                return "true" if value else "false"
            return value if isinstance(value, str) else json.dumps(value)
        if kind in (types.INT, types.BIGINT, types.SMALLINT):
            return int(float(value)) if not isinstance(value, (dict, list)) else UNDEFINED
        if kind in (types.DECIMAL, types.DOUBLE, types.FLOAT):
            return float(value) if not isinstance(value, (dict, list, bool)) else UNDEFINED
        if kind == types.BOOLEAN:
            if isinstance(value, str):
                return {"true": True, "false": False}.get(value.lower(), UNDEFINED)
            return bool(value) if _is_number(value) or isinstance(value, bool) else UNDEFINED
    except (TypeError, ValueError):
        return UNDEFINED
    raise IotSqlError(f"unsupported cast to {to.sql()}")


def _function(node: exp.Expression, document: Any, context: MessageContext) -> Any:
    if isinstance(node, exp.Timestamp):
        return context.timestamp_ms
    if isinstance(node, exp.Cast):
        return _cast(evaluate(node.this, document, context), node.to)
    args = [evaluate(arg, document, context) for arg in _arguments(node)]
    if isinstance(node, (exp.Lower, exp.Upper)):
        text = args[0] if args else UNDEFINED
        if not isinstance(text, str):
            return UNDEFINED
        return text.lower() if isinstance(node, exp.Lower) else text.upper()
    if isinstance(node, exp.Abs):
        return abs(args[0]) if args and _is_number(args[0]) else UNDEFINED
    if isinstance(node, exp.Concat):
        if any(arg is UNDEFINED for arg in args):
            return UNDEFINED
        return "".join(arg if isinstance(arg, str) else json.dumps(arg) for arg in args)
    name = node.name.lower()
    if name == "topic":
        if not args:
            return context.topic
        levels = context.topic.split("/")
        index = args[0]
        return levels[int(index) - 1] if _is_number(index) and 1 <= int(index) <= len(levels) else UNDEFINED
    if name == "clientid":
        return context.client_id if context.client_id is not None else UNDEFINED
    if name == "principal":
        return context.principal if context.principal is not None else UNDEFINED
    if name == "newuuid":
        return str(uuid.uuid4())
    if name == "isundefined":
        return bool(args) and args[0] is UNDEFINED
    if name == "isnull":
        return bool(args) and args[0] is None
    if name == "get" and len(args) == 2:
        container, key = args
        if isinstance(container, list) and _is_number(key) and 0 <= int(key) < len(container):
            return container[int(key)]
        if isinstance(container, dict) and isinstance(key, str):
            return container.get(key, UNDEFINED)
        return UNDEFINED
    raise IotSqlError(f"unsupported expression {node.sql()!r}")


def _arguments(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, (exp.Anonymous, exp.Concat)):
        return list(node.expressions)
    return [node.this] if isinstance(node.this, exp.Expression) else []


@lru_cache(maxsize=256)
def _expression(text: str) -> exp.Expression:
    tree = _parse(f"SELECT {text} FROM 'substitution'")
    expression: exp.Expression = tree.expressions[0]
    return expression


def substitute(template: str, document: Any, context: MessageContext) -> str:
    """Fill a substitution template such as `$$aws/things/${topic(3)}/shadow/update`.

    `${expression}` is any IoT SQL expression over the message; `$$` stands for a literal `$`
    (the way AWS escapes reserved topics in a Republish action).
    """
    out: list[str] = []
    index = 0
    while index < len(template):
        if template.startswith("$$", index):
            out.append("$")
            index += 2
        elif template.startswith("${", index):
            end = template.find("}", index)
            if end < 0:
                raise IotSqlError(f"unclosed ${{ in substitution template {template!r}")
            value = evaluate(_expression(template[index + 2 : end]), document, context)
            if value is not UNDEFINED and value is not None:
                out.append(value if isinstance(value, str) else json.dumps(value))
            index = end + 1
        else:
            out.append(template[index])
            index += 1
    return "".join(out)
