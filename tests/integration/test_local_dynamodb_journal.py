"""The local stack's DynamoDB journal, against moto's real server: what moto answered survives.

moto's tables live in this process's memory; a crash is simulated by dropping the table (moto
forgets its items) and starting over from the data directory, as `gasmon-local` does at start.
The end-to-end `kill -9` of the whole stack is in tests/e2e/test_local_kill9.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gasmon_local import aws
from gasmon_local.dynamodb_journal import DynamoDbJournal
from gasmon_local.functions import ROOT
from gasmon_local.template import Stack, StackContext

FIXTURE = ROOT / "tests" / "fixtures" / "presence" / "template.yaml"
TABLE = "gasmon-PresenceTable"
REGION = "eu-west-3"  # moto's state is per process: a region no other test module uses


class Local:
    """moto with a journal in `data_dir`, and the fixture template's tables created in it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.snapshot_dir = data_dir / "dynamodb"
        self.journal = DynamoDbJournal(self.snapshot_dir / "journal.jsonl")
        self.moto = aws.MotoServer(port=0, journal=self.journal)
        self.endpoint = self.moto.start()
        self.stack = Stack.from_file(FIXTURE, StackContext(aws_endpoint=self.endpoint, region=REGION), {})
        self.dynamodb = aws.client("dynamodb", self.endpoint, REGION)
        self.stopped = False

    def create(self) -> None:
        problems = aws.create_resources(self.stack, self.endpoint, self.snapshot_dir, self.journal)
        assert not [p for p in problems if TABLE in p], problems

    def items(self) -> dict[str, dict[str, Any]]:
        return {item["clientId"]["S"]: item for item in self.dynamodb.scan(TableName=TABLE)["Items"]}

    def forget(self) -> None:
        """What a crash does to moto: every item gone (DeleteTable is not journaled)."""
        self.dynamodb.delete_table(TableName=TABLE)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for table in self.dynamodb.list_tables()["TableNames"]:
            self.dynamodb.delete_table(TableName=table)
        self.moto.stop()


@pytest.fixture
def local(tmp_path: Path, fake_aws: None) -> Iterator[Local]:
    running = Local(tmp_path)
    try:
        running.create()
        yield running
    finally:
        running.stop()


def restart(local: Local) -> Local:
    """A new stack on the same data directory, after moto lost everything (as after `kill -9`)."""
    local.forget()
    local.stopped = True
    local.moto.stop()
    again = Local(local.data_dir)
    again.create()
    return again


def key(client_id: str) -> dict[str, Any]:
    return {"clientId": {"S": client_id}}


def every_kind_of_write(dynamodb: Any) -> None:
    dynamodb.put_item(TableName=TABLE, Item={**key("a"), "n": {"N": "1"}})
    dynamodb.update_item(
        TableName=TABLE, Key=key("a"), UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}
    )
    dynamodb.put_item(TableName=TABLE, Item={**key("gone"), "n": {"N": "0"}})
    dynamodb.delete_item(TableName=TABLE, Key=key("gone"))
    dynamodb.batch_write_item(
        RequestItems={
            TABLE: [{"PutRequest": {"Item": {**key(f"b{i}"), "bin": {"B": bytes([i, 255])}}}} for i in range(3)]
        }
    )
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {**key("t"), "s": {"S": "é ü"}}}},
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": key("a"),
                    "UpdateExpression": "SET v = :v",
                    "ConditionExpression": "n = :two",
                    "ExpressionAttributeValues": {":v": {"S": "after"}, ":two": {"N": "2"}},
                }
            },
        ]
    )
    # A refused conditional write changes nothing (and must not be replayed as if it had)
    with pytest.raises(ClientError):
        dynamodb.put_item(
            TableName=TABLE, Item={**key("a"), "n": {"N": "99"}}, ConditionExpression="attribute_not_exists(clientId)"
        )


def test_every_answered_write_survives_a_crash(local: Local) -> None:
    # Given puts, an update (a counter), a delete, a batch, a transaction and a refused conditional put
    every_kind_of_write(local.dynamodb)
    before = local.items()
    assert before["a"]["n"] == {"N": "2"} and before["a"]["v"] == {"S": "after"} and "gone" not in before
    # When moto loses its memory without a clean stop, and the stack starts on the same data dir
    again = restart(local)
    try:
        # Then every item is exactly as it was answered
        assert again.items() == before
    finally:
        again.stop()


def test_a_clean_stop_folds_the_journal_into_the_snapshot(local: Local) -> None:
    # Given a counter written three times, and a clean stop
    local.dynamodb.put_item(TableName=TABLE, Item={**key("c"), "n": {"N": "0"}})
    for _ in range(3):
        local.dynamodb.update_item(
            TableName=TABLE, Key=key("c"), UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}
        )
    aws.save_tables(local.stack, local.endpoint, local.snapshot_dir, local.journal)
    # Then the snapshot holds the writes and the journal is empty
    snapshot = json.loads((local.snapshot_dir / aws.SNAPSHOT_FILE).read_text())
    assert snapshot["journal_seq"] == 4
    assert local.journal.path.read_bytes() == b""
    # When one more write follows and the stack crashes, Then the restart has all of them, once
    local.dynamodb.update_item(
        TableName=TABLE, Key=key("c"), UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}
    )
    again = restart(local)
    try:
        assert again.items()["c"]["n"] == {"N": "4"}
    finally:
        again.stop()


def test_a_crash_between_snapshot_and_truncation_applies_nothing_twice(local: Local) -> None:
    # Given a counter incremented twice (ADD creates it), then a snapshot written but the journal
    # not yet emptied
    for _ in range(2):
        local.dynamodb.update_item(
            TableName=TABLE, Key=key("c"), UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}}
        )
    kept = local.journal.path.read_bytes()
    aws.save_tables(local.stack, local.endpoint, local.snapshot_dir, local.journal)
    local.journal.path.write_bytes(kept)  # as if the crash came right after the snapshot's rename
    # When the stack starts again
    again = restart(local)
    try:
        # Then the journal's records the snapshot already holds are skipped: the counter is 2, not 4
        assert again.items()["c"]["n"] == {"N": "2"}
    finally:
        again.stop()


def test_a_torn_last_record_is_cut_off_and_new_writes_follow_whole_ones(local: Local) -> None:
    # Given one answered write, then half a record (a crash in the middle of an append)
    local.dynamodb.put_item(TableName=TABLE, Item={**key("kept"), "n": {"N": "1"}})
    with local.journal.path.open("ab") as journal:
        journal.write(b'{"seq":2,"op":"PutItem","region":"eu-west-3","body":"{\\"TableName')
    # When the stack starts again and writes once more, then crashes again
    again = restart(local)
    again.dynamodb.put_item(TableName=TABLE, Item={**key("after"), "n": {"N": "2"}})
    third = restart(again)
    try:
        # Then both answered writes are there, and the journal is whole lines only
        assert set(third.items()) == {"kept", "after"}
        lines = third.journal.path.read_bytes().splitlines()
        assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    finally:
        third.stop()


def test_an_older_stacks_per_table_snapshot_is_still_loaded(tmp_path: Path, fake_aws: None) -> None:
    # Given a data directory from before the journal: `<table>.json` holding the items
    snapshot_dir = tmp_path / "dynamodb"
    snapshot_dir.mkdir()
    (snapshot_dir / f"{TABLE}.json").write_text(json.dumps([{**key("old"), "state": {"S": "x"}}]))
    # When the stack starts on it
    local = Local(tmp_path)
    try:
        local.create()
        # Then the items are back, and the next clean stop writes the new snapshot in their place
        assert set(local.items()) == {"old"}
        aws.save_tables(local.stack, local.endpoint, local.snapshot_dir, local.journal)
        assert not (snapshot_dir / f"{TABLE}.json").exists() and (snapshot_dir / aws.SNAPSHOT_FILE).exists()
    finally:
        local.stop()


def test_concurrent_writers_journal_every_write_once_in_the_order_moto_applied_them(local: Local) -> None:
    # Given a counter item and eight clients (as eight execution environments would be), each
    # with its own connection to moto's server
    local.dynamodb.put_item(TableName=TABLE, Item={**key("shared"), "n": {"N": "0"}})
    clients = [aws.client("dynamodb", local.endpoint, REGION) for _ in range(8)]

    def bump(client: Any) -> list[int]:
        seen = []
        for _ in range(15):
            answer = client.update_item(
                TableName=TABLE,
                Key=key("shared"),
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
            seen.append(int(answer["Attributes"]["n"]["N"]))
        return seen

    # When they all increment it at once
    with ThreadPoolExecutor(len(clients)) as pool:
        answers = [value for seen in pool.map(bump, clients) for value in seen]
    # Then moto answered each increment with a distinct count (none lost, none doubled)
    assert sorted(answers) == list(range(1, 8 * 15 + 1))
    # And after a crash the journal rebuilds exactly the count every client was told
    again = restart(local)
    try:
        assert again.items()["shared"]["n"] == {"N": str(8 * 15)}
    finally:
        again.stop()
