"""DynamoDB writes in `make local` are durable once moto has answered them, even across `kill -9`.

moto keeps its tables in memory; `aws.save_tables` snapshots them only at a clean stop. This
module is a write-ahead journal in front of moto's server (a WSGI middleware): every mutating
DynamoDB request that moto answered with a 2xx is appended to `<data-dir>/dynamodb/journal.jsonl`
and flushed to disk (`fdatasync`) *before* its answer goes back, so a function never hears "done"
for a change that a crash can lose. At start the snapshot is loaded, then the journal's records
newer than the snapshot are replayed into moto in order; at a clean stop the snapshot takes them
in (it records the last journal sequence number it holds) and the journal is emptied.

Mutations are applied and journaled one at a time (a lock), so the journal's order is the order
moto applied them and a replay rebuilds the same state, conditional writes and counters included.
A request moto refused (a failed condition, a cancelled transaction) changed nothing and is not
journaled. A record torn by a crash mid-write belongs to a request that was never answered: it is
cut off at start, as the caller will retry it. Local-only: in AWS, DynamoDB is durable itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

log = logging.getLogger("aws")

TARGET_PREFIX = "DynamoDB_20120810."
# Every DynamoDB operation that can change an item (PartiQL's included, though gasmon uses none).
MUTATING_OPERATIONS = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)
_REGION = re.compile(r"Credential=[^/]*/[^/]*/([^/]+)/dynamodb/")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class DynamoDbJournal:
    """The journal file and the middleware that fills it; `sync=False` skips the disk flush (benches)."""

    def __init__(self, path: Path, sync: bool = True) -> None:
        self.path = path
        self.sync = sync
        self.seq = 0  # sequence number of the newest record (in the journal or the snapshot)
        self.appended = 0
        self._lock = threading.Lock()
        self._file: io.BufferedWriter | None = None
        self._app: WsgiApp | None = None
        self._suspended = False

    # ---- the middleware around moto's server ----

    def middleware(self, app: WsgiApp) -> WsgiApp:
        """Wrap moto's WSGI app: mutating DynamoDB requests are applied, journaled, then answered."""
        self._app = app

        def journaled(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
            operation = target.removeprefix(TARGET_PREFIX)
            if not target.startswith(TARGET_PREFIX) or operation not in MUTATING_OPERATIONS:
                return app(environ, start_response)
            body = _read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            answer: dict[str, Any] = {}

            def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
                answer["status"], answer["headers"] = status, headers
                return chunks.append

            with self._lock:
                chunks: list[bytes] = []
                result = app(environ, capture)
                try:
                    chunks.extend(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                if str(answer.get("status", "")).startswith("2") and not self._suspended:
                    self._append(operation, _region(environ), body)
            start_response(answer["status"], answer["headers"])
            return chunks

        return journaled

    def _append(self, operation: str, region: str, body: bytes) -> None:
        if self._file is None:
            self._open_for_append()
        assert self._file is not None
        self.seq += 1
        record = {"seq": self.seq, "op": operation, "region": region, "body": body.decode("utf-8")}
        self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._file.flush()
        if self.sync:
            os.fdatasync(self._file.fileno())
        self.appended += 1

    def _open_for_append(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    # ---- start: replay what the snapshot does not hold ----

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Writes inside are not journaled: loading the snapshot (it is the state, not a change)."""
        self._suspended = True
        try:
            yield
        finally:
            self._suspended = False

    def recover(self, snapshot_seq: int) -> int:
        """Replay the records newer than the snapshot into moto, in order; returns how many.

        A torn or unreadable tail (a crash mid-append) is cut off so that new records follow
        whole ones. Call once, after the tables exist and the snapshot is loaded.
        """
        records: list[dict[str, Any]] = []
        good_bytes = 0
        if self.path.exists():
            with self.path.open("rb") as journal:
                for line in journal:
                    try:
                        record = json.loads(line) if line.endswith(b"\n") else None
                    except ValueError:
                        record = None
                    if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
                        break
                    records.append(record)
                    good_bytes += len(line)
            if good_bytes < self.path.stat().st_size:
                log.warning("dynamodb journal: cut a torn record off at byte %d (never answered)", good_bytes)
                with self.path.open("r+b") as journal:
                    journal.truncate(good_bytes)
                    os.fsync(journal.fileno())
        pending = [record for record in records if record["seq"] > snapshot_seq]
        for record in pending:
            self._replay(record)
        self.seq = max([snapshot_seq, *(record["seq"] for record in records)])
        self._open_for_append()
        return len(pending)

    def _replay(self, record: dict[str, Any]) -> None:
        assert self._app is not None, "recover() needs the middleware installed in moto's server"
        environ = EnvironBuilder(
            method="POST",
            path="/",
            base_url="http://127.0.0.1/",
            data=str(record["body"]).encode("utf-8"),
            headers=Headers(
                {
                    "X-Amz-Target": f"{TARGET_PREFIX}{record['op']}",
                    "Content-Type": "application/x-amz-json-1.0",
                    # Only the region matters to moto (it picks the backend by the credential scope).
                    "Authorization": (
                        f"AWS4-HMAC-SHA256 Credential=replay/20200101/{record['region']}/dynamodb/aws4_request, "
                        "SignedHeaders=host, Signature=0"
                    ),
                }
            ),
        ).get_environ()
        status: list[str] = []

        def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            status.append(line)
            return lambda data: None

        result = self._app(environ, start_response)
        body = b"".join(result)
        if not status or not status[0].startswith("2"):
            # It succeeded once on this same state: say so loudly, and go on with the rest.
            seq, operation = record["seq"], record["op"]
            log.error("dynamodb journal: replay of #%s %s failed: %s %s", seq, operation, status, body[:300])

    # ---- clean stop: fold the journal into the snapshot ----

    @contextlib.contextmanager
    def compacting(self) -> Iterator[int]:
        """Hold every write while the snapshot is taken; yields the sequence number it will hold.

        When the block ends normally (the snapshot is safely on disk), the journal is emptied;
        if it raises, the journal is kept and replays on top of the previous snapshot.
        """
        with self._lock:
            yield self.seq
            if self._file is not None:
                self._file.close()
            with self.path.open("wb") as journal:
                os.fsync(journal.fileno())
            self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(stream.read(length)) if length > 0 else b""


def _region(environ: dict[str, Any]) -> str:
    match = _REGION.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return match.group(1) if match else "us-east-1"  # moto's default region, as moto itself falls back to
