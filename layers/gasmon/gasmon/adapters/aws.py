"""boto3 clients with gasmon's retry and timeout settings, made on first use.

boto3 is imported inside `aws_client`, never at module import, so a function pays for it only
when a request needs AWS. Clients honour boto3's standard endpoint settings (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_<SERVICE>`), which is how `make local` points them at moto and the local broker.
"""

from __future__ import annotations

from typing import Any


def aws_client(service: str, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client: standard retry mode, with the attempts and timeouts the timeout ladder
    (`gasmon.adapters.timeouts`) gives the service."""
    import boto3
    from botocore.config import Config

    from gasmon.adapters.timeouts import CLIENT_BUDGETS

    budget = CLIENT_BUDGETS[service]
    config = Config(
        retries={"mode": "standard", "max_attempts": budget.attempts},
        connect_timeout=budget.connect,
        read_timeout=budget.read,
    )
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]
