"""Retry delays: capped exponential backoff with full jitter, and the HTTP Retry-After header.

Full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015): the delay before
retry `attempt` (0-based) is uniform in [0, min(cap, base * 2**attempt)]. A fleet that lost the
network together then spreads its retries instead of knocking on the API in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 2**63 already overflows any sane cap; larger attempts would only cost time.
_MAX_EXPONENT = 63


@dataclass
class Backoff:
    """Delay calculator; `rng` is injectable so tests can seed it."""

    base: float = 1.0
    cap: float = 300.0
    max_retry_after: float = 900.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap <= 0:
            raise ValueError("backoff base and cap must be positive")

    def ceiling(self, attempt: int) -> float:
        """The largest delay retry `attempt` can get: min(cap, base * 2**attempt)."""
        return min(self.cap, self.base * float(2 ** min(max(attempt, 0), _MAX_EXPONENT)))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry `attempt`; never earlier than a (capped) Retry-After."""
        jittered = self.rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is None:
            return jittered
        return max(jittered, min(max(retry_after, 0.0), self.max_retry_after))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
