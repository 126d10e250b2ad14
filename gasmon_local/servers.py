"""Running a WSGI app on 127.0.0.1 in a background thread (werkzeug's threaded server)."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """werkzeug logs every request; the gateway writes its own one-line access log instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ServerThread:
    """A threaded HTTP server for one WSGI app; `port=0` picks a free port."""

    def __init__(self, app: Any, host: str, port: int, name: str) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # Bind here: werkzeug prints and calls sys.exit() when a port is taken; an OSError is
        # what the caller can report.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
            listener.listen(128)
        except OSError as exc:
            listener.close()
            raise OSError(exc.errno, f"{name} cannot listen on {host}:{port}: {exc.strerror}") from None
        self._listener = listener
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler, fd=listener.fileno()
        )
        self.server.daemon_threads = True  # type: ignore[attr-defined]  # ThreadingMixIn when threaded
        self.host = host
        self.port = int(listener.getsockname()[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._listener.close()
        self._thread.join(timeout=5)
