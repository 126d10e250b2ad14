"""Fixtures for the device tests (the classes behind them live in `device_testkit`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from device_testkit import API_KEY, BrokerThread, IngestGateway

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


@pytest.fixture
def device_env(tmp_path, monkeypatch, gateway) -> Path:  # type: ignore[no-untyped-def]
    config = tmp_path / "device.toml"
    config.write_text('groupid = "7"\ngps = "37.61, 126.99"\ninterval_seconds = 0.02\n')
    queue = tmp_path / "state" / "queue.sqlite3"
    monkeypatch.setenv("GASMON_CONFIG", str(config))
    monkeypatch.setenv("GASMON_ENDPOINT", gateway.url)
    monkeypatch.setenv("GASMON_API_KEY", API_KEY)
    monkeypatch.setenv("GASMON_QUEUE_PATH", str(queue))
    return queue
