"""The device directory over the reading store (SQLite here, OpenSearch in AWS): group and place in e-mails."""

from datetime import UTC, datetime
from pathlib import Path

from gasmon.adapters.device_directory import NullDeviceDirectory, ReadingsDeviceDirectory, build_device_directory
from gasmon.adapters.opensearch_store import OpenSearchReadingStore
from gasmon.adapters.sqlite_store import SqliteReadingStore
from gasmon.errors import StoreUnavailableError
from gasmon.ingest import IngestPolicy, validate_document
from gasmon.settings import CheckPresenceSettings

NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def store_with_readings(path: Path) -> SqliteReadingStore:
    store = SqliteReadingStore(path)
    for created, gps in [("2025-03-14 17:50:00", "37.5, 127.0"), ("2025-03-14 17:59:30", "37.61, 126.99")]:
        document = {
            "groupid": "2",
            "gps": gps,
            "co": {"sensorid": "0005", "sensortype": "8", "value": "26.20", "createdtime": created},
        }
        store.put_readings(validate_document(document, 0, "", IngestPolicy(), NOW).readings)
    return store


def test_mapped_device_gets_the_group_and_place_of_its_newest_reading(tmp_path: Path) -> None:
    # Given readings of group 2 and a mapping RPI -> 2
    directory = ReadingsDeviceDirectory(store_with_readings(tmp_path / "r.sqlite3"), {"RPI": "2"})
    # When RPI is looked up
    info = directory.describe("RPI", "RPI")
    # Then the newest reading's group, place and time come back
    assert info is not None
    assert (info.groupid, info.gps, info.last_reading_at) == (
        "2",
        "37.61, 126.99",
        datetime(2025, 3, 14, 8, 59, 30, tzinfo=UTC),
    )


def test_device_named_like_its_group_is_found_without_a_mapping(tmp_path: Path) -> None:
    directory = ReadingsDeviceDirectory(store_with_readings(tmp_path / "r.sqlite3"))
    info = directory.describe("2", "2")
    assert info is not None and info.groupid == "2"


def test_device_without_readings_is_unknown(tmp_path: Path) -> None:
    directory = ReadingsDeviceDirectory(store_with_readings(tmp_path / "r.sqlite3"))
    assert directory.describe("RPI", "RPI") is None


def test_settings_choose_the_directory(tmp_path: Path) -> None:
    sqlite = CheckPresenceSettings(device_directory="sqlite", sqlite_path=str(tmp_path / "r.sqlite3"))
    assert isinstance(build_device_directory(sqlite), ReadingsDeviceDirectory)
    assert isinstance(build_device_directory(CheckPresenceSettings()), NullDeviceDirectory)


def test_settings_choose_opensearch_in_aws() -> None:
    settings = CheckPresenceSettings(
        device_directory="opensearch", opensearch_endpoint="https://search-x.es.amazonaws.com"
    )
    directory = build_device_directory(settings)
    assert isinstance(directory, ReadingsDeviceDirectory)
    assert isinstance(directory.store, OpenSearchReadingStore)
    assert directory.store.endpoint == "https://search-x.es.amazonaws.com"


def test_opensearch_without_an_endpoint_sends_emails_without_the_group() -> None:
    settings = CheckPresenceSettings(device_directory="opensearch", opensearch_endpoint="")
    assert isinstance(build_device_directory(settings), NullDeviceDirectory)


class _DownStore:
    def latest_reading(self, devices: object) -> None:
        raise StoreUnavailableError("OpenSearch is unreachable", retry_after_seconds=5)


def test_a_store_that_cannot_answer_leaves_the_group_out_rather_than_the_email() -> None:
    assert ReadingsDeviceDirectory(_DownStore()).describe("RPI", "RPI") is None
