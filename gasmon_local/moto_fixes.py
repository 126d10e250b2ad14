"""Fixes to moto for the local stack: DynamoDB transactions as cheap as one write, and a request
dispatcher that remembers which service a host is.

`CachedDispatcher`: moto's `DomainDispatcherApplication` works out, on every request and under
one lock, which backend serves the request's host: it lists moto's package directory
(`os.listdir` and a `stat` of each of its ~200 entries) and, for a host that is not a module name
(`firehose.us-east-1.amazonaws.com`), tries the URL patterns of every backend in turn. That was
0.3 ms of each 1 ms moto spent on a call here. The answer depends on the host alone, so it is
kept per host (a bounded number of them); the lookup itself is moto's.

Transactions:

moto 5.2's `TransactWriteItems` backs up every table the transaction names with
`copy.deepcopy(table)` before applying it, once per item, so that it can put the whole table back
if an item fails. The cost grows with the table: about 5 ms for a two-item transaction on an
empty table, 20 ms at 300 items, 55 ms at 1,000 (this machine). The alarm adapter opens and
clears every alarm with a two-item transaction (state + episode), and the alarm table only grows
in a long `make local` run, so without this the POST-to-warning latency climbs with every alarm.

`install()` makes the backup the items the transaction names instead of their tables: before the
transaction each named item is copied (or noted absent), and if moto raises, those items are put
back and the error re-raised. A transaction writes only the items it names, so this restores the
same state moto's own rollback does. moto's whole-table copy is turned into a no-op (its rollback
then assigns each table to itself). Nothing here ships in a Lambda artifact; in AWS, DynamoDB
does transactions itself. tests/integration/test_local_moto_fixes.py checks rollback on moto with the fix,
and that moto without it still copies tables (when a moto release stops doing that, that test
fails and this module can go).
"""

from __future__ import annotations

import copy
import functools
import logging
import types
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

log = logging.getLogger("aws")

_ORIGINAL = DynamoDBBackend.transact_write_items
_WRITES = ("Put", "Update", "Delete")


def _deepcopy_except_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


# What moto's DynamoDB module sees as `copy`: the real module, but tables are not copied.
_COPY_WITHOUT_TABLES = types.SimpleNamespace(**{**vars(copy), "deepcopy": _deepcopy_except_tables})

Backup = list[tuple[Table, Any, Any, Any]]  # (table, hash key, range key, the item before or None)


def _backup(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Backup:
    saved: Backup = []
    for entry in transact_items:
        for operation, request in entry.items():
            if operation not in _WRITES:
                continue  # ConditionCheck writes nothing; moto rejects what it does not know
            try:
                table = backend.get_table(request["TableName"])
                if operation == "Put":
                    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
                    key = {name: request["Item"][name] for name in names}
                else:
                    key = request["Key"]
                hash_key, range_key = backend.get_keys_value(table, key)
                before = table.get_item(hash_key, range_key)
            except Exception:  # noqa: BLE001  (moto answers a malformed item itself, having written nothing for it)
                continue
            saved.append((table, hash_key, range_key, copy.deepcopy(before)))
    return saved


def _restore(saved: Backup) -> None:
    for table, hash_key, range_key, before in reversed(saved):
        if table.has_range_key:
            bucket = table.items[hash_key]
            if before is None:
                bucket.pop(range_key, None)
            else:
                bucket[range_key] = before
        elif before is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = before


@functools.wraps(_ORIGINAL)
def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    saved = _backup(self, transact_items)
    try:
        _ORIGINAL(self, transact_items)
    except Exception:
        _restore(saved)
        raise


def install() -> bool:
    """Apply the fix (idempotent). False, with a log line, if this moto is not the one it fits."""
    if getattr(dynamodb_models, "copy", None) not in (copy, _COPY_WITHOUT_TABLES):
        log.warning("moto's DynamoDB is not the shape gasmon_local.moto_fixes expects; transactions stay slow")
        return False
    dynamodb_models.copy = _COPY_WITHOUT_TABLES  # type: ignore[assignment,attr-defined]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    return True


def installed() -> bool:
    return DynamoDBBackend.transact_write_items is _transact_write_items  # type: ignore[comparison-overlap]


def uninstall() -> None:
    """Put moto back as it was (tests)."""
    dynamodb_models.copy = copy  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = _ORIGINAL  # type: ignore[method-assign]


MAX_CACHED_HOSTS = 256  # hosts come from requests (the credential scope): keep the memory bounded


class CachedDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering the backend of each host it has resolved (see above)."""

    def __init__(self, create_app: Any) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        # Called under the dispatcher's lock (get_application), so the dict needs no lock of its own.
        if host in self._backends:
            return self._backends[host]
        backend = super().get_backend_for_host(host)
        if len(self._backends) < MAX_CACHED_HOSTS:
            self._backends[host] = backend
        return backend
