"""What durability across `kill -9` costs the local stack's DynamoDB writes (gasmon_local.dynamodb_journal).

Three moto servers run in this process: one with the journal as `make local` runs it (append +
fdatasync before the answer), one with the journal flushed to the OS only (enough for `kill -9`,
not for a power cut), one without; each round sends the same write to all three in random order,
so load on the machine hits them alike:

- PutItem latency p50 and p99, journaled vs not, and flushed-only vs not;
- a conditional UpdateItem (what the alarm and presence adapters send), journaled vs not;
- the rejected alternative, a snapshot of a 1,000-item table after each write (scan, write, fsync,
  rename), beside a journaled write: the target is that the journal costs less.

Run alone with `python -m bench dynamodb_journal`; it takes about 30 s on a loaded machine.
"""

from __future__ import annotations

import functools
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gasmon_local import aws
from gasmon_local.dynamodb_journal import DynamoDbJournal

REGION = "ap-northeast-2"
WRITES = 300
SNAPSHOTS = 8
SNAPSHOT_ITEMS = 1_000


def _table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


def _rounds(calls: dict[str, Callable[[int], object]]) -> dict[str, list[float]]:
    """`WRITES` rounds; each round times one call of each kind, in a random order."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    shuffler = random.Random(7)
    for i in range(WRITES):
        for name in shuffler.sample(sorted(calls), k=len(calls)):
            samples[name].append(_timed(functools.partial(calls[name], i)))
    return samples


def _snapshot(dynamodb: Any, table: str, path: Path) -> None:
    """What a snapshot after each write would do: the table read in full, written aside, synced, renamed."""
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        items.extend(page["Items"])
    scratch = path.with_suffix(".tmp")
    with scratch.open("w") as file:
        json.dump({"tables": {table: items}}, file)
        file.flush()
        os.fsync(file.fileno())
    scratch.replace(path)


def run() -> list[dict[str, Any]]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with tempfile.TemporaryDirectory(prefix="gasmon-bench-journal-", dir=Path.cwd()) as scratch:
        journals = {
            "journaled": DynamoDbJournal(Path(scratch) / "journal.jsonl"),
            "flushed": DynamoDbJournal(Path(scratch) / "flushed.jsonl", sync=False),
            "plain": None,
        }
        servers = {name: aws.MotoServer(port=0, journal=journal) for name, journal in journals.items()}
        try:
            clients = {}
            for name, server in servers.items():
                clients[name] = aws.client("dynamodb", server.start(), REGION)
                _table(clients[name], f"bench-{name}")  # moto's tables are per process: one name per server
                journal = journals[name]
                if journal is not None:
                    journal.recover(0)

            def put(name: str) -> Callable[[int], object]:
                return lambda i: clients[name].put_item(
                    TableName=f"bench-{name}",
                    Item={"pk": {"S": f"d{i}"}, "v": {"N": "1"}, "s": {"S": "x" * 200}},
                )

            def update(name: str) -> Callable[[int], object]:
                return lambda i: clients[name].update_item(
                    TableName=f"bench-{name}",
                    Key={"pk": {"S": f"d{i}"}},
                    UpdateExpression="SET v = v + :one",
                    ConditionExpression="v = :v",
                    ExpressionAttributeValues={":one": {"N": "1"}, ":v": {"N": "1"}},
                )

            puts = _rounds({name: put(name) for name in servers})
            updates = _rounds({name: update(name) for name in ("journaled", "plain")})
            journaled = journals["journaled"]
            assert journaled is not None and journaled.appended == 2 * WRITES  # every answered write

            plain = clients["plain"]
            _table(plain, "bench-snapshot")
            for start in range(0, SNAPSHOT_ITEMS, 25):
                batch = [
                    {"PutRequest": {"Item": {"pk": {"S": f"dev-{i}#no2"}, "s": {"S": "x" * 200}}}}
                    for i in range(start, start + 25)
                ]
                plain.batch_write_item(RequestItems={"bench-snapshot": batch})
            path = Path(scratch) / "snapshot.json"
            snapshots = [_timed(lambda: _snapshot(plain, "bench-snapshot", path)) for _ in range(SNAPSHOTS)]
        finally:
            for server in servers.values():
                server.stop()

    def row(metric: str, value: float, baseline: float, label: str, target: str) -> dict[str, Any]:
        return {
            "metric": metric,
            "value": round(value, 3),
            "unit": "ms",
            "baseline": round(baseline, 3),
            "baseline_label": label,
            "target": target,
        }

    median = statistics.median
    cheaper = "met" if median(puts["journaled"]) < median(snapshots) else "MISSED"
    return [
        row(
            "DynamoDB PutItem, journaled + fdatasync (p50)",
            median(puts["journaled"]),
            median(puts["plain"]),
            "moto server without the journal, interleaved, same run",
            "reported: the disk flush per write",
        ),  # fmt: skip
        row(
            "DynamoDB PutItem, journaled + fdatasync (p99)",
            _p(puts["journaled"], 99),
            _p(puts["plain"], 99),
            "moto server without the journal, interleaved, same run",
            "reported",
        ),  # fmt: skip
        row(
            "DynamoDB PutItem, journal flushed to the OS only (p50)",
            median(puts["flushed"]),
            median(puts["plain"]),
            "moto server without the journal, interleaved, same run",
            "reported: kill -9 safe, not power-cut safe",
        ),  # fmt: skip
        row(
            "DynamoDB conditional UpdateItem, journaled + fdatasync (p50)",
            median(updates["journaled"]),
            median(updates["plain"]),
            "moto server without the journal, interleaved, same run",
            "reported",
        ),  # fmt: skip
        row(
            f"snapshot after each write instead, {SNAPSHOT_ITEMS:,}-item table (p50)",
            median(snapshots),
            median(puts["journaled"]),
            "a journaled PutItem, same run",
            f"rejected if dearer than the journal: {cheaper}",
        ),  # fmt: skip
    ]


if __name__ == "__main__":
    for result in run():
        print(result)
