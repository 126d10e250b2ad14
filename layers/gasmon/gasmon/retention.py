"""Retention: readings older than the retention period leave the hot store (the archive keeps them).

Pure: the cutoff is arithmetic on a clock reading, the deleting is the store's (`RetentionSweeper`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gasmon.ports import RetentionSweeper, SweepOutcome


def retention_cutoff(now: datetime, retention_days: int) -> datetime:
    """The oldest reading time the hot store keeps: `retention_days` before `now`."""
    return now - timedelta(days=retention_days)


def sweep(
    sweeper: RetentionSweeper, now: datetime, retention_days: int, batch_size: int, max_batches: int
) -> SweepOutcome:
    """Delete readings older than the retention period, bounded by `batch_size * max_batches`."""
    return sweeper.delete_older_than(retention_cutoff(now, retention_days), batch_size, max_batches)
