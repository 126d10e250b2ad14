"""API Gateway (REST API, Lambda proxy integration) for every `Api` event in template.yaml.

A request is matched against the routes of the template (paths with `{param}` and `{proxy+}`,
methods, with or without the `/<stage>` prefix of a deployed URL), checked for the API key where
the template requires one (`403 {"message":"Forbidden"}` as API Gateway answers), authorized by
the route's Lambda REQUEST authorizer as API Gateway does it (identity-source headers missing:
401 without calling it; its answer cached per identity-source value for the authorizer's TTL; its
policy evaluated against the request's method ARN, 403 unless allowed; its context handed to the
function in `requestContext.authorizer`), turned into
the proxy event API Gateway builds (headers and multiValueHeaders, query string parameters,
path parameters, requestContext with identity.apiKey/apiKeyId, requestId, stage, resourcePath,
isBase64Encoded) and handed to the function in-process. The function's proxy response becomes
the HTTP response; a function error or a malformed response is a 502, like API Gateway's.

Unmatched paths answer 403 "Missing Authentication Token", as API Gateway does, except GET
requests for the dashboard's static files (`dashboard/`), which need no key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Request, Response

from gasmon_local.functions import TooManyRequestsError
from gasmon_local.template import ACCOUNT_ID, REGION, ApiRoute, AuthorizerSpec

log = logging.getLogger("api")
Invoke = Callable[[str, dict[str, Any], str], Any]
API_KEY_ENV = "GASMON_API_KEY"  # when set, the key of the local fleet's first device


def api_key_id(key: str) -> str:
    """A stable id for the key, shaped like API Gateway's (10 lower-case characters)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def method_arn(route: ApiRoute, method: str, path: str, region: str = REGION) -> str:
    """The execute-api ARN API Gateway hands an authorizer: `.../<api>/<stage>/<VERB>/<path>`."""
    return f"arn:aws:execute-api:{region}:{ACCOUNT_ID}:{route.api_id}/{route.stage}/{method}{path}"


def policy_allows(policy: Any, arn: str) -> bool:
    """Whether an authorizer's policy document allows `execute-api:Invoke` on `arn`, as API
    Gateway evaluates it: an explicit Deny wins, `*` matches any run of characters, `?` one."""
    if not isinstance(policy, dict):
        return False
    allowed = False
    statements = policy.get("Statement") or []
    for statement in [statements] if isinstance(statements, dict) else statements:
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource") or []
        resources = [resources] if isinstance(resources, str) else resources
        if not any(_glob(action, "execute-api:Invoke") for action in actions):
            continue
        if any(_glob(resource, arn) for resource in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _glob(pattern: str, text: str) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in str(pattern))
    return re.fullmatch(regex, text) is not None


def _werkzeug_path(template_path: str) -> str:
    """`/things/{id}` -> `/things/<id>`; `{proxy+}` -> `<path:proxy>`."""
    parts = []
    for part in template_path.strip("/").split("/"):
        if part.startswith("{") and part.endswith("+}"):
            parts.append(f"<path:{part[1:-2]}>")
        elif part.startswith("{") and part.endswith("}"):
            parts.append(f"<{part[1:-1]}>")
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def build_proxy_event(
    request: Request,
    route: ApiRoute,
    path_parameters: dict[str, str],
    api_key: str | None,
    request_id: str,
    now: float,
    staged: bool = False,
) -> dict[str, Any]:
    """The REST API proxy event API Gateway would send the function for this request.

    `staged`: the request named the stage (`/Prod/readings`, as on a deployed URL); API Gateway
    leaves it out of the event's `path` and keeps it in `requestContext.path`.
    """
    if staged:
        path, stage_path = request.path[len(route.stage) + 1 :] or "/", request.path
    else:
        path, stage_path = request.path, f"/{route.stage}{request.path}"
    headers = dict(request.headers.items())  # API Gateway keeps the last value of a repeated header
    multi_headers = {key: request.headers.getlist(key) for key in headers}
    host = request.host or "127.0.0.1"
    source_ip = request.remote_addr or "127.0.0.1"
    trace_id = f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}"
    for key, value in (
        ("X-Forwarded-For", source_ip),
        ("X-Forwarded-Proto", request.scheme),
        ("X-Forwarded-Port", str(request.environ.get("SERVER_PORT", ""))),
        ("X-Amzn-Trace-Id", trace_id),
    ):
        headers.setdefault(key, value)
        multi_headers.setdefault(key, [value])
    query = {key: values[-1] for key, values in request.args.lists()}
    multi_query = dict(request.args.lists())
    raw = request.get_data()
    body: str | None
    encoded = False
    if not raw:
        body = None
    else:
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(raw).decode(), True
    checked_key = api_key if route.api_key_required else None
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": hashlib.sha256(route.path.encode()).hexdigest()[:6],
            "resourcePath": route.path,
            "httpMethod": request.method,
            "extendedRequestId": base64.b64encode(os.urandom(12)).decode(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": stage_path,
            "accountId": "123456789012",
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "stage": route.stage,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": request.headers.get("User-Agent"),
                "user": None,
                "apiKey": checked_key,
                "apiKeyId": api_key_id(checked_key) if checked_key else None,
            },
            "domainName": host,
            "apiId": route.api_id,
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


def _json(status: int, body: dict[str, Any], error_type: str | None = None) -> Response:
    headers = {"x-amzn-ErrorType": error_type} if error_type else {}
    return Response(json.dumps(body), status=status, content_type="application/json", headers=headers)


def proxy_response(result: Any) -> Response:
    """Turn a function's proxy response into HTTP; anything malformed is API Gateway's 502."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        log.error("the function returned a malformed proxy response: %.200r", result)
        return _json(502, {"message": "Internal server error"})
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(data, status=result["statusCode"])
    response.headers.remove("Content-Type")
    for key, value in (result.get("headers") or {}).items():
        response.headers[key] = str(value)
    for key, values in (result.get("multiValueHeaders") or {}).items():
        response.headers.remove(key)
        for value in values:
            response.headers.add(key, str(value))
    if "Content-Type" not in response.headers:
        response.headers["Content-Type"] = "application/json"
    return response


class ApiGateway:
    """The WSGI app serving the template's API routes and the dashboard's static files."""

    def __init__(
        self,
        routes: Sequence[ApiRoute],
        invoke: Invoke,
        api_key: str | None = None,
        static_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = list(routes)
        self.invoke = invoke
        self.api_key = api_key
        self.static_dir = static_dir
        self.clock = clock
        # (authorizer, identity-source values) -> (expires at, policy, context): API Gateway's cache.
        self._answers: dict[tuple[str, tuple[str, ...]], tuple[float, Any, dict[str, Any]]] = {}
        self._answers_lock = threading.Lock()
        rules = []
        for index, route in enumerate(self.routes):
            methods = None if route.method == "ANY" else [route.method]
            path = _werkzeug_path(route.path)
            rules.append(Rule(path, methods=methods, endpoint=(index, False)))
            rules.append(Rule(f"/{route.stage}{path.rstrip('/') or ''}", methods=methods, endpoint=(index, True)))
        self.map = Map(rules, strict_slashes=False, merge_slashes=False)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        started = time.perf_counter()
        response = self._respond(request)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("%-6s %-28s %s %.0f ms", request.method, request.full_path.rstrip("?"), response.status_code, elapsed)
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        try:
            (index, staged), arguments = self.map.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed):
            static = self._static(request)
            if static is not None:
                return static
            return _json(403, {"message": "Missing Authentication Token"}, "MissingAuthenticationTokenException")
        route = self.routes[index]
        if route.api_key_required and (not self.api_key or request.headers.get("x-api-key") != self.api_key):
            return _json(403, {"message": "Forbidden"}, "ForbiddenException")
        request_id = str(uuid.uuid4())
        event = build_proxy_event(request, route, dict(arguments), self.api_key, request_id, time.time(), staged)
        if route.authorizer is not None:
            refused = self._authorize(route.authorizer, route, request, event)
            if refused is not None:
                return refused
        try:
            result = self.invoke(route.function, event, f"api {request.method} {request.path}")
        except TooManyRequestsError:
            # Lambda throttled the function (429); a Lambda proxy integration answers that as 500.
            return _json(500, {"message": "Internal server error"})
        except Exception:
            return _json(502, {"message": "Internal server error"})
        response = proxy_response(result)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    def _authorize(
        self, authorizer: AuthorizerSpec, route: ApiRoute, request: Request, event: dict[str, Any]
    ) -> Response | None:
        """Run the route's REQUEST authorizer (or reuse its cached answer); None lets the request
        through with the authorizer's context in `event`, else API Gateway's 401/403/500."""
        values = tuple(request.headers.get(header, "") for header in authorizer.identity_headers)
        if not values or not all(values):
            return _json(401, {"message": "Unauthorized"}, "UnauthorizedException")
        arn = method_arn(route, request.method, event["path"])
        cache_key = (authorizer.name, values)
        now = self.clock()
        with self._answers_lock:
            cached = self._answers.get(cache_key)
        if cached is not None and cached[0] > now:
            _, policy, context = cached
        else:
            authorizer_event = {
                "type": "REQUEST",
                "methodArn": arn,
                **{key: event[key] for key in ("resource", "path", "httpMethod", "headers", "multiValueHeaders")},
                **{key: event[key] for key in ("queryStringParameters", "multiValueQueryStringParameters")},
                **{key: event[key] for key in ("pathParameters", "stageVariables", "requestContext")},
            }
            try:
                answer = self.invoke(authorizer.function_arn, authorizer_event, f"authorizer {authorizer.name}")
            except Exception as exc:
                if str(exc) == "Unauthorized":  # the authorizer's way of saying 401
                    return _json(401, {"message": "Unauthorized"}, "UnauthorizedException")
                return _json(500, {"message": None}, "AuthorizerConfigurationException")
            if not isinstance(answer, dict) or "policyDocument" not in answer or "principalId" not in answer:
                log.error("authorizer %s returned no policy: %.200r", authorizer.name, answer)
                return _json(500, {"message": None}, "AuthorizerConfigurationException")
            policy = answer["policyDocument"]
            context = {**(answer.get("context") or {}), "principalId": answer["principalId"]}
            if authorizer.ttl_seconds > 0:
                with self._answers_lock:
                    self._answers[cache_key] = (now + authorizer.ttl_seconds, policy, context)
        if not policy_allows(policy, arn):
            return _json(403, {"message": "User is not authorized to access this resource"}, "AccessDeniedException")
        event["requestContext"]["authorizer"] = {**context, "integrationLatency": 0}
        return None

    def _static(self, request: Request) -> Response | None:
        if self.static_dir is None or request.method not in ("GET", "HEAD") or not self.static_dir.is_dir():
            return None
        path = request.path.lstrip("/") or "index.html"
        if path.endswith("/"):
            path += "index.html"
        try:
            return send_from_directory(self.static_dir, path, request.environ)
        except NotFound:
            return None
