"""What the benches that run a handler in this process set up first (one place, not one per bench)."""

from __future__ import annotations

import os
from typing import Any


def load_function(code_uri: str) -> Any:
    """A handler under the benches' environment: fake AWS credentials for moto, tracing off, quiet
    logs (set only where the caller has not), and the shared Metrics' namespace set once."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "gasmon",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        os.environ.setdefault(name, value)
    from gasmon.observability import metrics
    from gasmon_local.functions import load_handler

    if metrics.namespace is None:
        metrics.namespace = "gasmon"
    return load_handler(code_uri)
