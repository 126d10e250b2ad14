"""gasmon_local.moto_fixes: transactions that no longer copy whole tables, and still roll back."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models.table import Table

from gasmon.adapters.dynamodb_alarms import table_definition
from gasmon_local import moto_fixes

TABLE = "alarms"
OTHER = "other"


@pytest.fixture
def dynamodb(fake_aws: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(**table_definition(TABLE))
        client.create_table(
            TableName=OTHER,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        for n in range(20):  # something in the table for a whole-table copy to copy
            client.put_item(TableName=TABLE, Item={"pk": {"S": f"DEVICE#d{n}"}, "sk": {"S": "STATE#no2"}})
        yield client


@pytest.fixture
def fixed() -> Iterator[None]:
    was = moto_fixes.installed()
    assert moto_fixes.install()
    yield
    if not was:
        moto_fixes.uninstall()


@pytest.fixture
def unfixed() -> Iterator[None]:
    """moto as released (a local stack started earlier in this process installed the fix)."""
    was = moto_fixes.installed()
    moto_fixes.uninstall()
    yield
    if was:
        moto_fixes.install()


@pytest.fixture
def table_copies(monkeypatch: pytest.MonkeyPatch) -> list[Table]:
    """Every deep copy of a moto Table, as it happens."""
    copies: list[Table] = []

    def counted(self: Table, memo: dict[int, Any]) -> Table:
        copies.append(self)
        clone = Table.__new__(Table)
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))  # what deepcopy does by default
        return clone

    monkeypatch.setattr(Table, "__deepcopy__", counted, raising=False)
    return copies


def put(pk: str, sk: str, **extra: str) -> dict[str, Any]:
    item = {"pk": {"S": pk}, "sk": {"S": sk}} | {name: {"S": value} for name, value in extra.items()}
    return {"Put": {"TableName": TABLE, "Item": item}}


def get(client: Any, pk: str, sk: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
    return item


def test_moto_without_the_fix_still_copies_whole_tables(
    dynamodb: Any, unfixed: None, table_copies: list[Table]
) -> None:
    """Why the fix exists; when a moto release stops copying tables, this fails and the fix can go."""
    dynamodb.transact_write_items(TransactItems=[put("DEVICE#x", "STATE#no2"), put("DEVICE#x", "ALARM#1")])
    assert len(table_copies) == 2


def test_a_transaction_copies_no_table_with_the_fix(dynamodb: Any, fixed: None, table_copies: list[Table]) -> None:
    dynamodb.transact_write_items(TransactItems=[put("DEVICE#x", "STATE#no2"), put("DEVICE#x", "ALARM#1")])
    assert table_copies == []
    assert get(dynamodb, "DEVICE#x", "STATE#no2") is not None
    assert get(dynamodb, "DEVICE#x", "ALARM#1") is not None


def test_a_failed_condition_rolls_back_every_item_of_the_transaction(dynamodb: Any, fixed: None) -> None:
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "DEVICE#x"}, "sk": {"S": "OLD"}, "v": {"S": "before"}})
    dynamodb.put_item(TableName=OTHER, Item={"id": {"S": "a"}, "v": {"S": "before"}})
    failing = put("DEVICE#d3", "STATE#no2")
    failing["Put"]["ConditionExpression"] = "attribute_not_exists(pk)"  # d3's state exists: fails
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(
            TransactItems=[
                put("DEVICE#x", "NEW"),  # absent before: must be gone again
                put("DEVICE#x", "OLD", v="after"),  # overwritten: must be as it was
                {"Put": {"TableName": OTHER, "Item": {"id": {"S": "a"}, "v": {"S": "after"}}}},
                {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "DEVICE#d1"}, "sk": {"S": "STATE#no2"}}}},
                failing,
            ]
        )
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert get(dynamodb, "DEVICE#x", "NEW") is None
    assert get(dynamodb, "DEVICE#x", "OLD") == {"pk": {"S": "DEVICE#x"}, "sk": {"S": "OLD"}, "v": {"S": "before"}}
    assert dynamodb.get_item(TableName=OTHER, Key={"id": {"S": "a"}})["Item"]["v"] == {"S": "before"}
    assert get(dynamodb, "DEVICE#d1", "STATE#no2") is not None
    assert dynamodb.scan(TableName=TABLE, Select="COUNT")["Count"] == 21


def test_an_update_rolled_back_leaves_the_item_unchanged(dynamodb: Any, fixed: None) -> None:
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "DEVICE#x"}, "sk": {"S": "S"}, "n": {"N": "1"}})
    update = {
        "Update": {
            "TableName": TABLE,
            "Key": {"pk": {"S": "DEVICE#x"}, "sk": {"S": "S"}},
            "UpdateExpression": "SET n = n + :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }
    failing = put("DEVICE#d0", "STATE#no2")
    failing["Put"]["ConditionExpression"] = "attribute_not_exists(pk)"
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(TransactItems=[update, failing])
    assert get(dynamodb, "DEVICE#x", "S") == {"pk": {"S": "DEVICE#x"}, "sk": {"S": "S"}, "n": {"N": "1"}}


def test_the_same_item_twice_is_refused_and_nothing_is_written(dynamodb: Any, fixed: None) -> None:
    with pytest.raises(ClientError):
        dynamodb.transact_write_items(TransactItems=[put("DEVICE#y", "S", v="1"), put("DEVICE#y", "S", v="2")])
    assert get(dynamodb, "DEVICE#y", "S") is None


def test_install_is_idempotent_and_uninstall_restores_moto(
    dynamodb: Any, unfixed: None, table_copies: list[Table]
) -> None:
    assert moto_fixes.install()
    assert moto_fixes.install()
    moto_fixes.uninstall()
    dynamodb.transact_write_items(TransactItems=[put("DEVICE#z", "S")])
    assert len(table_copies) == 1
