"""Sensor sources: where the publisher's readings come from.

A source answers `read(now)` with one `Sample` (a value per gas, None for a gas whose sensor gave
nothing) or None when it has no more (the end of a replay). Three sources exist: `SimulatedSource`,
`CsvReplaySource`, and `gasmon_device.mq.AdcSource` for MQ-series sensors behind an ADC.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from .profiles import DEFAULT_PROFILES, GasModel, GasProfile


@dataclass(frozen=True)
class Sample:
    """One reading of every sensor. `taken_at` overrides the clock (a replay's recorded time)."""

    values: Mapping[str, float | None]
    taken_at: datetime | None = None


class SensorSource(Protocol):
    """Anything that can be asked for the current sample."""

    def read(self, now: datetime) -> Sample | None:
        """The sample for `now`, or None when the source is exhausted."""
        ...


class SourceError(Exception):
    """A source cannot be used as configured (a missing file, a bad header)."""


class SimulatedSource:
    """Plausible readings for the given gases (see `gasmon_device.profiles`); deterministic per seed."""

    def __init__(
        self,
        gases: Sequence[str],
        *,
        seed: int | None = None,
        profiles: Mapping[str, GasProfile] | None = None,
    ) -> None:
        rng = random.Random(seed)
        table = {**DEFAULT_PROFILES, **(profiles or {})}
        fallback = GasProfile(baseline=10.0, noise=1.0)
        self.models = {gas: GasModel(table.get(gas, fallback), random.Random(rng.random())) for gas in gases}
        self._force: set[str] = set()

    def spike(self, gas: str) -> None:
        """Make the next sample of `gas` a plume over threshold (simulator and demos)."""
        self._force.add(gas)

    def read(self, now: datetime) -> Sample:
        values: dict[str, float | None] = {}
        for gas, model in self.models.items():
            values[gas] = model.next_value(force_spike=gas in self._force)
        self._force.clear()
        return Sample(values)


class CsvReplaySource:
    """Replays a CSV recording: a `createdtime` column (optional) and one column per gas.

    ```
    createdtime,co,no2,c2h5oh,h2
    2021-09-03 18:14:49,26.20,52.00,26.11,400
    ```
    Empty cells are missing readings. With `use_recorded_times`, each row keeps its recorded time
    (zone-less times are read in `zone`); otherwise rows are stamped with the time they are replayed.
    `loop` starts over at the end instead of reporting the source exhausted.
    """

    def __init__(
        self,
        path: str | Path,
        gases: Sequence[str],
        *,
        use_recorded_times: bool = False,
        loop: bool = False,
        zone: ZoneInfo | None = None,
    ) -> None:
        self.path = Path(path)
        self.gases = tuple(gases)
        self.use_recorded_times = use_recorded_times
        self.loop = loop
        self.zone = zone or ZoneInfo("Asia/Seoul")
        self.rows = self._load()
        self._rows: Iterator[Sample] = iter(self.rows)

    def _load(self) -> list[Sample]:
        try:
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                header = reader.fieldnames or []
                if not any(gas in header for gas in self.gases):
                    raise SourceError(f"{self.path}: no column for any of {', '.join(self.gases)}")
                if self.use_recorded_times and "createdtime" not in header:
                    raise SourceError(f"{self.path}: recorded times asked for, but there is no createdtime column")
                return [self._sample(row, line) for line, row in enumerate(reader, start=2)]
        except FileNotFoundError:
            raise SourceError(f"replay file {self.path} does not exist") from None

    def _sample(self, row: Mapping[str, str | None], line: int) -> Sample:
        values: dict[str, float | None] = {}
        for gas in self.gases:
            cell = (row.get(gas) or "").strip()
            if not cell:
                values[gas] = None
                continue
            try:
                values[gas] = float(cell)
            except ValueError:
                # Kept as NaN on purpose: the server refuses it with a reason and the document
                # ends up in the dead letters, where a person can see the bad recording.
                values[gas] = math.nan
        taken_at = None
        if self.use_recorded_times:
            text = (row.get("createdtime") or "").strip()
            try:
                taken_at = datetime.fromisoformat(text)
            except ValueError:
                raise SourceError(f"{self.path}:{line}: createdtime {text!r} is not a time") from None
            if taken_at.tzinfo is None:
                taken_at = taken_at.replace(tzinfo=self.zone)
        return Sample(values, taken_at)

    def read(self, now: datetime) -> Sample | None:
        sample = next(self._rows, None)
        if sample is None and self.loop and self.rows:
            self._rows = iter(self.rows)
            sample = next(self._rows, None)
        return sample
