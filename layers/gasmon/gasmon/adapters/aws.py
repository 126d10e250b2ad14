"""AWS clients with gasmon's retry and timeout settings, made on first use.

The clients are botocore's own (boto3's `client()` is a thin wrapper over them): importing
boto3 would add s3transfer and boto3's resource layer to every cold start for nothing gasmon
uses. botocore is imported inside `aws_session`, never at module import, so a function pays for
it only when a request needs AWS. One botocore session per process serves every client and the
OpenSearch request signer: its credential chain and service-model loader are resolved once.
Clients honour the standard endpoint settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`),
which is how `make local` points them at moto and the local broker.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
_session: Any = None
_session_for: tuple[str | None, ...] = ()
_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def aws_session() -> Any:
    """The process's botocore session (created on first use; thread-safe).

    A session keeps the credentials it resolved, so a new one is made when the credential
    variables change (moto's mocks and the local stack set their own; in Lambda they never do).
    """
    global _session, _session_for
    current = tuple(os.environ.get(name) for name in _CREDENTIAL_VARIABLES)
    with _lock:
        if _session is None or current != _session_for:
            import botocore.session

            _session, _session_for = botocore.session.get_session(), current
        return _session


def aws_client(service: str, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A botocore client: standard retry mode, with the attempts and timeouts the timeout ladder
    (`gasmon.adapters.timeouts`) gives the service."""
    from botocore.config import Config

    from gasmon.adapters.timeouts import CLIENT_BUDGETS

    budget = CLIENT_BUDGETS[service]
    session = aws_session()
    config = Config(
        retries={"mode": "standard", "max_attempts": budget.attempts},
        connect_timeout=budget.connect,
        read_timeout=budget.read,
    )
    with _lock:  # botocore sessions are not safe for concurrent client creation
        return session.create_client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def aws_credentials() -> Any:
    """The credentials the clients use (environment, then the rest of botocore's chain)."""
    return aws_session().get_credentials()
