"""Fixtures for the device tests (the classes behind them live in `device_testkit`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from device_testkit import BrokerThread, IngestGateway

from gasmon.adapters.sqlite_store import SqliteReadingStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteReadingStore]:
    reading_store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    yield reading_store
    reading_store.close()


@pytest.fixture
def gateway(store: SqliteReadingStore) -> Iterator[IngestGateway]:
    """The real ingest handler over HTTP on 127.0.0.1, on the real clock."""
    server = IngestGateway(store=store, clock=lambda: datetime.now(UTC))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerThread]:
    """One plain-TCP broker for the whole session (starting one takes about a second)."""
    thread = BrokerThread()
    yield thread
    thread.stop()
