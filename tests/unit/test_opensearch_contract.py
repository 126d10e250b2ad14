"""The spec checker the OpenSearch tests rely on refuses what OpenSearch's API specification refuses."""

import json

from tests.opensearch_contract import problems_with_request, problems_with_response

BULK = b'{"create": {"_index": "gasdetect-2026.01.01", "_id": "a"}}\n{"value": 1.5}\n'


def test_a_well_formed_bulk_passes_and_each_framing_fault_is_named() -> None:
    assert problems_with_request("POST", "/gasdetect-2026.01.01/_bulk", BULK, "application/x-ndjson") == []
    # Given the same bulk sent as JSON, without its trailing newline, without a source line, or with a bad action
    assert "application/x-ndjson" in problems_with_request("POST", "/g/_bulk", BULK, "application/json")[0]
    assert "must end with a newline" in problems_with_request("POST", "/g/_bulk", BULK[:-1], "application/x-ndjson")[0]
    no_source = b'{"create": {"_index": "g", "_id": "a"}}\n'
    assert "has no source line" in problems_with_request("POST", "/g/_bulk", no_source, "application/x-ndjson")[0]
    assert problems_with_request("POST", "/g/_bulk", b'{"creat": {}}\n{}\n', "application/x-ndjson")


def test_unknown_operations_parameters_and_ill_typed_bodies_are_refused() -> None:
    assert "no such operation" in problems_with_request("POST", "/g/_bulkk", None, None)[0]
    assert "'frobnicate'" in problems_with_request("GET", "/g/_mapping?frobnicate=1", None, None)[0]
    assert problems_with_request("GET", "/g/_mapping?ignore_unavailable=maybe", None, None)
    bad_template = json.dumps({"index_patterns": ["g-*"], "priority": "high"}).encode()
    assert "priority" in problems_with_request("PUT", "/_index_template/g", bad_template, "application/json")[0]


def test_answers_missing_what_opensearch_always_sends_are_refused() -> None:
    item = {"create": {"_index": "g", "_id": "a", "status": 201}}
    assert problems_with_response("POST", "/g/_bulk", 200, {"errors": False, "items": [item], "took": 1}) == []
    missing = problems_with_response("POST", "/g/_bulk", 200, {"errors": False, "items": [{"create": {"status": 201}}]})
    assert any("'took'" in p for p in missing) and any("'_index'" in p for p in missing)
    assert problems_with_response("POST", "/g/_bulk", 429, {"error": "throttled"})  # not OpenSearch's error body
    request = {"aggs": {"per_day": {"date_histogram": {"field": "date", "fixed_interval": "1d"}}}}
    answer = {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "failed": 0},
        "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []},
        "aggregations": {"per_day": {"buckets": [{"key": "yesterday", "doc_count": 1}]}},
    }
    assert any("per_day" in p for p in problems_with_response("POST", "/g/_search", 200, answer, request))
