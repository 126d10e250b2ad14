"""Loading and invoking Lambda handlers as the Lambda runtime does.

Handlers are loaded by file from a function's CodeUri.

Execution environments and concurrency (`isolation="process"`, what `make local` uses).

In AWS every function runs in execution environments: each its own process with its own
environment variables, one invocation at a time; when every environment of a function is busy
Lambda starts another (a cold start), up to the function's concurrency. `FunctionRuntime` does the
same here: each environment is a child process (`gasmon_local.environment`) started with the
function's variables as its own `os.environ`, which imports the function's `app.py` (and the
layer: its own Powertools Logger and Metrics, its own settings, its own SQLite connection and
boto3 clients) in its INIT phase and then runs one invocation at a time, the event and the result
crossing a socket pair as JSON, as they cross Lambda's runtime API. Environments are started on
demand and kept warm; an idle one is reused before another is started.

- Per-function limit: at most `min(ReservedConcurrentExecutions, concurrency)` environments run
  at once, `concurrency` being the local cap (`--concurrency`, default `DEFAULT_CONCURRENCY`):
  this machine cannot hold Lambda's 1,000 per account. A synchronous invocation beyond the local
  cap waits for an environment; one beyond the template's ReservedConcurrentExecutions (counting
  those waiting) is throttled with `TooManyRequestsError`, as Lambda answers 429; the gateway then
  answers 500 "Internal server error", which is what API Gateway's Lambda proxy integration makes
  of a throttled function. Asynchronous invocations are never throttled (Lambda queues them).
- Asynchronous invocations (IoT rule Lambda actions, SNS, schedules) are queued per function and
  run in order on that function's worker thread; a failing one is retried as its EventInvokeConfig
  says (twice by default, after 1 s and 2 s where AWS waits minutes), then sent to its OnFailure
  destination and dead-letter queue, as Lambda does. (In AWS, event invocations of one function
  may also run side by side; in order is what the local presence flows were built on.)
- An environment whose process dies mid-invocation is discarded; the invocation fails as
  `Runtime.ExitError` and the next one starts a fresh environment.

`isolation="inline"` (what `make invoke` uses: one invocation, logs redirected like `sam local
invoke`) runs handlers in this process instead, behind one lock: a function's environment is put
into `os.environ` for the duration of each invocation (settings are read at cold start, but boto3
and Powertools read some variables lazily), and the layer's shared Logger and Metrics are given the
invoked function's service name. Variables that are the same for every function (fake
credentials, region, the moto and iot-data endpoints, POWERTOOLS_TRACE_DISABLED) are set once for
the whole process before the first function starts, because some libraries read them at import
time; child environments inherit them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gasmon_local.logs import FunctionLogs

if TYPE_CHECKING:
    from gasmon_local.faults import FaultPlan
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
_INVOKE_LOCK = threading.Lock()  # isolation="inline" only
ASYNC_RETRY_DELAYS = (1.0, 2.0)
# Environments one function may run at once here unless --concurrency says otherwise: enough for
# the 4 concurrent clients the bench drives, few enough that every function of the template at
# its cap (~75 MB resident a process) still fits a developer's machine.
DEFAULT_CONCURRENCY = 4
Isolation = Literal["process", "inline"]


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


class TooManyRequestsError(RuntimeError):
    """The function is at its reserved concurrency: Lambda throttles the synchronous invocation (429)."""


class FunctionError(RuntimeError):
    """The handler (in its own environment) raised, or its environment failed; `str()` is Lambda's
    errorMessage, `error_type` its errorType."""

    def __init__(self, message: str, error_type: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.stack_trace = stack_trace or []


class Environment:
    """One execution environment: a child process running `gasmon_local.environment`."""

    def __init__(self, variables: Mapping[str, str], init: Mapping[str, Any]) -> None:
        self.broken = False  # its process died or hung up: never reused
        started = time.perf_counter()
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gasmon_local.environment", str(theirs.fileno())],
                env=dict(os.environ) | dict(variables) | {"PYTHONUNBUFFERED": "1"},
                pass_fds=(theirs.fileno(),),
                # Ctrl-C reaches the stack, not its environments: the stack drains queued
                # invocations before it closes them.
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        log_stream = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.connection.send_bytes(json.dumps(dict(init) | {"log_stream": log_stream}).encode())
        reply = self._receive()
        self.init_ms = (time.perf_counter() - started) * 1000
        if "ready" not in reply:
            self.close()
            raise FunctionError(str(reply.get("errorMessage")), str(reply.get("errorType")), reply.get("stackTrace"))

    def _exited(self, what: str) -> FunctionError:
        """Its process is gone: never reused; the error names the exit code."""
        self.broken = True
        return FunctionError(f"the runtime exited (exit code {self.process.poll()}){what}", "Runtime.ExitError")

    def _receive(self) -> dict[str, Any]:
        try:
            return json.loads(self.connection.recv_bytes())  # type: ignore[no-any-return]
        except (EOFError, OSError):
            raise self._exited(" without an answer") from None

    def invoke(self, event: Any) -> Any:
        """Run one invocation; the handler's error comes back as `FunctionError`."""
        try:
            body = json.dumps(event)
        except TypeError as exc:
            raise FunctionError(f"the event is not JSON: {exc}", "Runtime.InvalidEvent") from exc
        try:
            self.connection.send_bytes(body.encode())
        except OSError:
            raise self._exited("") from None
        reply = self._receive()
        if "result" in reply:
            return reply["result"]
        raise FunctionError(str(reply.get("errorMessage")), str(reply.get("errorType")), reply.get("stackTrace"))

    @property
    def alive(self) -> bool:
        return not self.broken and self.process.poll() is None

    def close(self, timeout: float = 5.0) -> None:
        """Hang up: the environment ends after its current invocation; killed if it lingers."""
        with contextlib.suppress(OSError):
            self.connection.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class EnvironmentPool:
    """A function's environments: reuse an idle one, start one while under the limit, else wait;
    throttle synchronous invocations beyond the reserved concurrency (see the module docstring)."""

    def __init__(self, spec: FunctionSpec, limit: int, start: Callable[[int], Environment]) -> None:
        self.spec = spec
        self.reserved = spec.reserved_concurrency
        self.limit = max(1, min(limit, self.reserved) if self.reserved else limit)
        self._start = start
        self._idle: list[Environment] = []
        self._all: list[Environment] = []
        self._starting = 0
        self._in_flight = 0
        self._started = 0
        self._closed = False
        self._changed = threading.Condition()

    def acquire(self, throttle: bool) -> Environment:
        with self._changed:
            if throttle and self.reserved is not None and self._in_flight >= self.reserved:
                raise TooManyRequestsError(
                    f"{self.spec.logical_id} is at its reserved concurrency ({self.reserved}): Rate Exceeded."
                )
            self._in_flight += 1
            while not self._idle and len(self._all) + self._starting >= self.limit and not self._closed:
                self._changed.wait()
            if self._closed:
                self._in_flight -= 1
                raise FunctionError(f"{self.spec.logical_id}: the runtime is closed", "Runtime.Closed")
            if self._idle:
                return self._idle.pop()  # the most recently used: the warmest
            self._starting += 1
            self._started += 1
            index = self._started
        try:
            environment = self._start(index)
        except BaseException:
            with self._changed:
                self._starting -= 1
                self._in_flight -= 1
                self._changed.notify()
            raise
        with self._changed:
            self._starting -= 1
            self._all.append(environment)
        log.info(
            "%-24s started environment %d (%.0f ms INIT, %d of %d)",
            self.spec.logical_id,
            index,
            environment.init_ms,
            len(self._all),
            self.limit,
        )
        return environment

    def release(self, environment: Environment) -> None:
        with self._changed:
            self._in_flight -= 1
            if environment.alive and not self._closed:
                self._idle.append(environment)
                self._changed.notify()
                return
            if environment in self._all:
                self._all.remove(environment)
            self._changed.notify()
        environment.close()

    @property
    def size(self) -> int:
        """Environments started and not discarded."""
        with self._changed:
            return len(self._all)

    def close(self) -> None:
        """Close the idle environments; busy ones close when their invocation returns."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            for environment in idle:
                self._all.remove(environment)
            self._changed.notify_all()
        for environment in idle:
            environment.close()


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
    """Invokes the template's functions, each in environments of its own (see above)."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        environments: Mapping[str, Mapping[str, str]],
        deliver: Deliver | None = None,
        adapters: AdapterHook | None = None,
        isolation: Isolation = "inline",
        concurrency: int = DEFAULT_CONCURRENCY,
        faults: FaultPlan | None = None,
    ) -> None:
        """`deliver(target_arn, body)` sends destination records and dead letters to SQS or SNS.

        `isolation="process"`: each function runs in child-process environments, at most
        `concurrency` of them at once (fewer if its ReservedConcurrentExecutions says so); `faults`
        wraps their adapters (each environment builds its own). `isolation="inline"`: handlers run
        in this process behind one lock, `adapters(spec, module)` returning keyword arguments for a
        handler, called in its environment before each invocation.
        """
        self.functions = dict(functions)
        self.deliver = deliver
        self.isolation = isolation
        self.concurrency = concurrency
        self.faults = faults
        self.adapters = adapters
        if isolation == "inline" and faults and adapters is None:
            from gasmon_local.faults import fault_adapters

            self.adapters = fault_adapters(faults)
        self.environments = {
            logical_id: lambda_variables(spec) | dict(environments.get(logical_id, spec.environment))
            for logical_id, spec in self.functions.items()
        }
        self._pools: dict[str, EnvironmentPool] = {}
        self._pools_lock = threading.Lock()
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

    def pool(self, reference: str) -> EnvironmentPool:
        """The function's environments (isolation="process")."""
        spec = self.spec(reference)
        with self._pools_lock:
            pool = self._pools.get(spec.logical_id)
            if pool is None:
                pool = EnvironmentPool(spec, self.concurrency, lambda index: self._start_environment(spec, index))
                self._pools[spec.logical_id] = pool
            return pool

    def _start_environment(self, spec: FunctionSpec, index: int) -> Environment:
        init: dict[str, Any] = {
            "logical_id": spec.logical_id,
            "name": spec.name,
            "arn": spec.arn,
            "memory": spec.memory,
            "timeout": spec.timeout,
            "code_uri": str((ROOT / spec.code_uri).resolve()),
            "handler": spec.handler,
            "log_style": FunctionLogs.style,
            "log_level": FunctionLogs.level,
        }
        if self.faults:
            seed = f"{self.faults.seed}:{spec.logical_id}:{index}"
            init["faults"] = {"probabilities": dict(self.faults.probabilities), "seed": seed}
        return Environment(self.environments[spec.logical_id], init)

    def invoke(self, reference: str, event: Any, source: str = "") -> Any:
        """Invoke synchronously (RequestResponse); the handler's exceptions propagate (in process
        isolation as `FunctionError`), a throttle as `TooManyRequestsError`."""
        return self._invoke(reference, event, source, throttle=True)

    def _invoke(self, reference: str, event: Any, source: str, throttle: bool) -> Any:
        spec = self.spec(reference)
        name = spec.logical_id
        started = time.perf_counter()
        try:
            if self.isolation == "process":
                result = self._invoke_in_environment(spec, event, throttle)
            else:
                result = self._invoke_inline(spec, event)
        except TooManyRequestsError as exc:
            log.warning("%-24s throttled (%s): %s", name, source, exc)
            raise
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            log.error("%-24s failed after %.0f ms (%s): %s: %s", name, elapsed, source, _error_type(exc), exc)
            raise
        elapsed = (time.perf_counter() - started) * 1000
        if elapsed > spec.timeout * 1000:
            log.warning("%-24s took %.0f ms, over its %s s timeout (not enforced here)", name, elapsed, spec.timeout)
        # The gateway logs API requests itself; one line per request is enough.
        log.log(
            logging.DEBUG if source.startswith("api ") else logging.INFO, "%-24s ok %.0f ms (%s)", name, elapsed, source
        )
        return result

    def _invoke_in_environment(self, spec: FunctionSpec, event: Any, throttle: bool) -> Any:
        pool = self.pool(spec.logical_id)
        environment = pool.acquire(throttle)
        try:
            return environment.invoke(event)
        finally:
            pool.release(environment)

    def _invoke_inline(self, spec: FunctionSpec, event: Any) -> Any:
        variables = self.environments[spec.logical_id]
        with _INVOKE_LOCK, function_environment(variables):
            # Imported here, under the function's environment: the layer creates its Logger
            # and Tracer at import time (the cold start).
            handler = load_handler(spec.code_uri, spec.handler)
            _name_the_service(variables)
            extra = self.adapters(spec, sys.modules[handler.__module__]) if self.adapters else {}
            return handler(event, LambdaContext(spec), **extra)

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
            result = self._invoke(
                spec.logical_id, event, source if attempt == 0 else f"{source}, retry {attempt}", throttle=False
            )
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
            failure = {"errorMessage": str(error), "errorType": _error_type(error), "stackTrace": []}
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
        with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()


def _error_type(error: BaseException) -> str:
    """Lambda's errorType: the handler's exception class, as its environment reported it."""
    return error.error_type if isinstance(error, FunctionError) else type(error).__name__
