"""Stopping the local IoT Core never waits on a client that does not hang up."""

from __future__ import annotations

import asyncio
import socket

from gasmon_local.broker import IotCore
from gasmon_local.lifecycle import VersionCounter
from gasmon_local.shadows import ShadowStore


def test_stop_closes_a_client_that_never_sends_connect_or_hangs_up() -> None:
    async def scenario() -> None:
        # Given a running broker and a client that opened a TCP connection and then went silent
        core = IotCore(ShadowStore(), VersionCounter(), port=0)
        await core.start()
        silent = socket.create_connection(("127.0.0.1", core.port))
        try:
            await asyncio.sleep(0.2)
            # When the stack stops the broker, Then the stop finishes (without the grace period's
            # close it waited on the connection for ever: asyncio.Server.wait_closed since 3.12)
            await asyncio.wait_for(core.stop(grace=0.5), 15)
            # And the silent client's connection was closed by the broker
            silent.settimeout(5)
            assert silent.recv(1) == b""
        finally:
            silent.close()

    asyncio.run(scenario())
