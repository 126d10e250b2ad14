"""Functions in execution environments of their own (gasmon_local.functions, isolation="process").

Each environment is a real child process, as `make local` runs them. The slow function below
blocks until the test releases it, so overlap is observed, never inferred from timing: if two
invocations could not run side by side, the second would never arrive while the first holds.
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from gasmon_local.functions import FunctionError, FunctionRuntime, TooManyRequestsError
from gasmon_local.servers import ServerThread
from gasmon_local.template import FunctionSpec
from tests.local_functions import function_spec

# Marks its arrival, then holds until the test's release file exists (bounded: never hangs CI).
HOLDS_UNTIL_RELEASED = """
    import os
    import time
    from pathlib import Path

    COLOUR_AT_INIT = os.environ.get("COLOUR")

    def lambda_handler(event, context):
        if event.get("exit"):
            os._exit(3)  # the environment dies mid-invocation
        folder = Path(event["folder"])
        (folder / f"arrived-{event['name']}").write_text(str(os.getpid()))
        deadline = time.monotonic() + 10
        while not (folder / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"released": (folder / "release").exists(), "pid": os.getpid(), "colour": COLOUR_AT_INIT,
                "other": os.environ.get("OTHER_COLOUR")}
"""
WAIT = 10.0


def spec(tmp_path: Path, logical_id: str, reserved: int | None = None) -> FunctionSpec:
    return function_spec(tmp_path, logical_id, HOLDS_UNTIL_RELEASED, timeout=15, reserved_concurrency=reserved)


class Scene:
    """A runtime, a folder where invocations check in, and a way to release them."""

    def __init__(self, runtime: FunctionRuntime, folder: Path) -> None:
        self.runtime = runtime
        self.folder = folder
        self.pool = ThreadPoolExecutor(8)

    def start(self, function: str, name: str) -> Future[Any]:
        return self.pool.submit(self.runtime.invoke, function, {"folder": str(self.folder), "name": name})

    def arrived(self, *names: str, within: float = WAIT) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all((self.folder / f"arrived-{name}").exists() for name in names):
                return True
            time.sleep(0.01)
        return False

    def release(self) -> None:
        (self.folder / "release").write_text("go")


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Callable[..., Scene]]:
    made: list[Scene] = []

    def make(functions: dict[str, FunctionSpec], concurrency: int = 4, **variables: dict[str, str]) -> Scene:
        folder = tmp_path / "marks"
        folder.mkdir(exist_ok=True)
        runtime = FunctionRuntime(functions, variables, isolation="process", concurrency=concurrency)
        made.append(Scene(runtime, folder))
        return made[-1]

    yield make
    for each in made:
        each.release()
        each.pool.shutdown(wait=True)
        each.runtime.close()


def test_two_invocations_of_one_function_run_at_once_in_two_environments(
    tmp_path: Path, scene: Callable[..., Scene]
) -> None:
    # Given a function whose invocations hold until released
    s = scene({"Slow": spec(tmp_path, "Slow")})
    # When two are invoked at once
    first, second = s.start("Slow", "one"), s.start("Slow", "two")
    # Then both are inside the handler before either is released (they overlap)
    assert s.arrived("one", "two"), "the second invocation did not start while the first was running"
    s.release()
    results = [first.result(WAIT), second.result(WAIT)]
    # And they ran in two environments (two processes), each released, not timed out
    assert all(result["released"] for result in results)
    assert results[0]["pid"] != results[1]["pid"]
    assert s.runtime.pool("Slow").size == 2


def test_beyond_the_local_limit_an_invocation_waits_for_a_free_environment(
    tmp_path: Path, scene: Callable[..., Scene]
) -> None:
    # Given a runtime allowed one environment per function
    s = scene({"Slow": spec(tmp_path, "Slow")}, concurrency=1)
    first = s.start("Slow", "one")
    assert s.arrived("one")
    # When a second invocation comes while the first holds the only environment
    second = s.start("Slow", "two")
    # Then it waits (it is neither refused nor run alongside)
    assert not s.arrived("two", within=0.5)
    assert not second.done()
    # And once the first is released it runs, in the same (warm) environment
    s.release()
    assert first.result(WAIT)["pid"] == second.result(WAIT)["pid"]
    assert s.runtime.pool("Slow").size == 1


def test_beyond_the_reserved_concurrency_a_synchronous_invocation_is_throttled(
    tmp_path: Path, scene: Callable[..., Scene]
) -> None:
    # Given a function whose template reserves (and caps) one concurrent execution
    s = scene({"Capped": spec(tmp_path, "Capped", reserved=1)})
    first = s.start("Capped", "one")
    assert s.arrived("one")
    # When a second synchronous invocation comes while the first runs
    # Then Lambda's throttle answers it at once (429 TooManyRequestsException)
    with pytest.raises(TooManyRequestsError):
        s.runtime.invoke("Capped", {"folder": str(s.folder), "name": "two"})
    assert not (s.folder / "arrived-two").exists()
    # And once the first is done the function takes invocations again
    s.release()
    assert first.result(WAIT)["released"]
    assert s.runtime.invoke("Capped", {"folder": str(s.folder), "name": "three"})["released"]


def test_event_invocations_beyond_the_reserved_concurrency_wait_instead_of_failing(
    tmp_path: Path, scene: Callable[..., Scene]
) -> None:
    # Given a function reserved to one execution, busy with a synchronous invocation
    s = scene({"Capped": spec(tmp_path, "Capped", reserved=1)})
    first = s.start("Capped", "one")
    assert s.arrived("one")
    # When an event (asynchronous) invocation comes meanwhile
    s.runtime.invoke_async("Capped", {"folder": str(s.folder), "name": "queued"}, "test")
    # Then Lambda keeps it queued and runs it once the function is free
    assert not s.arrived("queued", within=0.3)
    s.release()
    first.result(WAIT)
    assert s.arrived("queued")


def test_each_environment_has_only_its_own_functions_variables(tmp_path: Path, scene: Callable[..., Scene]) -> None:
    # Given two functions with different values for the same variable, one with a variable the
    # other lacks
    s = scene(
        {"Red": spec(tmp_path, "Red"), "Blue": spec(tmp_path, "Blue")},
        Red={"COLOUR": "red", "OTHER_COLOUR": "crimson"},
        Blue={"COLOUR": "blue"},
    )
    s.release()
    # When both run at the same time
    red = s.pool.submit(s.runtime.invoke, "Red", {"folder": str(s.folder), "name": "r"})
    blue = s.pool.submit(s.runtime.invoke, "Blue", {"folder": str(s.folder), "name": "b"})
    # Then each saw its own value at INIT, and none of the other's variables
    assert (red.result(WAIT)["colour"], red.result(WAIT)["other"]) == ("red", "crimson")
    assert (blue.result(WAIT)["colour"], blue.result(WAIT)["other"]) == ("blue", None)


def test_an_environment_that_dies_fails_its_invocation_and_is_replaced(
    tmp_path: Path, scene: Callable[..., Scene]
) -> None:
    # Given a function with one warm environment
    s = scene({"Fragile": spec(tmp_path, "Fragile")})
    s.release()
    before = s.runtime.invoke("Fragile", {"folder": str(s.folder), "name": "a"})["pid"]
    # When its process exits mid-invocation
    with pytest.raises(FunctionError) as failure:
        s.runtime.invoke("Fragile", {"exit": True})
    # Then the invocation fails as Lambda reports it, and the next one gets a fresh environment
    assert failure.value.error_type == "Runtime.ExitError"
    after = s.runtime.invoke("Fragile", {"folder": str(s.folder), "name": "b"})["pid"]
    assert after != before


def test_the_server_keeps_a_clients_connection_alive_across_requests() -> None:
    # Given the local HTTP server with an app that reports the client's port
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(environ["REMOTE_PORT"]).encode()]

    server = ServerThread(app, "127.0.0.1", 0, "test").start()
    try:
        # When one client (a pooled session, as the Pi's and the dashboard's are) asks three times
        with requests.Session() as session:
            answers = [session.get(server.url, timeout=WAIT) for _ in range(3)]
        # Then all three came over one TCP connection, which the server never asked to close
        assert len({answer.text for answer in answers}) == 1
        assert all(answer.headers.get("Connection", "").lower() != "close" for answer in answers)
    finally:
        server.stop()


def test_the_server_serves_requests_concurrently() -> None:
    # Given the local HTTP server with an app whose requests wait for each other
    both_in = threading.Barrier(2, timeout=WAIT)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        both_in.wait()  # breaks (BrokenBarrierError -> 500) unless two requests are inside at once
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = ServerThread(app, "127.0.0.1", 0, "test").start()
    try:
        # When two clients ask at once
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: requests.get(server.url, timeout=WAIT * 2), range(2)))
        # Then both are answered
        assert [answer.status_code for answer in answers] == [200, 200]
    finally:
        server.stop()


def test_the_server_stops_cleanly_while_answering() -> None:
    # Given a server answering a client that asks back to back (its loop woken by every response)
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    def ask(server: ServerThread, stop: threading.Event) -> None:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
        try:
            while not stop.is_set():
                connection.request("GET", "/")
                connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            return  # the server went away under it: expected
        finally:
            connection.close()

    # When it is stopped mid-stream, many times over, threads switching as often as they can (the
    # stop raced the loop: the loop could run the stop's thunk before the stop's write woke it)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _stop_mid_stream(app, ask)
    finally:
        sys.setswitchinterval(switch)


def _stop_mid_stream(app: Any, ask: Callable[[ServerThread, threading.Event], None]) -> None:
    for _ in range(100):
        server = ServerThread(app, "127.0.0.1", 0, "test", threads=2).start()
        stop = threading.Event()
        client = threading.Thread(target=ask, args=(server, stop))
        client.start()
        time.sleep(0.005)
        try:
            # Then every stop returns without an error
            server.stop()
        finally:
            stop.set()
            client.join(WAIT)
        # and the server no longer listens
        with pytest.raises(OSError):
            socket.create_connection((server.host, server.port), timeout=WAIT).close()
