"""`gasmon-admin reindex-seed`: copy the documents of an old `gasdetect` index into gasmon's daily indices.

A seed deployment's Lambda indexed each posted document as it came (values as strings, no
template) into one index named `gasdetect`; gasmon before daily indices wrote its own documents
there. Ingest leaves such an index alone (see `gasmon.adapters.opensearch_store`) and queries read
it beside the daily indices, but aggregations cannot use string values and the retention policy
never deletes it. This command reads it page by page (scroll), turns each document into gasmon
readings exactly as ingest would (a seed document is a posted document plus `date`; a gasmon
document is read back as the reading it holds), and stores them with the store's own `_bulk`
writes: the same deterministic ids, so running it twice stores nothing twice. Documents that are
not readings are counted and reported, never guessed at. With `--delete-seed`, once every
document was copied or was already there, the old index is deleted and the `gasdetect` alias is
put over the daily indices, which the index template then keeps up for new ones.

    gasmon-admin reindex-seed --endpoint https://search-....es.amazonaws.com [--index gasdetect]
        [--region ap-northeast-2] [--batch-size 500] [--delete-seed] [--no-sign]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from gasmon.adapters.opensearch_store import (
    DAILY_PATTERN,
    OpenSearchReadingStore,
    from_document,
    has_gasmon_mapping,
)
from gasmon.errors import StoreUnavailableError
from gasmon.ingest import IngestPolicy, validate_document
from gasmon.models import Reading

SCROLL_KEEPALIVE = "2m"
# Old documents are as old as they are: only the future bound of ingest's validation applies.
SEED_POLICY = IngestPolicy(max_age=timedelta(days=365 * 100))


@dataclass
class ReindexReport:
    """What one run did, for the operator."""

    documents: int = 0
    created: int = 0
    already_there: int = 0
    skipped: list[str] = field(default_factory=list)  # "<_id>: why"
    deleted_seed: bool = False

    def summary(self) -> str:
        lines = [
            f"read {self.documents} documents: {self.created} readings copied, "
            f"{self.already_there} already there, {len(self.skipped)} documents skipped"
        ]
        lines += [f"  skipped {line}" for line in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more")
        if self.deleted_seed:
            lines.append("the old index is deleted and the alias now covers the daily indices")
        return "\n".join(lines)


def readings_of(source: Mapping[str, Any], gasmon_document: bool, now: datetime) -> tuple[list[Reading], str]:
    """The readings one old document holds, or why it holds none."""
    if gasmon_document:
        try:
            return [from_document(source)], ""
        except (KeyError, TypeError, ValueError) as exc:
            return [], f"not a gasmon reading ({exc})"
    posted = {key: value for key, value in source.items() if key != "date"}
    validated = validate_document(posted, 0, "", SEED_POLICY, now)
    if validated.problems:
        return validated.readings, "; ".join(f"{p.path} {p.problem}" for p in validated.problems)
    return validated.readings, ""


def _pages(store: OpenSearchReadingStore, index: str, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    client = store.client
    body = {"size": batch_size, "sort": ["_doc"], "query": {"match_all": {}}}
    answer = store._call(lambda: client.search(index=index, body=body, scroll=SCROLL_KEEPALIVE))
    scroll_id = answer.get("_scroll_id")
    try:
        while answer["hits"]["hits"]:
            yield answer["hits"]["hits"]
            next_page = {"scroll_id": scroll_id, "scroll": SCROLL_KEEPALIVE}
            answer = store._call(partial(client.scroll, body=next_page))
            scroll_id = answer.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            store._call(lambda: client.clear_scroll(body={"scroll_id": [scroll_id]}))


def reindex_seed(
    store: OpenSearchReadingStore, batch_size: int = 500, delete_seed: bool = False, now: datetime | None = None
) -> ReindexReport:
    """Copy the old `store.index` index into the daily indices; see the module docstring."""
    now = now or datetime.now(UTC)
    index = store.index
    report = ReindexReport()
    mappings = store._call(lambda: store.client.indices.get_mapping(index=index, ignore_unavailable=True))
    if index not in mappings:
        raise ReindexError(f"there is no index named {index} to convert (it is the alias already, or absent)")
    gasmon_documents = has_gasmon_mapping(mappings[index])
    store.ensure_index_template()
    for hits in _pages(store, index, batch_size):
        batch: list[Reading] = []
        for hit in hits:
            report.documents += 1
            readings, problem = readings_of(hit["_source"], gasmon_documents, now)
            if problem:
                report.skipped.append(f"{hit['_id']}: {problem}")
            batch += readings
        if batch:
            outcome = store.put_readings(batch)
            report.created += len(outcome.created)
            report.already_there += len(outcome.existing)
            report.skipped += [f"reading {reading_id}: {why}" for reading_id, why in outcome.refused.items()]
    if delete_seed:
        if report.skipped:
            raise ReindexError(
                f"{len(report.skipped)} documents were not copied: the old index is kept\n{report.summary()}"
            )
        store._call(lambda: store.client.indices.delete(index=index))
        daily = DAILY_PATTERN.format(index=index)
        actions = {"actions": [{"add": {"index": daily, "alias": index}}]}
        store._call(lambda: store.client.indices.update_aliases(body=actions))
        report.deleted_seed = True
    return report


class ReindexError(Exception):
    """The conversion cannot (or must not) go on; the message says why."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `reindex-seed` to gasmon-admin's subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reindex-seed",
        help="copy an old gasdetect index (seed or pre-daily-index gasmon) into gasmon's daily indices",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--endpoint", required=True, help="the OpenSearch endpoint (the stack's OpenSearchEndpoint)")
    parser.add_argument("--index", default="gasdetect", help="the old index, also gasmon's alias (default gasdetect)")
    parser.add_argument("--region", default="ap-northeast-2", help="the domain's region (SigV4)")
    parser.add_argument("--batch-size", type=int, default=500, help="documents per page and per _bulk (default 500)")
    parser.add_argument("--delete-seed", action="store_true", help="then delete the old index and add the alias")
    parser.add_argument("--no-sign", action="store_true", help="do not sign requests (a local or test cluster)")
    parser.set_defaults(reindex_seed=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `reindex-seed` with parsed arguments; 0 when every document was copied or already there."""
    store = OpenSearchReadingStore(
        args.endpoint, index=args.index, region=args.region, sign_requests=not args.no_sign, retries=5
    )
    try:
        report = reindex_seed(store, batch_size=args.batch_size, delete_seed=args.delete_seed)
    except (ReindexError, StoreUnavailableError) as exc:
        print(f"gasmon-admin reindex-seed: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 1 if report.skipped else 0
