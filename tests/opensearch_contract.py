"""The official OpenSearch API specification as a checker for what the tests send and answer.

No OpenSearch runs on this machine, so the contract is checked from both sides instead: every
request the adapter sends through the real opensearch-py client (method, path and its parameters,
query parameters, JSON or NDJSON body) must be an operation of the pinned specification
(`tests/opensearch_spec/`, see its README), and every answer a test fake gives must match the
operation's response schema. `problems_with_request` and `problems_with_response` return what is
wrong in words; an empty list means the spec allows it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema._keywords import anyOf
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).parent / "opensearch_spec"
BASE = "https://opensearch-spec.invalid/"
# Parameters the spec's bundler adds to every operation (spec/_global_parameters.yaml).
GLOBAL_QUERY = {"pretty", "human", "error_trace", "source", "filter_path"}
_METHODS = ("get", "put", "post", "delete", "head")
_BULK_ACTIONS = ("index", "create", "update", "delete")
# The spec's `oneOf` alternatives overlap (e.g. Sort: `{"date": {"order": "desc"}}` is both
# `options` and `field_with_order`), so "exactly one" would refuse valid requests: it is checked
# as "at least one".
SpecValidator = validators.extend(Draft202012Validator, {"oneOf": anyOf})


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: where it is, and the file its `$ref`s are relative to."""

    method: str
    template: str
    pattern: re.Pattern[str]
    literal_segments: int
    uri: str  # of the namespace file
    pointer: str  # JSON pointer of the operation in that file
    spec: dict[str, Any]

    @property
    def operation_id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class Spec:
    """The pinned specification: its operations, and JSON-schema validation resolving its `$ref`s."""

    def __init__(self, directory: Path = SPEC_DIR) -> None:
        resources = []
        self.documents: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.rglob("*.yaml")):
            uri = BASE + path.relative_to(directory).as_posix()
            document = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            self.documents[uri] = document
            resources.append((uri, DRAFT202012.create_resource(document)))
        # A bucket is `allOf: [MultiBucketBase, {properties: {key: ...}}]` and MultiBucketBase says
        # `additionalProperties: Aggregate` (meaning its sub-aggregations), which in JSON Schema
        # also applies to the bucket's own `key`: no real bucket passes. Sub-aggregations are
        # checked by their requested type instead (`aggregation_problems`), so it goes.
        aggregations = self.documents[BASE + "schemas/_common.aggregations.yaml"]
        aggregations["components"]["schemas"]["MultiBucketBase"].pop("additionalProperties", None)
        self.registry: Registry[Any] = Registry().with_resources(resources)
        self.operations: list[Operation] = []
        for uri, document in self.documents.items():
            for template, item in (document.get("paths") or {}).items():
                regex = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
                literal = sum(1 for part in template.split("/") if part and not part.startswith("{"))
                for method in _METHODS:
                    if method in item:
                        pointer = f"/paths/{_escape(template)}/{method}"
                        self.operations.append(
                            Operation(method, template, re.compile(regex), literal, uri, pointer, item[method])
                        )

    # ---- lookups ----

    def node(self, uri: str, pointer: str) -> Any:
        node: Any = self.documents[uri]
        for token in [t for t in pointer.split("/") if t]:
            key = unquote(token).replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def deref(self, uri: str, pointer: str) -> tuple[str, str, Any]:
        """Follow `$ref`s (relative to the file they are in) from this node to one that is not one."""
        node = self.node(uri, pointer)
        while isinstance(node, dict) and "$ref" in node:
            file_part, _, pointer = node["$ref"].partition("#")
            if file_part:
                uri = _normalise(uri.rsplit("/", 1)[0] + "/" + file_part)
            node = self.node(uri, pointer)
        return uri, pointer, node

    def schema_problems(self, uri: str, pointer: str, instance: Any, where: str) -> list[str]:
        """What in `instance` the schema at `uri#pointer` does not allow."""
        validator = SpecValidator({"$ref": f"{uri}#{pointer}"}, registry=self.registry)
        return [f"{where}: {error.message} at {list(error.absolute_path)}" for error in validator.iter_errors(instance)]

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The most specific operation for this method and path, with its path parameters."""
        candidates = []
        for operation in self.operations:
            if operation.method != method.lower():
                continue
            found = operation.pattern.match(path)
            if found:
                names = re.findall(r"\{([^}]+)\}", operation.template)
                values = {name: unquote(value) for name, value in zip(names, found.groups(), strict=True)}
                candidates.append((operation.literal_segments, operation, values))
        if not candidates:
            return None
        candidates.sort(key=lambda c: -c[0])
        return candidates[0][1], candidates[0][2]

    def parameters(self, operation: Operation) -> dict[tuple[str, str], tuple[str, str, dict[str, Any]]]:
        """(in, name) -> (file, pointer, parameter object) for the operation's parameters."""
        found = {}
        for position in range(len(operation.spec.get("parameters", []))):
            uri, pointer, parameter = self.deref(operation.uri, f"{operation.pointer}/parameters/{position}")
            found[(parameter["in"], parameter["name"])] = (uri, pointer, parameter)
        return found


def _normalise(uri: str) -> str:
    head, rest = uri[: len(BASE)], uri[len(BASE) :]
    parts: list[str] = []
    for part in rest.split("/"):
        if part == "..":
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return head + "/".join(parts)


@cache
def spec() -> Spec:
    """The pinned spec, loaded once per test session."""
    return Spec()


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    """A query-string value as the JSON the schema describes (booleans, numbers, comma lists)."""
    kinds = schema.get("type")
    if kinds == "boolean":
        return {"true": True, "false": False}.get(value, value)
    if kinds in ("integer", "number"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if kinds == "array":
        return value.split(",")
    return value


def _content_schema(spec_: Spec, uri: str, pointer: str, media_type: str) -> tuple[str, str] | None:
    """(file, pointer) of the schema of `media_type` content of a request body or response."""
    uri, pointer, holder = spec_.deref(uri, pointer)
    content = holder.get("content") or {}
    media = media_type if media_type in content else "application/json"
    if media not in content or "schema" not in content[media]:
        return None
    return uri, f"{pointer}/content/{_escape(media)}/schema"


def problems_with_request(method: str, url: str, body: bytes | None, content_type: str | None) -> list[str]:
    """What the spec does not allow in this request (empty: it is a valid OpenSearch request)."""
    spec_ = spec()
    parts = urlsplit(url)
    found = spec_.match(method, parts.path)
    if found is None:
        return [f"{method} {parts.path}: no such operation in the OpenSearch API specification"]
    operation, path_values = found
    where = f"{operation.operation_id} ({method} {parts.path})"
    problems: list[str] = []
    declared = spec_.parameters(operation)
    for name, value in path_values.items():
        uri, pointer, _ = declared[("path", name)]
        problems += spec_.schema_problems(uri, f"{pointer}/schema", value, f"{where} path {name}")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in GLOBAL_QUERY:
            continue
        if ("query", name) not in declared:
            problems.append(f"{where}: query parameter {name!r} is not in the specification")
            continue
        uri, pointer, _ = declared[("query", name)]
        schema_uri, schema_pointer, schema = spec_.deref(uri, f"{pointer}/schema")
        problems += spec_.schema_problems(schema_uri, schema_pointer, _coerce(value, schema), f"{where} query {name}")
    if "requestBody" not in operation.spec:
        return problems + ([f"{where}: this operation takes no request body"] if body else [])
    body_pointer = f"{operation.pointer}/requestBody"
    if not body:
        if spec_.deref(operation.uri, body_pointer)[2].get("required"):
            problems.append(f"{where}: the request body is required")
        return problems
    media_type = (content_type or "application/json").split(";")[0].strip()
    found_schema = _content_schema(spec_, operation.uri, body_pointer, media_type)
    if found_schema is None:
        accepted = ", ".join(spec_.deref(operation.uri, body_pointer)[2].get("content", {}))
        return [*problems, f"{where}: content type {media_type} is not accepted (the specification says {accepted})"]
    schema_uri, schema_pointer = found_schema
    content = spec_.deref(operation.uri, body_pointer)[2]["content"]
    if "application/x-ndjson" in content:
        if media_type != "application/x-ndjson":
            problems.append(f"{where}: sent as {media_type}, the specification says application/x-ndjson")
        lines, framing = ndjson_lines(body)
        problems += [f"{where}: {problem}" for problem in framing]
        if operation.template.endswith("/_bulk"):
            problems += [f"{where}: {problem}" for problem in bulk_framing(lines)]
            bulk_uri = BASE + "schemas/_core.bulk.yaml"
            for number, line in enumerate(lines, 1):
                if isinstance(line, dict) and len(line) == 1 and next(iter(line)) in _BULK_ACTIONS:
                    container = "/components/schemas/OperationContainer"
                    problems += spec_.schema_problems(bulk_uri, container, line, f"{where} line {number}")
        problems += spec_.schema_problems(schema_uri, schema_pointer, lines, f"{where} body")
    else:
        try:
            document = json.loads(body)
        except ValueError as exc:
            return [*problems, f"{where}: the body is not JSON: {exc}"]
        problems += spec_.schema_problems(schema_uri, schema_pointer, document, f"{where} body")
    return problems


def ndjson_lines(body: bytes) -> tuple[list[Any], list[str]]:
    """The JSON lines of an NDJSON body, and what is wrong with its framing."""
    problems = []
    text = body.decode()
    if not text.endswith("\n"):
        problems.append("an NDJSON body must end with a newline")
    lines = []
    for number, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        try:
            lines.append(json.loads(line))
        except ValueError:
            problems.append(f"line {number} is not one JSON document")
    return lines, problems


def bulk_framing(lines: list[Any]) -> list[str]:
    """`_bulk` is action/metadata lines, each but `delete` followed by exactly one source line."""
    problems = []
    position = 0
    while position < len(lines):
        action = lines[position]
        if not (isinstance(action, dict) and len(action) == 1 and next(iter(action)) in _BULK_ACTIONS):
            problems.append(f"line {position + 1} should be an action (index/create/update/delete), not {action!r:.80}")
            position += 1
            continue
        kind = next(iter(action))
        if kind == "delete":
            position += 1
            continue
        if position + 1 >= len(lines):
            problems.append(f"the {kind} action on line {position + 1} has no source line")
        position += 2
    return problems


# The spec types an answer's aggregations as a union of every aggregate, which is ambiguous (no
# typed keys) and, nested, takes seconds per answer to check; each is checked against the schema
# of the aggregation type the request asked for instead, level by level.
AGGREGATE_SCHEMAS = {
    "composite": "CompositeAggregate",
    "top_hits": "TopHitsAggregate",
    "terms": "StringTermsAggregate",
    "date_histogram": "DateHistogramAggregate",
    "avg": "AvgAggregate",
    "min": "MinAggregate",
    "max": "MaxAggregate",
}


def aggregation_problems(requested: dict[str, Any], answered: Any, where: str) -> list[str]:
    """What is wrong with the aggregations of an answer, given the `aggs` of its request."""
    if not isinstance(answered, dict):
        return [f"{where}: aggregations should be an object"]
    problems = []
    uri = BASE + "schemas/_common.aggregations.yaml"
    for name, request in requested.items():
        if name not in answered:
            problems.append(f"{where}: the answer has no aggregation {name!r}")
            continue
        kind = next(key for key in request if key not in ("aggs", "aggregations", "meta"))
        sub = request.get("aggs") or request.get("aggregations") or {}
        result = answered[name]
        buckets = result.get("buckets", []) if isinstance(result, dict) else []
        bucket_list = list(buckets.values()) if isinstance(buckets, dict) else list(buckets)
        shallow = result
        if sub and bucket_list:
            trimmed = [{k: v for k, v in b.items() if k not in sub} for b in bucket_list]
            shallow = {
                **result,
                "buckets": trimmed if isinstance(buckets, list) else dict(zip(buckets, trimmed, strict=True)),
            }
        if kind not in AGGREGATE_SCHEMAS:
            problems.append(f"{where}: no answer schema is chosen for aggregation type {kind!r} (AGGREGATE_SCHEMAS)")
        else:
            pointer = f"/components/schemas/{AGGREGATE_SCHEMAS[kind]}"
            problems += spec().schema_problems(uri, pointer, shallow, f"{where} aggregation {name}")
        for bucket in bucket_list if sub else []:
            problems += aggregation_problems(sub, bucket, f"{where} {name} bucket")
    return problems


def problems_with_response(method: str, url: str, status: int, body: Any, request_body: Any = None) -> list[str]:
    """What the spec does not allow in this answer of a fake (an OpenSearch JSON answer); the
    request's body is needed to check aggregations."""
    spec_ = spec()
    path = urlsplit(url).path
    found = spec_.match(method, path)
    if found is None:
        return [f"{method} {path}: no such operation"]
    operation, _ = found
    where = f"{operation.operation_id} answer {status}"
    responses = operation.spec.get("responses", {})
    if str(status) not in responses:
        if status < 400:
            return [f"{where}: the specification lists no {status} answer ({sorted(responses)})"]
        # Errors the operation does not list carry the common error body.
        error_schema = "/components/schemas/ErrorResponseBase"
        return spec_.schema_problems(BASE + "schemas/_common.yaml", error_schema, body, where)
    if method.upper() == "HEAD":
        return []
    found_schema = _content_schema(spec_, operation.uri, f"{operation.pointer}/responses/{status}", "application/json")
    if found_schema is None:
        return []
    problems: list[str] = []
    if isinstance(body, dict) and "aggregations" in body:
        requested = (request_body or {}).get("aggs") or (request_body or {}).get("aggregations")
        if not requested:
            problems.append(f"{where}: aggregations in an answer to a request that asked for none")
        else:
            problems += aggregation_problems(requested, body["aggregations"], where)
        body = {**body, "aggregations": {}}
    return problems + spec_.schema_problems(*found_schema, body, where)
