"""Retry delays: bounded, fully jittered, and never earlier than the server's Retry-After."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime

import pytest

from gasmon_device.backoff import Backoff, parse_retry_after


@pytest.mark.parametrize("attempt", [0, 1, 3, 5, 8, 9, 12, 40, 10_000])
def test_delays_stay_within_zero_and_the_capped_exponential_ceiling(attempt: int) -> None:
    # Given base 1 s and cap 300 s
    backoff = Backoff(base=1.0, cap=300.0, rng=random.Random(attempt))

    # When many delays are drawn for one attempt
    delays = [backoff.delay(attempt) for _ in range(2000)]

    # Then every one lies in [0, min(300, 2**attempt)], and the big ones reach near the ceiling
    ceiling = min(300.0, 2.0 ** min(attempt, 63))
    assert backoff.ceiling(attempt) == ceiling
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.95 * ceiling


def test_delays_are_uniformly_jittered_over_the_whole_range() -> None:
    # Given a seeded generator and attempt 5 (ceiling 32 s)
    backoff = Backoff(base=1.0, cap=300.0, rng=random.Random(20240611))

    # When 20,000 delays are drawn
    delays = [backoff.delay(5) for _ in range(20_000)]

    # Then they are spread uniformly over [0, 32]: mean 16, standard deviation 32/sqrt(12),
    # every tenth of the range holds about a tenth of them, and hardly any two are equal
    assert statistics.fmean(delays) == pytest.approx(16.0, rel=0.02)
    assert statistics.pstdev(delays) == pytest.approx(32.0 / 12**0.5, rel=0.03)
    counts = [0] * 10
    for d in delays:
        counts[min(int(d / 3.2), 9)] += 1
    assert all(1800 <= c <= 2200 for c in counts), counts
    assert len(set(delays)) > 19_990


def test_a_fleet_does_not_retry_in_step() -> None:
    # Given 100 devices that failed at the same moment, each with its own generator
    fleet = [Backoff(base=1.0, cap=300.0, rng=random.Random(device)) for device in range(100)]

    # When each computes its fourth retry (ceiling 16 s)
    delays = sorted(b.delay(4) for b in fleet)

    # Then their retries are spread over the window instead of landing together
    assert delays[-1] - delays[0] > 12.0
    assert max(b - a for a, b in zip(delays, delays[1:], strict=False)) < 2.0


def test_the_same_seed_gives_the_same_schedule() -> None:
    first = [Backoff(rng=random.Random(7)).delay(n) for n in range(10)]
    second = [Backoff(rng=random.Random(7)).delay(n) for n in range(10)]
    assert first == second


def test_retry_after_is_a_floor_and_is_itself_capped() -> None:
    # Given a backoff that honours Retry-After up to 900 s
    backoff = Backoff(base=1.0, cap=300.0, max_retry_after=900.0, rng=random.Random(1))

    # When the server asks for 40 s, or for a day
    asked = [backoff.delay(0, retry_after=40.0) for _ in range(200)]
    greedy = backoff.delay(0, retry_after=86_400.0)

    # Then no retry comes before 40 s (a first retry's own jitter is at most 1 s), and a day is cut to 900 s
    assert all(40.0 <= d <= 41.0 for d in asked)
    assert greedy == 900.0


def test_retry_after_header_forms() -> None:
    now = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Sat, 01 Mar 2025 09:02:00 GMT", now) == 120.0
    assert parse_retry_after("Sat, 01 Mar 2025 08:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
