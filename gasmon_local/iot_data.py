"""AWS IoT's data-plane HTTP API (boto3 `iot-data`) in front of the local broker.

The production publisher (`gasmon.adapters.iot_publisher`) reaches this endpoint unchanged when
`AWS_ENDPOINT_URL_IOT_DATA` points here. Implemented operations, with AWS's paths and error
shapes: Publish (`POST /topics/{topic}?qos=&retain=`), GetThingShadow, UpdateThingShadow and
DeleteThingShadow (`GET|POST|DELETE /things/{thing}/shadow?name=`) and
ListNamedShadowsForThing. SigV4 signatures are accepted without checking: the local stack has no
IAM. Messages published here go through the broker exactly like a device's, so subscribers get
them and rules see them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from gasmon_local.shadows import ShadowRejectedError

log = logging.getLogger("iot-data")

_ERROR_TYPES = {
    400: "InvalidRequestException",
    404: "ResourceNotFoundException",
    409: "ConflictException",
    413: "RequestEntityTooLargeException",
}
MAX_PAYLOAD_BYTES = 128 * 1024  # AWS IoT's message size limit


class IotDataBackend(Protocol):
    """What the endpoint needs from the broker (`gasmon_local.broker.IotCore`)."""

    def publish_threadsafe(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None: ...

    def shadow_threadsafe(self, operation: str, thing: str, name: str | None, payload: bytes) -> dict[str, Any]: ...

    @property
    def shadows(self) -> Any: ...


def _error(status: int, message: str) -> Response:
    kind = _ERROR_TYPES.get(status, "InternalFailureException")
    body = json.dumps({"message": message, "__type": kind})
    return Response(body, status=status, content_type="application/json", headers={"x-amzn-ErrorType": kind})


class IotDataApp:
    """The WSGI app; one instance per broker."""

    def __init__(self, backend: IotDataBackend) -> None:
        self.backend = backend
        self.routes = Map(
            [
                Rule("/topics/<path:topic>", methods=["POST"], endpoint="publish"),
                Rule("/things/<thing>/shadow", methods=["GET", "POST", "DELETE"], endpoint="shadow"),
                Rule("/api/things/shadow/ListNamedShadowsForThing/<thing>", methods=["GET"], endpoint="names"),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, arguments = self.routes.bind_to_environ(environ).match()
            response = getattr(self, f"_{endpoint}")(request, **arguments)
        except NotFound:
            response = _error(404, f"no iot-data operation at {request.method} {request.path}")
        except HTTPException as exc:
            response = _error(exc.code or 400, exc.description or "bad request")
        except ShadowRejectedError as exc:
            response = _error(exc.code, exc.message)
        except Exception as exc:  # report, never kill the server thread
            log.exception("iot-data %s %s failed", request.method, request.path)
            response = _error(500, str(exc))
        return response(environ, start_response)

    def _publish(self, request: Request, topic: str) -> Response:
        payload = request.get_data()
        if len(payload) > MAX_PAYLOAD_BYTES:
            return _error(413, f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit")
        qos = int(request.args.get("qos", "0"))
        if qos not in (0, 1):
            return _error(400, "qos must be 0 or 1")
        if "+" in topic or "#" in topic:
            return _error(400, f"cannot publish to a topic filter: {topic}")
        retain = request.args.get("retain", "false").lower() == "true"
        self.backend.publish_threadsafe(topic, payload, qos, retain)
        return Response("{}", status=200, content_type="application/json")

    def _shadow(self, request: Request, thing: str) -> Response:
        name = request.args.get("name") or None
        operation = {"GET": "get", "POST": "update", "DELETE": "delete"}[request.method]
        document = self.backend.shadow_threadsafe(operation, thing, name, request.get_data())
        return Response(json.dumps(document), status=200, content_type="application/json")

    def _names(self, request: Request, thing: str) -> Response:
        names = self.backend.shadows.names(thing)
        body = {"results": names, "timestamp": int(time.time())}
        return Response(json.dumps(body), status=200, content_type="application/json")
