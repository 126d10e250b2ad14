"""One `make local` cannot hurt another: the data dir lock and the port check."""

import os
import socket
from pathlib import Path

import pytest

from gasmon_local.guard import DataDirLock, StackGuardError, check_ports


def test_a_second_lock_on_the_data_dir_names_the_holder_and_the_way_out(tmp_path: Path) -> None:
    # Given a data dir locked by this process
    first = DataDirLock(tmp_path).acquire()
    # When another stack tries the same data dir
    with pytest.raises(StackGuardError) as refused:
        DataDirLock(tmp_path).acquire()
    # Then it is told who holds it and how to run a second stack
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message
    assert "--data-dir" in message and "--http-port 0" in message
    # And once released, the data dir can be taken again
    first.release()
    DataDirLock(tmp_path).acquire().release()


def test_every_taken_port_is_named_with_its_flag() -> None:
    # Given two ports in use
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", 0))
        one.listen()
        two.bind(("127.0.0.1", 0))
        two.listen()
        taken_http, taken_mqtt = one.getsockname()[1], two.getsockname()[1]
        # When a stack asks for both, plus free ones (0 is never checked)
        with pytest.raises(StackGuardError) as refused:
            check_ports("127.0.0.1", [("--http-port", taken_http), ("--mqtt-port", taken_mqtt), ("--aws-port", 0)])
    # Then both are named, with the flags that move them
    message = str(refused.value)
    assert f"--http-port {taken_http}" in message and f"--mqtt-port {taken_mqtt}" in message
    assert "--aws-port" not in message.split(";")[0]
    assert '--http-port 0 --mqtt-port 0"' in message
