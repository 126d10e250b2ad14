"""The one place Logger, Tracer and Metrics are created.

Service name, namespace and log level come from the `POWERTOOLS_*` variables in template.yaml's
Globals. Handlers stack the decorators in this order: logger, tracer, metrics.

When tracing is off (`POWERTOOLS_TRACE_DISABLED`, or outside Lambda: tests, `make local`) the
Tracer gets a no-op provider, so the X-Ray SDK (and the botocore it pulls in, ~0.4 s) is never
imported; in Lambda with `Tracing: Active` it is the X-Ray provider as usual.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _NoopSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None: ...
    def add_subsegment(self, subsegment: Any) -> None: ...
    def remove_subsegment(self, subsegment: Any) -> None: ...
    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None: ...


class _NoopProvider(BaseProvider):
    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Generator[BaseSegment]:
        yield _NoopSegment()

    @asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> AsyncGenerator[BaseSegment]:
        yield _NoopSegment()

    def put_annotation(self, key: str, value: Any) -> None: ...
    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None: ...
    def patch(self, modules: Sequence[str]) -> None: ...
    def patch_all(self) -> None: ...


def _tracing_enabled() -> bool:
    disabled = os.getenv("POWERTOOLS_TRACE_DISABLED", "false").lower() in {"1", "true", "yes", "on"}
    return not disabled and "LAMBDA_TASK_ROOT" in os.environ and "AWS_SAM_LOCAL" not in os.environ


logger = Logger()
tracer = Tracer() if _tracing_enabled() else Tracer(disabled=True, provider=_NoopProvider(), auto_patch=False)
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "gasmon")
