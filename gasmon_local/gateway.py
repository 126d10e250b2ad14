"""API Gateway (REST API, Lambda proxy integration) for every `Api` event in template.yaml.

A request is matched against the routes of the template (paths with `{param}` and `{proxy+}`,
methods, with or without the `/<stage>` prefix of a deployed URL), checked for the API key where
the template requires one (`403 {"message":"Forbidden"}` as API Gateway answers), turned into
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
import secrets
import string
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Request, Response

from gasmon_local.template import ApiRoute

log = logging.getLogger("api")
Invoke = Callable[[str, dict[str, Any], str], Any]
API_KEY_ENV = "GASMON_API_KEY"


def load_api_key(data_dir: Path, environ: dict[str, str] | None = None) -> tuple[str, str]:
    """The API key and where it came from: GASMON_API_KEY, the saved key, or a new one.

    A generated key is written to `<data-dir>/api-key` (mode 600) and reused on restart, so
    devices configured once keep working.
    """
    environ = dict(os.environ) if environ is None else environ
    if environ.get(API_KEY_ENV):
        return environ[API_KEY_ENV], API_KEY_ENV
    path = data_dir / "api-key"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip(), str(path)
    alphabet = string.ascii_letters + string.digits
    key = "".join(secrets.choice(alphabet) for _ in range(40))  # API Gateway keys are 40 characters
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key, f"{path} (new)"


def api_key_id(key: str) -> str:
    """A stable id for the key, shaped like API Gateway's (10 lower-case characters)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


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
        api_key: str,
        static_dir: Path | None = None,
    ) -> None:
        self.routes = list(routes)
        self.invoke = invoke
        self.api_key = api_key
        self.static_dir = static_dir
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
        if route.api_key_required and request.headers.get("x-api-key") != self.api_key:
            return _json(403, {"message": "Forbidden"}, "ForbiddenException")
        request_id = str(uuid.uuid4())
        event = build_proxy_event(request, route, dict(arguments), self.api_key, request_id, time.time(), staged)
        try:
            result = self.invoke(route.function, event, f"api {request.method} {request.path}")
        except Exception:
            return _json(502, {"message": "Internal server error"})
        response = proxy_response(result)
        response.headers["x-amzn-RequestId"] = request_id
        return response

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
