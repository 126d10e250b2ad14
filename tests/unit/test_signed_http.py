"""gasmon's own SigV4 signer against botocore's, with fixed inputs; endpoints and query strings.

`gasmon.adapters.signed_http.sign` exists because importing botocore's signer cost as much as the
rest of a cold POST; these tests hold it to botocore's answer for the requests gasmon sends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from gasmon.adapters.signed_http import (
    DYNAMODB,
    FIREHOSE,
    AwsJsonClient,
    Credentials,
    canonical_query,
    current_credentials,
    endpoint_of,
    host_header,
    sign,
)

NOW = datetime(2026, 12, 7, 23, 59, 58, tzinfo=UTC)
KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SESSION = Credentials("session-key-id", "secret/with+signs", "FQoGZXIvYXdzEJr//////////token==")


def botocore_authorization(
    method: str, url: str, headers: dict[str, str], body: bytes, service: str, region: str, keys: Credentials
) -> str:
    """What botocore's SigV4Auth computes for the same request, signing the headers gasmon sent."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    request.context["timestamp"] = NOW.strftime("%Y%m%dT%H%M%SZ")
    signer = SigV4Auth(BotoCredentials(keys.access_key, keys.secret_key, keys.token), service, region)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signed = signer.signed_headers(signer.headers_to_sign(request))
    return (
        f"AWS4-HMAC-SHA256 Credential={keys.access_key}/{signer.credential_scope(request)}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )


@pytest.mark.parametrize(
    ("method", "url", "headers", "body", "service", "keys"),
    [
        (
            "POST",
            "https://dynamodb.ap-northeast-2.amazonaws.com/",
            {"Content-Type": DYNAMODB.content_type, "X-Amz-Target": "DynamoDB_20120810.BatchGetItem"},
            b'{"RequestItems":{"t":{"Keys":[{"pk":{"S":"DEVICE#pi-1"}}]}}}',
            "dynamodb",
            SESSION,
        ),
        (
            "POST",
            "https://firehose.ap-northeast-2.amazonaws.com/",
            {"Content-Type": FIREHOSE.content_type, "X-Amz-Target": "Firehose_20150804.PutRecordBatch"},
            b'{"DeliveryStreamName":"s","Records":[{"Data":"eyJhIjoxfQ=="}]}',
            "firehose",
            KEYS,
        ),
        (
            "POST",
            "https://search-gasmon-abc.ap-northeast-2.es.amazonaws.com/gasdetect-2026.12.07/_bulk",
            {"Content-Type": "application/x-ndjson"},
            b'{"create":{"_index":"gasdetect-2026.12.07","_id":"x"}}\n{"value":1.5}\n',
            "es",
            SESSION,
        ),
        (
            "PUT",
            "http://127.0.0.1:9200/_plugins/_ism/policies/gasdetect-retention?"
            + canonical_query({"if_seq_no": "3", "if_primary_term": "1"}),
            {"Content-Type": "application/json"},
            b'{"policy":{}}',
            "es",
            KEYS,
        ),
        (
            "GET",
            "http://127.0.0.1:9200/gasdetect/_mapping?" + canonical_query({"ignore_unavailable": "true"}),
            {},
            b"",
            "es",
            SESSION,
        ),
    ],
)
def test_the_signature_is_botocores_for_the_same_request(
    method: str, url: str, headers: dict[str, str], body: bytes, service: str, keys: Credentials
) -> None:
    # Given one of the requests ingest sends, with fixed credentials and time
    # When gasmon signs it
    sent = sign(method, url, headers, body, service, "ap-northeast-2", keys, NOW)
    # Then botocore's signer, over the headers gasmon sends, gives the same Authorization
    unsigned = {name: value for name, value in sent.items() if name != "Authorization"}
    assert sent["Authorization"] == botocore_authorization(method, url, unsigned, body, service, "ap-northeast-2", keys)
    assert sent["X-Amz-Date"] == "20261207T235958Z"
    assert ("X-Amz-Security-Token" in sent) == (keys.token is not None)


def test_a_changed_body_or_key_changes_the_signature() -> None:
    url = "https://dynamodb.ap-northeast-2.amazonaws.com/"
    first = sign("POST", url, {}, b"{}", "dynamodb", "ap-northeast-2", KEYS, NOW)["Authorization"]
    assert sign("POST", url, {}, b"{ }", "dynamodb", "ap-northeast-2", KEYS, NOW)["Authorization"] != first
    other = Credentials(KEYS.access_key, KEYS.secret_key + "x")
    assert sign("POST", url, {}, b"{}", "dynamodb", "ap-northeast-2", other, NOW)["Authorization"] != first


def test_the_host_header_names_the_port_only_when_it_is_not_the_schemes() -> None:
    assert host_header("https://Search.Example.com:443/x") == "search.example.com"
    assert host_header("http://127.0.0.1:4566/") == "127.0.0.1:4566"
    assert host_header("http://127.0.0.1/") == "127.0.0.1"


def test_the_query_is_sorted_and_escaped_as_sigv4_requires() -> None:
    assert canonical_query({"b": "2", "a": "x y/z", "_source_includes": "value"}) == (
        "_source_includes=value&a=x%20y%2Fz&b=2"
    )
    assert urlsplit("http://h/p?" + canonical_query({})).query == ""


def test_endpoints_follow_botocores_variables_then_the_regional_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    assert endpoint_of("DYNAMODB", "dynamodb", "ap-northeast-2") == "https://dynamodb.ap-northeast-2.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/")
    assert endpoint_of("DYNAMODB", "dynamodb", "ap-northeast-2") == "http://127.0.0.1:4566"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")
    assert AwsJsonClient(DYNAMODB, "ap-northeast-2").url == "http://127.0.0.1:8000/"
    assert AwsJsonClient(DYNAMODB, "ap-northeast-2", endpoint_url="http://127.0.0.1:9").url == "http://127.0.0.1:9/"


def test_credentials_are_lambdas_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "tok")
    assert current_credentials() == Credentials("env-key-id", "s3cret", "tok")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    assert current_credentials().token is None
