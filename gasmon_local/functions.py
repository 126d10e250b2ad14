"""Loading and invoking Lambda handlers as the Lambda runtime does, inside this one process.

Handlers are loaded by file from a function's CodeUri.

Environment and concurrency (why invocations take one lock).

In AWS every function runs in its own execution environment: its own process, its own
environment variables, one invocation at a time. Here every function of template.yaml shares
this process, so `FunctionRuntime` recreates what matters:

- A function's environment (template Globals + its own variables + the local overrides) is put
  into `os.environ` for the duration of each of its invocations and taken out afterwards.
  gasmon's settings are read once at cold start (`@cache`), but other reads are lazy (boto3
  builds a client on first use, Powertools checks POWERTOOLS_METRICS_DISABLED on every flush),
  so applying the environment around *every* invocation, not just the first, is what makes
  each function see its own variables whenever it reads them.
- Because there is one `os.environ`, only one invocation may run at a time: `_INVOKE_LOCK`
  serialises all invocations in the process. The functions also share module state in the
  layer (one Powertools Logger and Metrics object), which the lock keeps from interleaving.
  Lambda itself never runs two invocations in one environment, and the handlers take
  milliseconds here, so the only cost is that a slow function delays the others.
- What the layer creates at import time is shared: its modules are imported once, so there is
  one Powertools Logger and one Metrics object, created under the first function's environment.
  Each invocation gives them the invoked function's POWERTOOLS_SERVICE_NAME, so log lines and
  metrics name the function that wrote them, as in AWS (each function's own module, settings
  and adapters are its own).
- Variables that are the same for every function (fake credentials, region, the moto and
  iot-data endpoints, POWERTOOLS_TRACE_DISABLED) are set once for the whole process before the
  first function is imported, because some libraries read them at import time.

Asynchronous invocations (IoT rule Lambda actions, SNS, schedules) are queued per function and
run in order on that function's worker thread; a failing one is retried as its EventInvokeConfig
says (twice by default, after 1 s and 2 s where AWS waits minutes), then sent to its OnFailure
destination and dead-letter queue, as Lambda does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gasmon_local.logs import FunctionLogs

if TYPE_CHECKING:
    from gasmon_local.template import FunctionSpec

ROOT = Path(__file__).resolve().parent.parent

Handler = Callable[..., Any]


def load_handler(code_uri: str | Path, handler: str = "app.lambda_handler") -> Handler:
    """Import `<code_uri>/<module>.py` under a name of its own and return its handler function.

    Each function folder has its own `app.py`, so modules are registered under a name of their
    own (`module_key`) to keep two functions from shadowing each other.
    """
    module_name, function_name = handler.rsplit(".", 1)
    folder = (ROOT / code_uri).resolve()
    unique = module_key(folder, module_name)
    module = sys.modules.get(unique)
    if module is None:
        spec = importlib.util.spec_from_file_location(unique, folder / f"{module_name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"no module {module_name}.py in {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    return getattr(module, function_name)  # type: ignore[no-any-return]


def module_key(folder: Path, module_name: str) -> str:
    """`gasmon_fn_<folder>_<module>` for gasmon's own functions/<folder>; folders elsewhere (test
    fixtures, other templates) get their whole path in the name, so a fixture's
    `record_presence/app.py` never stands in for gasmon's."""
    if folder.parent == ROOT / "functions":
        return f"gasmon_fn_{folder.name}_{module_name}"
    try:
        where = folder.relative_to(ROOT)
    except ValueError:
        where = folder
    slug = "_".join(part for part in where.parts if part not in ("/", ""))
    return f"gasmon_fn_{''.join(c if c.isalnum() else '_' for c in slug)}_{module_name}"


def load_function_module(code_uri: str | Path, module_name: str = "app") -> Any:
    """The module object of a function (for its `app` resolver, say)."""
    load_handler(code_uri, f"{module_name}.lambda_handler")
    return sys.modules[module_key((ROOT / code_uri).resolve(), module_name)]


log = logging.getLogger("lambda")
Deliver = Callable[[str, str], None]
AdapterHook = Callable[["FunctionSpec", Any], Mapping[str, Any]]
_INVOKE_LOCK = threading.Lock()
ASYNC_RETRY_DELAYS = (1.0, 2.0)


def destination_record(spec: FunctionSpec, event: Any, response: Any, condition: str, attempts: int) -> dict[str, Any]:
    """The invocation record Lambda sends to an OnSuccess/OnFailure destination."""
    failed = condition != "Success"
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if failed:
        response_context["functionError"] = "Unhandled"
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{spec.arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": response_context,
        "responsePayload": response,
    }


class FunctionNotFoundError(LookupError):
    """No function of the template has this logical id, name or ARN."""


class LambdaContext:
    """The context object the Lambda runtime passes to a handler."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextlib.contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Put a function's variables into `os.environ` for one invocation, then restore it."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def lambda_variables(spec: FunctionSpec) -> dict[str, str]:
    """The variables the Lambda runtime itself sets for a function."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_" + spec.runtime,
    }


def _name_the_service(variables: Mapping[str, str]) -> None:
    """Give the layer's shared Logger and Metrics this function's service name (see above)."""
    observability = sys.modules.get("gasmon.observability")
    service = variables.get("POWERTOOLS_SERVICE_NAME")
    if observability is not None:
        FunctionLogs.dress(observability.logger)
    if observability is not None and service:
        observability.logger.append_keys(service=service)
        # Handlers log with `inject_lambda_context(clear_state=True)`, which resets the keys to
        # those the Logger was built with: the first function's service. Make this one's the base.
        defaults = getattr(observability.logger, "_default_log_keys", None)
        if isinstance(defaults, dict):
            defaults["service"] = service
        combined = getattr(observability.logger.registered_formatter, "keys_combined", None)
        if isinstance(combined, dict):
            combined["service"] = service
        observability.metrics.service = service


class FunctionRuntime:
    """Invokes the template's functions in-process, each with its own environment (see above)."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        environments: Mapping[str, Mapping[str, str]],
        deliver: Deliver | None = None,
        adapters: AdapterHook | None = None,
    ) -> None:
        """`deliver(target_arn, body)` sends destination records and dead letters to SQS or SNS;
        `adapters(spec, module)` returns keyword arguments (adapters) for a function's handler,
        called in its environment before each invocation (how `--faults` wraps them)."""
        self.functions = dict(functions)
        self.deliver = deliver
        self.adapters = adapters
        self.environments = {
            logical_id: lambda_variables(spec) | dict(environments.get(logical_id, spec.environment))
            for logical_id, spec in self.functions.items()
        }
        self._workers: dict[str, ThreadPoolExecutor] = {}
        self._timers: set[threading.Timer] = set()
        self._closed = False

    def spec(self, reference: str) -> FunctionSpec:
        """A function by logical id, physical name or (qualified) ARN."""
        if reference in self.functions:
            return self.functions[reference]
        name = reference.split(":function:", 1)[1].split(":", 1)[0] if ":function:" in reference else reference
        for spec in self.functions.values():
            if spec.name == name:
                return spec
        raise FunctionNotFoundError(f"no function {reference!r} in the template")

    def invoke(self, reference: str, event: Any, source: str = "") -> Any:
        """Invoke synchronously (RequestResponse); the handler's exceptions propagate."""
        spec = self.spec(reference)
        name = spec.logical_id
        with _INVOKE_LOCK, function_environment(self.environments[name]):
            started = time.perf_counter()
            try:
                # Imported here, under the function's environment: the layer creates its Logger
                # and Tracer at import time (the cold start).
                handler = load_handler(spec.code_uri, spec.handler)
                _name_the_service(self.environments[name])
                extra = self.adapters(spec, sys.modules[handler.__module__]) if self.adapters else {}
                result = handler(event, LambdaContext(spec), **extra)
            except Exception as exc:
                elapsed = (time.perf_counter() - started) * 1000
                log.error("%-24s failed after %.0f ms (%s): %s: %s", name, elapsed, source, type(exc).__name__, exc)
                raise
        elapsed = (time.perf_counter() - started) * 1000
        if elapsed > spec.timeout * 1000:
            log.warning("%-24s took %.0f ms, over its %s s timeout (not enforced here)", name, elapsed, spec.timeout)
        # The gateway logs API requests itself; one line per request is enough.
        log.log(
            logging.DEBUG if source.startswith("api ") else logging.INFO, "%-24s ok %.0f ms (%s)", name, elapsed, source
        )
        return result

    def invoke_async(self, reference: str, event: Any, source: str = "") -> None:
        """Queue an Event invocation on the function's worker.

        A failure is retried as the function's EventInvokeConfig says (twice by default); when
        retries run out the OnFailure destination and the dead-letter queue get it.
        """
        spec = self.spec(reference)
        self._submit(spec, event, source, attempt=0)

    def _submit(self, spec: FunctionSpec, event: Any, source: str, attempt: int) -> None:
        if self._closed:
            return
        worker = self._workers.get(spec.logical_id)
        if worker is None:
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lambda-{spec.logical_id}")
            self._workers[spec.logical_id] = worker
        worker.submit(self._run_async, spec, event, source, attempt)

    def _run_async(self, spec: FunctionSpec, event: Any, source: str, attempt: int) -> None:
        config = spec.async_config
        try:
            result = self.invoke(spec.logical_id, event, source if attempt == 0 else f"{source}, retry {attempt}")
        except Exception as error:
            retries = min(config.max_retry_attempts, len(ASYNC_RETRY_DELAYS))
            if attempt < retries and not self._closed:
                log.info("%-24s will retry in %.0f s", spec.logical_id, ASYNC_RETRY_DELAYS[attempt])
                timer = threading.Timer(
                    ASYNC_RETRY_DELAYS[attempt], self._submit, args=(spec, event, source, attempt + 1)
                )
                timer.daemon = True
                self._timers.add(timer)
                timer.start()
                return
            log.error(
                "%-24s gave up on an event invocation after %d attempt(s) (%s)", spec.logical_id, attempt + 1, source
            )
            failure = {"errorMessage": str(error), "errorType": type(error).__name__, "stackTrace": []}
            if config.on_failure:
                record = destination_record(spec, event, failure, "RetriesExhausted", attempt + 1)
                self._send(config.on_failure, record, spec)
            if config.dead_letter:
                self._send(config.dead_letter, event, spec)
            return
        if config.on_success:
            self._send(config.on_success, destination_record(spec, event, result, "Success", attempt + 1), spec)

    def _send(self, target_arn: str, body: Any, spec: FunctionSpec) -> None:
        try:
            if ":lambda:" in target_arn:
                self.invoke_async(target_arn, body, f"destination of {spec.logical_id}")
            elif self.deliver is not None:
                self.deliver(target_arn, json.dumps(body, default=str))
        except Exception:
            log.exception("%-24s could not deliver to %s", spec.logical_id, target_arn)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until queued asynchronous invocations have run (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        for worker in list(self._workers.values()):
            marker = worker.submit(lambda: None)
            marker.result(timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop accepting invocations; let running ones finish."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        for worker in self._workers.values():
            worker.shutdown(wait=True, cancel_futures=True)
