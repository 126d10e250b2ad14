"""Running a WSGI app on 127.0.0.1 in a background thread (waitress: HTTP/1.1 keep-alive, threads).

werkzeug's development server closes every connection after one response ("Connection: close"),
so each request paid a TCP handshake and a client's pooled connection was never reused. waitress
keeps connections alive as HTTP/1.1 says (and as API Gateway does) and hands requests to a pool
of worker threads, so slow requests (a function's cold start, say) do not hold up others.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

WORKER_THREADS = 32  # requests in progress at once: each mostly waits on a function's environment
IDLE_SECONDS = 60  # an idle keep-alive connection is closed after this


class ServerThread:
    """A threaded HTTP server for one WSGI app; `port=0` picks a free port."""

    def __init__(self, app: Any, host: str, port: int, name: str, threads: int = WORKER_THREADS) -> None:
        # waitress warns on every backlog of queued requests; the gateway logs its own lines.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        # Bind here: an OSError naming the server is what the caller can report.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
            listener.listen(128)
        except OSError as exc:
            listener.close()
            raise OSError(exc.errno, f"{name} cannot listen on {host}:{port}: {exc.strerror}") from None
        self._listener = listener
        self.server: Any = create_server(
            app,
            sockets=[listener],
            threads=threads,
            channel_timeout=IDLE_SECONDS,
            ident="gasmon-local",
            expose_tracebacks=False,
        )
        self.host = host
        self.port = int(listener.getsockname()[1])
        self._thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close open connections (which ends the server's loop), stop the workers."""
        # Closed from inside the server's loop (its trigger runs the thunk there): closing sockets
        # under a running select() from another thread fails it with EBADF. The thunk is queued
        # and the trigger pulled under the trigger's lock, which the loop takes to run thunks:
        # with waitress's own `pull_trigger(thunk)` a loop already awake (a response just sent)
        # could run the thunk, closing the trigger, before this thread's write to it, which then
        # failed with EBADF or, had the descriptor been reused meanwhile, wrote to another file.
        trigger = self.server.trigger
        with trigger.lock:
            trigger.thunks.append(lambda: wasyncore.close_all(self.server._map))
            trigger._physical_pull()
        self._thread.join(timeout=5)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        self._listener.close()
