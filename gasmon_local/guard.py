"""What keeps one `make local` from hurting another: a lock on the data dir and a port check.

Two stacks on one data dir would share one SQLite file, one DynamoDB snapshot and one
endpoints.json, and the second used to delete the first's endpoints.json before failing on a
port. Now the data dir is locked first (`flock`, released by the kernel even on `kill -9`), and
only the holder of the lock writes or removes endpoints.json. Every port asked for is checked
before anything starts, so a clash names every taken port and the flags to pick others.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterable
from pathlib import Path

LOCK_NAME = "gasmon-local.lock"


class StackGuardError(RuntimeError):
    """The stack cannot start here; the message says why and what to run instead."""


class DataDirLock:
    """An exclusive lock on `<data_dir>/gasmon-local.lock`, holding the holder's pid."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._descriptor: int | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock or raise `StackGuardError` naming the pid that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            data_dir = self.path.parent
            raise StackGuardError(
                f"{data_dir} is in use by another gasmon-local (pid {holder}); stop it (Ctrl-C), or run a "
                f'second stack with its own data dir and free ports: make local ARGS="--data-dir {data_dir}-2 '
                '--http-port 0 --mqtt-port 0 --mqtts-port 0 --iot-data-port 0 --aws-port 0"'
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        if self._descriptor is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._descriptor, 0)
        os.close(self._descriptor)  # closing drops the flock
        self._descriptor = None


def taken_ports(host: str, ports: Iterable[tuple[str, int]]) -> list[str]:
    """`"--flag N"` for each non-zero port that cannot be bound on `host` now."""
    taken = []
    for flag, port in ports:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                taken.append(f"{flag} {port}")
    return taken


def check_ports(host: str, ports: Iterable[tuple[str, int]]) -> None:
    """Raise `StackGuardError` naming every taken port and how to choose others."""
    taken = taken_ports(host, ports)
    if taken:
        flags = " ".join(f"{item.split()[0]} 0" for item in taken)
        raise StackGuardError(
            f"ports in use on {host}: {', '.join(taken)} (another gasmon-local, or another program); "
            f'pick others, or 0 for free ones: make local ARGS="{flags}"'
        )
