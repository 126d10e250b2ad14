"""`gasmon-admin reindex-seed` against the spec-checked fake cluster (tests/opensearch_fake.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gasmon.adapters.opensearch_store import OpenSearchReadingStore, read_target, to_document
from gasmon.readings import reading_id
from gasmon_admin.reindex_seed import ReindexError, add_parser, reindex_seed, run
from tests.integration.test_sqlite_store import make_readings
from tests.opensearch_fake import FakeCluster, running_cluster


def seed_document(value: str, createdtime: str) -> dict[str, Any]:
    """A document as the seed's Lambda indexed it: the posted document plus `date`, values as strings."""
    gas = {"sensorid": "0006", "sensortype": "9", "value": value, "createdtime": createdtime}
    return {"groupid": "2", "gps": "37.61002501514269, 126.99636868892937", "no2": gas, "date": "2021-09-03 18:14:52"}


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    yield from running_cluster()


def store_on(url: str) -> OpenSearchReadingStore:
    return OpenSearchReadingStore(url, sign_requests=False, sleep=lambda _: None)


def test_seed_documents_become_readings_in_daily_indices_once_however_often_it_runs(cluster: Any) -> None:
    # Given a seed index of 25 documents (one not a reading at all)
    state, url = cluster
    docs = {f"s{i}": seed_document(f"{50 + i}.00", f"2021-09-03 18:{i:02d}:49") for i in range(24)}
    docs["junk"] = {"hello": "world"}
    state.add_seed_index("gasdetect", docs)
    # When reindex-seed runs in pages of 10, twice
    first = reindex_seed(store_on(url), batch_size=10)
    second = reindex_seed(store_on(url), batch_size=10)
    # Then the 24 readings are in their day's index with the ids ingest gives, numbers as numbers
    assert (first.documents, first.created, first.already_there, len(first.skipped)) == (25, 24, 0, 1)
    assert (second.created, second.already_there) == (0, 24)
    assert first.skipped[0].startswith("junk:")
    daily = state.indices["gasdetect-2021.09.03"].docs  # 18:xx in Asia/Seoul is 09:xx UTC
    first_id = reading_id("2", "0006", "no2", datetime(2021, 9, 3, 9, 0, 49, tzinfo=UTC))
    assert len(daily) == 24 and daily[first_id]["value"] == 50.0
    # And the seed index is left as it was, its scrolls cleared
    assert len(state.indices["gasdetect"].docs) == 25 and not state.scrolls


def test_pre_daily_gasmon_documents_are_read_back_as_the_readings_they_hold(cluster: Any) -> None:
    state, url = cluster
    readings = make_readings(3)
    state.add_seed_index("gasdetect", {r.reading_id: to_document(r) for r in readings})
    state.indices["gasdetect"].mappings = {
        "properties": {
            "reading_id": {"type": "keyword"},
            "device": {"type": "keyword"},
            "gas": {"type": "keyword"},
            "date": {"type": "date"},
            "value": {"type": "float"},
        }
    }
    report = reindex_seed(store_on(url))
    assert report.created == 3 and not report.skipped
    assert set(state.indices["gasdetect-2026.01.01"].docs) == {r.reading_id for r in readings}


def test_delete_seed_replaces_the_old_index_by_the_alias_only_when_everything_was_copied(cluster: Any) -> None:
    # Given a seed index with one document that is not a reading
    state, url = cluster
    state.add_seed_index("gasdetect", {"s1": seed_document("52.00", "2021-09-03 18:14:49"), "junk": {"a": "b"}})
    # When reindex-seed is asked to delete it, it refuses and keeps the index
    with pytest.raises(ReindexError, match="not copied"):
        reindex_seed(store_on(url), delete_seed=True)
    assert "gasdetect" in state.indices
    # When the junk is gone and it runs again
    del state.indices["gasdetect"].docs["junk"]
    report = reindex_seed(store_on(url), delete_seed=True)
    # Then the old index is gone and `gasdetect` is the alias over the daily indices
    assert report.deleted_seed and "gasdetect" not in state.indices
    assert state.indices["gasdetect-2021.09.03"].aliases == {"gasdetect"}
    assert state.resolve(read_target("gasdetect")) == ["gasdetect-2021.09.03"]


def test_the_command_line_reports_and_exits_non_zero_when_something_was_skipped(
    cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = cluster
    state.add_seed_index("gasdetect", {"s1": seed_document("52.00", "2021-09-03 18:14:49"), "junk": {"a": "b"}})
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["reindex-seed", "--endpoint", url, "--no-sign"])
    assert run(args) == 1
    assert "1 readings copied" in capsys.readouterr().out
    del state.indices["gasdetect"].docs["junk"]
    assert run(args) == 0


def test_no_old_index_is_a_clear_error(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, url = cluster
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert run(parser.parse_args(["reindex-seed", "--endpoint", url, "--no-sign"])) == 1
    assert "there is no index named gasdetect" in capsys.readouterr().err


def test_gasmon_admin_runs_reindex_seed_as_one_of_its_commands(
    cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a seed index on the cluster
    state, url = cluster
    state.add_seed_index("gasdetect", {"s1": seed_document("52.00", "2021-09-03 18:14:49")})
    # When the operator runs it through gasmon-admin (it needs the domain only, not the stack's registry)
    from gasmon_admin.cli import main

    code = main(["--stack", "gasmon", "reindex-seed", "--endpoint", url, "--no-sign"])
    # Then the readings are copied and the command succeeds
    assert code == 0
    assert "1 readings copied" in capsys.readouterr().out
