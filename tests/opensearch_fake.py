"""A small OpenSearch cluster over HTTP for the adapter's tests, checked against the official spec.

No OpenSearch can run on this machine (no Docker, no JVM distribution from the registries), so
the adapter's real opensearch-py client talks to this server instead. It keeps what a cluster
keeps for gasmon (indices with their mapping and documents, aliases, index templates, ISM
policies), and it can be told to behave as a loaded cluster does: store a bulk then time out or
answer 504, take part of a bulk and throttle the rest with 429, refuse writes with 403
`cluster_block_exception`, refuse a document with 400 `mapper_parsing_exception`, refuse setup
with 403 `security_exception` (fine-grained access control).

Every request it receives is recorded and checked with `tests.opensearch_contract` against the
pinned OpenSearch API specification, and so is every JSON answer it gives: `violations` lists
what the spec does not allow, and the fixture that starts the server fails the test if any.
"""

from __future__ import annotations

import fnmatch
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.opensearch_contract import ndjson_lines, problems_with_request, problems_with_response

ROLE = "arn:aws:iam::123456789012:role/ingest"  # the user fine-grained access control names


@dataclass
class Recorded:
    method: str
    url: str
    body: bytes
    content_type: str | None
    authorization: str | None = None  # the SigV4 header, when the client signed

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Index:
    mappings: dict[str, Any] = field(default_factory=dict)
    aliases: set[str] = field(default_factory=set)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # external versions of `index` actions


def error(status: int, kind: str, reason: str) -> dict[str, Any]:
    """OpenSearch's error body."""
    cause = {"type": kind, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


class FakeCluster:
    """The cluster's state, the faults to play on the next requests, and what was sent."""

    def __init__(self) -> None:
        self.indices: dict[str, Index] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        # Faults, each consumed as it plays:
        self.bulk_faults: list[str] = []  # "store_then_timeout", "store_then_504", "503", "blocked_index_creation"
        self.throttle_items = 0  # the next N items answer 429 es_rejected_execution_exception
        self.block_writes = False  # items answer 403 cluster_block_exception (disk full)
        self.refuse_ids: set[str] = set()  # these _ids answer 400 mapper_parsing_exception
        self.forbid_setup = False  # templates and ISM policies answer 403 security_exception
        self.slow_seconds = 0.5  # how long "store_then_timeout" holds the answer
        self.scrolls: dict[str, list[dict[str, Any]]] = {}
        self.scroll_size = 10
        self.lock = threading.Lock()

    # ---- what tests look at ----

    def bulk_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    def docs(self) -> dict[str, dict[str, Any]]:
        """Every stored reading by `_id`, whatever its index (an id in two indices counts twice in `count`).

        The latest-per-device index (`*-latest`) holds copies, not readings: see `latest_docs`.
        """
        return {doc_id: doc for name, index in self.readings_indices() for doc_id, doc in index.docs.items()}

    def count(self) -> int:
        return sum(len(index.docs) for _, index in self.readings_indices())

    def readings_indices(self) -> list[tuple[str, Index]]:
        return [(name, index) for name, index in self.indices.items() if not name.endswith("-latest")]

    def latest_docs(self, name: str = "gasdetect-latest") -> dict[str, dict[str, Any]]:
        """The latest-per-(device, gas) documents by `_id` (`<device>#<gas>`)."""
        index = self.indices.get(name)
        return dict(index.docs) if index else {}

    def add_seed_index(self, name: str, docs: dict[str, dict[str, Any]]) -> None:
        """An index as the seed's Lambda left it: dynamic mapping, values as strings."""
        properties = {
            key: {"type": "text", "fields": {"keyword": {"type": "keyword"}}} for doc in docs.values() for key in doc
        }
        self.indices[name] = Index(mappings={"properties": properties}, docs=dict(docs))

    # ---- the API ----

    def resolve(self, expression: str) -> list[str]:
        """Concrete index names for a comma-separated list of names, aliases and wildcards."""
        names = []
        for part in expression.split(","):
            for name, index in self.indices.items():
                if fnmatch.fnmatchcase(name, part) or any(fnmatch.fnmatchcase(a, part) for a in index.aliases):
                    names.append(name)
        return list(dict.fromkeys(names))

    def _create_index(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """Auto-create `name` from the matching template; an error answer if that is not possible."""
        if "blocked_index_creation" in self.bulk_faults:
            self.bulk_faults.remove("blocked_index_creation")
            return 403, error(
                403,
                "cluster_block_exception",
                "index [.] blocked by: [FORBIDDEN/10/cluster create-index blocked (api)];",
            )
        matching = [
            t for t in self.templates.values() if any(fnmatch.fnmatchcase(name, p) for p in t["index_patterns"])
        ]
        index = Index()
        if matching:
            best = max(matching, key=lambda t: t.get("priority", 0))["template"]
            index.mappings = json.loads(json.dumps(best.get("mappings", {})))
            index.aliases = set(best.get("aliases", {}))
            for alias in index.aliases:
                if alias in self.indices:
                    return 400, error(
                        400,
                        "invalid_alias_name_exception",
                        f"an index or data stream exists with the same name as the alias [{alias}]",
                    )
        self.indices[name] = index
        return None

    def _check_document(self, index: Index, doc: dict[str, Any]) -> str | None:
        properties = index.mappings.get("properties", {})
        if index.mappings.get("dynamic") == "strict":
            unknown = sorted(set(doc) - set(properties))
            if unknown:
                return f"mapping set to strict, dynamic introduction of [{unknown[0]}] within [_doc] is not allowed"
        if properties.get("value", {}).get("type") in ("double", "float") and not isinstance(
            doc.get("value"), int | float
        ):
            return f"failed to parse field [value] of type [{properties['value']['type']}]"
        return None

    def bulk(self, body: bytes) -> tuple[int, dict[str, Any]]:
        lines, _ = ndjson_lines(body)
        items = []
        for action, doc in zip(lines[::2], lines[1::2], strict=False):
            kind, meta = next(iter(action.items()))
            name, doc_id = meta["_index"], meta["_id"]
            base = {"_index": name, "_id": doc_id}
            if name not in self.indices and not self.resolve(name):
                failure = self._create_index(name)
                if failure is not None:
                    return failure
            if self.throttle_items > 0:
                self.throttle_items -= 1
                items.append(
                    {
                        kind: {
                            **base,
                            "status": 429,
                            "error": error(
                                429, "es_rejected_execution_exception", "rejected execution of coordinating operation"
                            )["error"],
                        }
                    }
                )
                continue
            if self.block_writes:
                reason = (
                    f"index [{name}] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, "
                    "index has read-only-allow-delete block];"
                )
                items.append(
                    {kind: {**base, "status": 403, "error": error(403, "cluster_block_exception", reason)["error"]}}
                )
                continue
            index = self.indices[name]
            problem = self._check_document(index, doc)
            if doc_id in self.refuse_ids or problem:
                reason = problem or "failed to parse field [value] of type [double] in document"
                items.append(
                    {kind: {**base, "status": 400, "error": error(400, "mapper_parsing_exception", reason)["error"]}}
                )
                continue
            external = meta.get("version_type") in ("external", "external_gte")
            if kind == "index" and external and doc_id in index.versions:
                stored, offered = index.versions[doc_id], int(meta["version"])
                if stored > offered or (stored == offered and meta["version_type"] == "external"):
                    reason = (
                        f"[{doc_id}]: version conflict, current version [{stored}] is higher or equal to the "
                        f"one provided [{offered}]"
                    )
                    items.append(
                        {
                            kind: {
                                **base,
                                "status": 409,
                                "error": error(409, "version_conflict_engine_exception", reason)["error"],
                            }
                        }
                    )
                    continue
            if kind == "index" and external:
                index.versions[doc_id] = int(meta["version"])
            if doc_id in index.docs and kind == "create":
                reason = f"[{doc_id}]: version conflict, document already exists (current version [1])"
                items.append(
                    {
                        kind: {
                            **base,
                            "status": 409,
                            "error": error(409, "version_conflict_engine_exception", reason)["error"],
                        }
                    }
                )
                continue
            index.docs[doc_id] = doc
            shards = {"total": 1, "successful": 1, "failed": 0}
            items.append(
                {
                    kind: {
                        **base,
                        "status": 201,
                        "result": "created",
                        "_version": index.versions.get(doc_id, 1) if kind == "index" else 1,
                        "_seq_no": len(index.docs),
                        "_primary_term": 1,
                        "_shards": shards,
                    }
                }
            )
        errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
        return 200, {"took": 3, "errors": errors, "items": items}

    def mget(self, path_index: str | None, request: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        """`_mget` by `docs` (each naming its `_index`) or `ids` (in the path's index); `_source_includes` honoured."""
        wanted = [(d.get("_index", path_index), d["_id"]) for d in request.get("docs", [])]
        wanted += [(path_index, doc_id) for doc_id in request.get("ids", [])]
        includes = query.get("_source_includes", [""])[0].split(",") if "_source_includes" in query else None
        docs = []
        for name, doc_id in wanted:
            names = self.resolve(name) if name else []
            found = next((self.indices[n] for n in names if doc_id in self.indices[n].docs), None)
            if found is None:
                docs.append({"_index": name, "_id": doc_id, "found": False})
                continue
            source = found.docs[doc_id]
            if includes is not None:
                source = {key: value for key, value in source.items() if key in includes}
            docs.append(
                {
                    "_index": name,
                    "_id": doc_id,
                    "_version": 1,
                    "_seq_no": 0,
                    "_primary_term": 1,
                    "found": True,
                    "_source": source,
                }
            )
        return {"docs": docs}

    def delete_by_query(self, expression: str, request: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        """`_delete_by_query` with a `range` on `date` (what the retention sweep sends), `max_docs` honoured."""
        bounds = request.get("query", {}).get("range", {}).get("date", {})
        below = bounds.get("lt")
        limit = int(query["max_docs"][0]) if "max_docs" in query else None
        deleted = 0
        for name in self.resolve(expression):
            index = self.indices[name]
            for doc_id, doc in list(index.docs.items()):
                if limit is not None and deleted >= limit:
                    break
                moment = datetime.fromisoformat(str(doc.get("date"))).timestamp() * 1000
                if below is not None and moment < float(below):
                    del index.docs[doc_id]
                    deleted += 1
        return {
            "took": 5,
            "timed_out": False,
            "total": deleted,
            "deleted": deleted,
            "batches": 1 if deleted else 0,
            "version_conflicts": 0,
            "noops": 0,
            "retries": {"bulk": 0, "search": 0},
            "throttled_millis": 0,
            "requests_per_second": -1.0,
            "throttled_until_millis": 0,
            "failures": [],
        }

    def _search_answer(self, hits: list[dict[str, Any]], total: int, scroll_id: str | None = None) -> dict[str, Any]:
        shards = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
        found = {"total": {"value": total, "relation": "eq"}, "max_score": None, "hits": hits}
        answer = {"took": 2, "timed_out": False, "_shards": shards, "hits": found}
        return answer if scroll_id is None else {"_scroll_id": scroll_id, **answer}

    def answer(self, method: str, url: str, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(url)
        path, query = unquote(parts.path), parse_qs(parts.query)
        segments = [s for s in path.split("/") if s]
        if segments[:3] == ["_plugins", "_ism", "policies"] and len(segments) == 4:
            policy_id = segments[3]
            if method == "GET":
                if policy_id not in self.policies:
                    return 404, error(404, "status_exception", "Policy not found")
                return 200, self.policies[policy_id]
            if self.forbid_setup:
                return 403, error(
                    403,
                    "security_exception",
                    f"no permissions for [cluster:admin/opendistro/ism/policy/write] and User [name={ROLE}]",
                )
            current = self.policies.get(policy_id)
            if current is not None and (
                query.get("if_seq_no") != [str(current["_seq_no"])]
                or query.get("if_primary_term") != [str(current["_primary_term"])]
            ):
                return 409, error(
                    409,
                    "version_conflict_engine_exception",
                    f"[{policy_id}]: version conflict, document already exists",
                )
            version = current["_version"] + 1 if current else 1
            policy = json.loads(body)["policy"]
            for state in policy.get("states", []):  # ISM fills in each action's retry settings
                for action in state.get("actions", []):
                    action.setdefault("retry", {"count": 3, "backoff": "exponential", "delay": "1m"})
            policy = {"policy_id": policy_id, "schema_version": 21, "last_updated_time": 1767225600000, **policy}
            meta = {"_id": policy_id, "_version": version, "_seq_no": version - 1, "_primary_term": 1}
            self.policies[policy_id] = {**meta, "policy": policy}  # as GET answers it
            return (200 if current else 201), {**meta, "policy": {"policy": policy}}
        if segments[:1] == ["_index_template"] and method == "PUT":
            if self.forbid_setup:
                return 403, error(
                    403,
                    "security_exception",
                    f"no permissions for [indices:admin/index_template/put] and User [name={ROLE}]",
                )
            self.templates[segments[1]] = json.loads(body)
            return 200, {"acknowledged": True}
        if len(segments) == 2 and segments[1] == "_mapping" and method == "GET":
            names = self.resolve(segments[0])
            if not names and query.get("ignore_unavailable") != ["true"]:
                return 404, error(404, "index_not_found_exception", f"no such index [{segments[0]}]")
            return 200, {name: {"mappings": self.indices[name].mappings} for name in names}
        if segments[-1:] == ["_bulk"] and method in ("POST", "PUT"):
            return self.bulk(body)
        if segments == ["_search", "scroll"]:
            request = json.loads(body) if body else {}
            if method == "DELETE":
                freed = [i for i in as_list(request.get("scroll_id", [])) if self.scrolls.pop(i, None) is not None]
                return 200, {"succeeded": True, "num_freed": len(freed)}
            remaining = self.scrolls.get(request.get("scroll_id", ""))
            if remaining is None:
                return 404, error(404, "search_context_missing_exception", "No search context found")
            page, self.scrolls[request["scroll_id"]] = remaining[: self.scroll_size], remaining[self.scroll_size :]
            return 200, self._search_answer(page, len(page), scroll_id=request["scroll_id"])
        if len(segments) == 1 and method == "DELETE":
            if segments[0] not in self.indices:
                return 404, error(404, "index_not_found_exception", f"no such index [{segments[0]}]")
            del self.indices[segments[0]]
            return 200, {"acknowledged": True}
        if segments == ["_aliases"] and method == "POST":
            for action in json.loads(body)["actions"]:
                ((kind, spec),) = action.items()
                for name in self.resolve(spec["index"]):
                    getattr(self.indices[name].aliases, "add" if kind == "add" else "discard")(spec["alias"])
            return 200, {"acknowledged": True}
        if segments[-1:] == ["_mget"] and method in ("GET", "POST"):
            return 200, self.mget(segments[0] if len(segments) == 2 else None, json.loads(body), query)
        if segments[-1:] == ["_delete_by_query"] and method == "POST":
            return 200, self.delete_by_query(segments[0], json.loads(body), query)
        if segments[-1:] == ["_search"]:
            names = self.resolve(segments[0]) if len(segments) == 2 else list(self.indices)
            request = json.loads(body) if body else {}
            filters = request.get("query", {}).get("bool", {}).get("filter", [])
            hits = [
                {"_index": name, "_id": doc_id, "_score": None, "_source": doc}
                for name in names
                for doc_id, doc in self.indices[name].docs.items()
                if all(_matches(doc, f) for f in filters)
            ]
            size = request.get("size", 10)
            if "scroll" in query:
                scroll_id = f"scroll-{len(self.scrolls) + 1}"
                self.scrolls[scroll_id], self.scroll_size = hits[size:], size
                return 200, self._search_answer(hits[:size], len(hits), scroll_id=scroll_id)
            hits = hits[:size]
            return 200, self._search_answer(hits, len(hits))
        return 400, error(400, "illegal_argument_exception", f"the fake cluster does not know {method} {path}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(doc: dict[str, Any], clause: dict[str, Any]) -> bool:
    """`term` and `terms` filters (what the fake needs); other clauses match everything."""
    if "term" in clause:
        field_name, value = next(iter(clause["term"].items()))
        return bool(doc.get(field_name) == value)
    if "terms" in clause:
        field_name, values = next(iter(clause["terms"].items()))
        return doc.get(field_name) in values
    return True


def serve(cluster: FakeCluster) -> ThreadingHTTPServer:
    """Start the cluster on 127.0.0.1 (port 0) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(
                self.command, self.path, body, self.headers.get("Content-Type"), self.headers.get("Authorization")
            )
            with cluster.lock:
                cluster.requests.append(recorded)
                cluster.violations += problems_with_request(
                    self.command, self.path, body or None, recorded.content_type
                )
                fault = cluster.bulk_faults[0] if recorded.path.endswith("/_bulk") and cluster.bulk_faults else None
                if fault in ("store_then_timeout", "store_then_504", "503"):
                    cluster.bulk_faults.pop(0)
                if fault == "503":
                    status, answer = 503, error(503, "unavailable_shards_exception", "primary shard is not active")
                else:
                    status, answer = cluster.answer(self.command, self.path, body)
                request_json = json.loads(body) if body and not recorded.path.endswith("/_bulk") else None
                cluster.violations += problems_with_response(self.command, self.path, status, answer, request_json)
            if fault == "store_then_timeout":
                time.sleep(cluster.slow_seconds)  # the client has given up by now
            if fault == "store_then_504":
                # The domain's load balancer answers, not OpenSearch: HTML, not an OpenSearch body.
                self._send(504, b"<html><body><h1>504 Gateway Time-out</h1></body></html>", "text/html")
                return
            self._send(status, json.dumps(answer).encode(), "application/json")

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def running_cluster() -> Iterator[tuple[FakeCluster, str]]:
    """A fixture body: the cluster and its URL; fails the test if anything broke the spec."""
    cluster = FakeCluster()
    server = serve(cluster)
    try:
        yield cluster, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
    assert not cluster.violations, "\n".join(cluster.violations)
