"""Run every benchmark module and print one table (markdown), ratios against same-run baselines.

Each module `bench/bench_*.py` exposes `run() -> list[dict]` with keys metric, value, unit,
baseline, baseline_label, target. Select modules with `make bench ARGS="ingest alarms"`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from typing import Any

import bench


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    wanted = [n for n in names if not argv or n.removeprefix("bench_") in argv]
    rows: list[dict[str, Any]] = []
    for name in wanted:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(f"bench.{name}").run())
        print(f"  {name} took {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    print("| metric | gasmon | baseline (same run) | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        ratio = row["value"] / row["baseline"] if row["baseline"] else float("nan")
        print(
            f"| {row['metric']} | {_fmt(row['value'])} {row['unit']} | {_fmt(row['baseline'])} {row['unit']} "
            f"({row['baseline_label']}) | {ratio:.3f}x | {row['target']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
