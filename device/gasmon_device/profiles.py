"""Plausible gas readings for simulated sensors: a drifting baseline, noise, and now and then a plume.

Levels are in the units of the seed's example document (co 26.20, no2 52.00, c2h5oh 26.11,
h2 400), so a spike of NO2 crosses the seed's warning threshold of 88.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GasProfile:
    """How one gas behaves: baseline, Gaussian noise, slow drift, and plumes.

    A plume starts with probability `spike_probability` per sample, peaks at `spike_peak` (a
    level over the gas's threshold), and decays by `spike_decay` per sample back to baseline.
    """

    baseline: float
    noise: float
    drift: float = 0.0
    spike_probability: float = 0.0
    spike_peak: float = 0.0
    spike_decay: float = 0.5


# NO2 plumes cross the seed's threshold (88); CO now and then crosses gasmon's (35).
DEFAULT_PROFILES: Mapping[str, GasProfile] = {
    "co": GasProfile(baseline=26.0, noise=1.5, drift=0.2, spike_probability=0.01, spike_peak=42.0),
    "no2": GasProfile(baseline=52.0, noise=4.0, drift=0.5, spike_probability=0.05, spike_peak=110.0),
    "c2h5oh": GasProfile(baseline=26.0, noise=2.0, drift=0.3),
    "h2": GasProfile(baseline=400.0, noise=15.0, drift=2.0),
}


class GasModel:
    """Generates successive values for one gas from its profile and a random generator."""

    def __init__(self, profile: GasProfile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self.level = profile.baseline
        self.plume = 0.0

    def next_value(self, force_spike: bool = False) -> float:
        p = self.profile
        # Mean-reverting drift keeps the baseline wandering without running away.
        self.level += self.rng.gauss(0.0, p.drift) + 0.1 * (p.baseline - self.level)
        if force_spike or (p.spike_probability and self.rng.random() < p.spike_probability):
            self.plume = max(self.plume, p.spike_peak * self.rng.uniform(1.0, 1.25) - p.baseline)
        value = self.level + self.plume + self.rng.gauss(0.0, p.noise)
        self.plume *= 1.0 - p.spike_decay
        if self.plume < p.noise:
            self.plume = 0.0
        return round(max(0.0, value), 2)
