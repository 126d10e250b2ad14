"""Default gas levels: plain values on the ground floor, imported by settings and domain alike.

NO2 88 is the seed's rule; the other warning levels are common alarm set-points and the critical
levels occupational short-term or immediate-danger limits (docs/decision_log.md says which).
The units are the ones those levels are written in: NO2 in ppb (its critical level is NIOSH's
1 ppm short-term limit written as 1000), the others in ppm.
"""

DEFAULT_THRESHOLDS: dict[str, float] = {"no2": 88.0, "co": 35.0, "c2h5oh": 1000.0, "h2": 4000.0}
DEFAULT_CRITICAL_THRESHOLDS: dict[str, float] = {"no2": 1000.0, "co": 200.0, "c2h5oh": 3300.0, "h2": 8000.0}
DEFAULT_UNITS: dict[str, str] = {"no2": "ppb", "co": "ppm", "c2h5oh": "ppm", "h2": "ppm"}
