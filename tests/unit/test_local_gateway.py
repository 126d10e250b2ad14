"""The local API Gateway: routing, API keys, proxy events and responses (gasmon_local.gateway)."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from gasmon_local.functions import TooManyRequestsError
from gasmon_local.gateway import ApiGateway, api_key_id, method_arn, policy_allows
from gasmon_local.template import ApiRoute, AuthorizerSpec

KEY = "k" * 40
ROUTES = [
    ApiRoute("IngestFunction", "/readings", "POST", "local", "Prod", True),
    ApiRoute("EchoFunction", "/things/{thing}/items/{item}", "GET", "local", "Prod", True),
    ApiRoute("EchoFunction", "/public/{proxy+}", "ANY", "local", "Prod", False),
]


class Recorder:
    """A stand-in for the function runtime: records events, answers with a canned response."""

    def __init__(self, response: Any = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.response = response if response is not None else {"statusCode": 200, "body": '{"ok": true}'}
        self.error = error

    def __call__(self, function: str, event: dict[str, Any], source: str) -> Any:
        self.calls.append((function, event))
        if self.error:
            raise self.error
        return self.response


def client(recorder: Recorder, static_dir: Path | None = None) -> Client:
    return Client(ApiGateway(ROUTES, recorder, KEY, static_dir))


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_a_missing_or_wrong_api_key_is_forbidden_like_api_gateway(headers: dict[str, str]) -> None:
    recorder = Recorder()
    response = client(recorder).post("/readings", json={"groupid": "1"}, headers=headers)
    assert response.status_code == 403
    assert response.get_json() == {"message": "Forbidden"}
    assert recorder.calls == []


def test_a_keyed_request_reaches_the_function_as_a_proxy_event() -> None:
    # Given a seed-style POST with the key, Then the function gets API Gateway's REST proxy event
    recorder = Recorder()
    response = client(recorder).post(
        "/readings?dry=1&tag=a&tag=b",
        data='{"groupid": "2"}',
        headers={"x-api-key": KEY, "Content-Type": "application/json", "User-Agent": "python-requests/2.25.1"},
    )
    assert response.status_code == 200 and response.get_json() == {"ok": True}
    [(function, event)] = recorder.calls
    assert function == "IngestFunction"
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/readings", "/readings", "POST")
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["multiValueHeaders"]["X-Api-Key"] == [KEY]
    assert event["queryStringParameters"] == {"dry": "1", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"dry": ["1"], "tag": ["a", "b"]}
    assert event["pathParameters"] is None
    assert (event["body"], event["isBase64Encoded"]) == ('{"groupid": "2"}', False)
    context = event["requestContext"]
    assert (context["stage"], context["resourcePath"], context["path"]) == ("Prod", "/readings", "/Prod/readings")
    assert context["identity"]["apiKey"] == KEY and context["identity"]["apiKeyId"] == api_key_id(KEY)
    assert context["identity"]["userAgent"] == "python-requests/2.25.1"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]


def test_path_parameters_and_greedy_proxy_paths() -> None:
    recorder = Recorder()
    app = client(recorder)
    app.get("/things/rpi-1/items/42", headers={"x-api-key": KEY})
    app.delete("/public/a/b/c")
    assert recorder.calls[0][1]["pathParameters"] == {"thing": "rpi-1", "item": "42"}
    assert recorder.calls[0][1]["resource"] == "/things/{thing}/items/{item}"
    assert recorder.calls[1][1]["pathParameters"] == {"proxy": "a/b/c"}
    assert recorder.calls[1][1]["requestContext"]["identity"]["apiKey"] is None


def test_the_stage_prefix_of_a_deployed_url_also_routes() -> None:
    recorder = Recorder()
    response = client(recorder).post("/Prod/readings", data="{}", headers={"x-api-key": KEY})
    assert response.status_code == 200 and recorder.calls[0][0] == "IngestFunction"


@pytest.mark.parametrize(
    ("requested", "path", "stage_path"),
    [
        ("/Prod/readings", "/readings", "/Prod/readings"),
        ("/Prod/", "/", "/Prod/"),
        ("/Prod", "/", "/Prod"),
        ("/", "/", "/Prod/"),
    ],
)
def test_the_stage_is_in_the_request_context_path_only_as_api_gateway_sends_it(
    requested: str, path: str, stage_path: str
) -> None:
    # Given a function behind the stage's root and one behind /readings (the functions route on
    # the event's path: with the stage in it, every deployed-style URL answered their 404)
    recorder = Recorder()
    routes = [*ROUTES, ApiRoute("DashboardFunction", "/", "GET", "local", "Prod", False)]
    app = Client(ApiGateway(routes, recorder, KEY))
    # When the URL is requested with or without the stage
    app.open(requested, method="POST" if "readings" in requested else "GET", headers={"x-api-key": KEY})
    # Then the event's path leaves the stage out and requestContext.path keeps it
    [(_, event)] = recorder.calls
    assert (event["path"], event["requestContext"]["path"]) == (path, stage_path)


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("GET", "/readings")])
def test_unknown_routes_and_methods_answer_missing_authentication_token(method: str, path: str) -> None:
    response = client(Recorder()).open(path, method=method, headers={"x-api-key": KEY})
    assert response.status_code == 403
    assert response.get_json() == {"message": "Missing Authentication Token"}


def test_binary_bodies_are_base64_encoded_and_empty_bodies_are_null() -> None:
    recorder = Recorder()
    app = client(recorder)
    app.post("/public/upload", data=b"\xff\x00\xfe")
    app.get("/public/empty")
    assert recorder.calls[0][1]["isBase64Encoded"] is True
    assert base64.b64decode(recorder.calls[0][1]["body"]) == b"\xff\x00\xfe"
    assert recorder.calls[1][1]["body"] is None


@pytest.mark.parametrize(
    "recorder",
    [Recorder(error=RuntimeError("boom")), Recorder(response={"body": "no status"}), Recorder(response="text")],
)
def test_function_errors_and_malformed_responses_are_502(recorder: Recorder) -> None:
    response = client(recorder).get("/public/x")
    assert response.status_code == 502
    assert response.get_json() == {"message": "Internal server error"}


def test_a_throttled_function_is_api_gateways_500_for_a_lambda_proxy_integration() -> None:
    # Given a function at its reserved concurrency (Lambda answers the invocation 429)
    recorder = Recorder(error=TooManyRequestsError("Rate Exceeded."))
    # When a request reaches it
    response = client(recorder).get("/public/x")
    # Then the client gets what API Gateway makes of a throttled Lambda proxy integration
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal server error"}


def test_proxy_response_headers_multi_value_headers_and_base64_bodies() -> None:
    recorder = Recorder(
        response={
            "statusCode": 201,
            "headers": {"Content-Type": "image/png", "Retry-After": 5},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
        }
    )
    response = client(recorder).get("/public/img")
    assert response.status_code == 201
    assert response.data == b"\x89PNG"
    assert response.headers["Content-Type"] == "image/png" and response.headers["Retry-After"] == "5"
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_dashboard_files_are_served_without_a_key(tmp_path: Path) -> None:
    # Given a dashboard folder, Then / and its siblings are served with proper types, no key needed
    (tmp_path / "index.html").write_text("<h1>gasmon</h1>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app = client(Recorder(), static_dir=tmp_path)
    index = app.get("/")
    assert index.status_code == 200 and index.data == b"<h1>gasmon</h1>"
    assert index.headers["Content-Type"].startswith("text/html")
    assert app.get("/app.js").headers["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert app.get("/../secret").status_code == 403
    assert app.get("/missing.css").status_code == 403


def test_the_events_body_is_what_the_client_sent() -> None:
    recorder = Recorder()
    document = {"groupid": "2", "no2": {"value": "95.00"}}
    client(recorder).post("/readings", data=json.dumps(document), headers={"x-api-key": KEY})
    assert json.loads(recorder.calls[0][1]["body"]) == document


# ---- Lambda REQUEST authorizers, as API Gateway runs them ----

AUTHORIZER = AuthorizerSpec(
    "KeyAuthorizer", "arn:aws:lambda:ap-northeast-2:123456789012:function:auth", ("x-api-key",), 300
)
GUARDED = [
    ApiRoute("IngestFunction", "/readings", "POST", "local", "Prod", False, AUTHORIZER),
    ApiRoute("QueryFunction", "/devices", "GET", "local", "Prod", False, AUTHORIZER),
]


class Authorizing(Recorder):
    """The runtime: an authorizer that allows POST /readings for key "device" only, and functions."""

    def __call__(self, function: str, event: dict[str, Any], source: str) -> Any:
        self.calls.append((function, event))
        if function != AUTHORIZER.function_arn:
            return self.response
        key = {name.lower(): value for name, value in event["headers"].items()}.get("x-api-key")
        if key == "broken":
            raise RuntimeError("Unauthorized")
        allowed = key == "device"
        base = event["methodArn"].split("/POST/")[0].split("/GET/")[0]
        return {
            "principalId": "device:pi-1" if allowed else "unknown",
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": "Allow" if allowed else "Deny",
                        "Resource": [f"{base}/POST/readings" if allowed else f"{base}/*/*"],
                    }
                ],
            },
            "context": {"role": "device", "name": "pi-1", "groupid": "2"} if allowed else {},
        }

    def authorizer_calls(self) -> list[dict[str, Any]]:
        return [event for function, event in self.calls if function == AUTHORIZER.function_arn]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guarded(runtime: Authorizing, clock: Clock | None = None) -> Client:
    return Client(ApiGateway(GUARDED, runtime, clock=clock or Clock()))


def test_a_request_without_the_identity_header_is_401_and_the_authorizer_is_not_called() -> None:
    runtime = Authorizing()
    response = guarded(runtime).post("/readings", json={})
    assert response.status_code == 401 and response.get_json() == {"message": "Unauthorized"}
    assert runtime.calls == []


def test_an_allowed_request_carries_the_authorizers_context_to_the_function() -> None:
    # Given the authorizer allows the key, When it posts, Then the function sees the identity
    runtime = Authorizing()
    response = guarded(runtime).post("/readings", json={}, headers={"x-api-key": "device"})
    assert response.status_code == 200
    [authorizer_event] = runtime.authorizer_calls()
    assert authorizer_event["type"] == "REQUEST"
    assert authorizer_event["methodArn"] == "arn:aws:execute-api:ap-northeast-2:123456789012:local/Prod/POST/readings"
    function, event = runtime.calls[-1]
    assert function == "IngestFunction"
    assert event["requestContext"]["authorizer"]["name"] == "pi-1"
    assert event["requestContext"]["authorizer"]["principalId"] == "device:pi-1"


def test_the_answer_is_cached_per_key_for_the_ttl_and_asked_again_after_it() -> None:
    runtime, clock = Authorizing(), Clock()
    app = guarded(runtime, clock)
    for _ in range(3):
        assert app.post("/readings", json={}, headers={"x-api-key": "device"}).status_code == 200
    assert len(runtime.authorizer_calls()) == 1
    clock.now += AUTHORIZER.ttl_seconds + 1
    assert app.post("/readings", json={}, headers={"x-api-key": "device"}).status_code == 200
    assert len(runtime.authorizer_calls()) == 2


def test_a_cached_policy_is_evaluated_against_each_route() -> None:
    # Given a device key allowed POST /readings only, When it asks for GET /devices, Then 403
    runtime = Authorizing()
    app = guarded(runtime)
    assert app.post("/readings", json={}, headers={"x-api-key": "device"}).status_code == 200
    response = app.get("/devices", headers={"x-api-key": "device"})
    assert response.status_code == 403
    assert response.get_json() == {"message": "User is not authorized to access this resource"}
    assert [function for function, _ in runtime.calls].count("QueryFunction") == 0


def test_a_deny_is_403_and_an_unauthorized_error_is_401() -> None:
    runtime = Authorizing()
    app = guarded(runtime)
    assert app.post("/readings", json={}, headers={"x-api-key": "stranger"}).status_code == 403
    assert app.post("/readings", json={}, headers={"x-api-key": "broken"}).status_code == 401


def test_policy_evaluation_follows_api_gateway() -> None:
    arn = method_arn(GUARDED[0], "POST", "/readings")
    allow = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": arn.replace("/POST/", "/*/")}
    deny = {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": [arn]}
    assert policy_allows({"Statement": [allow]}, arn)
    assert not policy_allows({"Statement": [allow, deny]}, arn)  # an explicit Deny wins
    assert not policy_allows({"Statement": [{**allow, "Action": "s3:GetObject"}]}, arn)
    assert not policy_allows({"Statement": []}, arn) and not policy_allows("nonsense", arn)
