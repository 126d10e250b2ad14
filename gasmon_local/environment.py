"""One Lambda execution environment of `make local`: a process of its own for one function.

`FunctionRuntime` (gasmon_local.functions) starts this module as `python -m
gasmon_local.environment <fd>` with the function's environment variables as the process's own, so
the function's `app.py`, the layer's Logger, Metrics and settings, and its adapters (one SQLite
connection, one boto3 client each) belong to this environment alone, as in Lambda. `<fd>` is one
end of a socket pair: the first message describes the function (code, handler, context fields, log
style, fault plan); the reply says the INIT phase is done (or how it failed); then each message is
one invocation's event (JSON, as Lambda hands it over) and each reply its result or error. One
invocation at a time, as Lambda runs an environment. When the runtime closes its end (the stack
stopped, or was killed), the next read ends and so does this process.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
import uuid
from multiprocessing.connection import Connection
from typing import Any


class _Context:
    """The context object the Lambda runtime passes to a handler (see functions.LambdaContext)."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.function_name = init["name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = init["arn"]
        self.memory_limit_in_mb = init["memory"]
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{init['name']}"
        self.log_stream_name = init["log_stream"]
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + init["timeout"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> bytes:
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": error_type or type(exc).__name__,
            "stackTrace": traceback.format_exception(exc)[1:],
        }
    ).encode()


def _initialise(init: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The INIT phase: import the handler (the layer builds its Logger and Metrics under this
    environment), dress the Logger as `make local` shows logs, build the fault adapters if any."""
    from gasmon_local.functions import load_handler
    from gasmon_local.logs import FunctionLogs

    FunctionLogs.configure(init["log_style"], init["log_level"])
    handler = load_handler(init["code_uri"], init["handler"])
    observability = sys.modules.get("gasmon.observability")
    if observability is not None:
        FunctionLogs.dress(observability.logger)
    extra: dict[str, Any] = {}
    faults = init.get("faults")
    if faults:
        from gasmon_local.faults import FaultPlan, handler_adapters

        # Each environment draws from a stream of its own (seeded by function and environment),
        # so two environments never repeat one schedule in lockstep.
        plan = FaultPlan(faults["probabilities"], faults["seed"])
        extra = handler_adapters(init["logical_id"], sys.modules[handler.__module__], plan)
    return handler, extra


def serve(connection: Connection) -> None:
    """Run INIT, then one invocation per message until the runtime hangs up."""
    init = json.loads(connection.recv_bytes())
    try:
        handler, extra = _initialise(init)
    except Exception as exc:
        connection.send_bytes(_error(exc, "Runtime.ImportModuleError"))
        return
    connection.send_bytes(b'{"ready": true}')
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            event = json.loads(message)
            result = handler(event, _Context(init), **extra)
            reply = json.dumps({"result": result}).encode()
        except Exception as exc:
            reply = _error(exc)
        connection.send_bytes(reply)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    connection = Connection(int(sys.argv[1]))
    try:
        serve(connection)
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        connection.close()


if __name__ == "__main__":
    main()
