"""Run every benchmark module and print one table (markdown), ratios against same-run baselines.

Each module `bench/bench_*.py` exposes `run() -> list[dict]` with keys metric, value, unit,
baseline, baseline_label, target. Select modules with `make bench ARGS="ingest alarms"`. A
target of the form `<= N`, `>= N` (the value) or `<= Nx` (the ratio) is checked and the row says
`met` or `MISSED`; any other target is reported as it is.

`--readme README.md` (what `make bench` passes when every module runs) also rewrites the table
between the `<!-- bench:begin -->` and `<!-- bench:end -->` markers of that file, with the
command, the date and the machine it ran on.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
_TARGET = re.compile(r"^\s*(<=|>=)\s*([\d,]*\.?\d+)\s*(x)?(?=\s|/|$)")


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def verdict(row: dict[str, Any]) -> str:
    """`met`, `MISSED`, or "" when the target is not a plain bound."""
    match = _TARGET.match(str(row["target"]))
    if not match:
        return ""
    bound = float(match.group(2).replace(",", ""))
    if match.group(3):
        if not row["baseline"]:
            return ""
        measured = row["value"] / row["baseline"]
    else:
        measured = row["value"]
    ok = measured <= bound if match.group(1) == "<=" else measured >= bound
    return "met" if ok else "MISSED"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| metric | gasmon | baseline (same run) | ratio | target | |", "|---|---|---|---|---|---|"]
    for row in rows:
        ratio = f"{row['value'] / row['baseline']:.3f}x" if row["baseline"] else "-"
        lines.append(
            f"| {row['metric']} | {_fmt(row['value'])} {row['unit']} | {_fmt(row['baseline'])} {row['unit']} "
            f"({row['baseline_label']}) | {ratio} | {row['target']} | {verdict(row)} |"
        )
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"
    )


def rewrite_readme(path: Path, lines: list[str], command: str, started: float, load: tuple[float, ...]) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers for the table")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    after = os.getloadavg()
    note = (
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}; "
        f"{time.perf_counter() - started:.0f} s; load average {load[0]:.1f} at the start, {after[0]:.1f} at the end "
        "(the machine is shared: both columns of a row run under the same load, interleaved where it matters)."
    )
    path.write_text(f"{head}{BEGIN}\n{note}\n\n" + "\n".join(lines) + f"\n{END}{tail}")


def main(argv: list[str]) -> int:
    readme: Path | None = None
    if "--readme" in argv:
        at = argv.index("--readme")
        readme = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    wanted = [n for n in names if not argv or n.removeprefix("bench_") in argv]
    started, load = time.perf_counter(), os.getloadavg()
    rows: list[dict[str, Any]] = []
    for name in wanted:
        began = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(f"bench.{name}").run())
        print(f"  {name} took {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    lines = table(rows)
    print("\n".join(lines))
    if readme is not None:
        if wanted != names:
            print(f"(not rewriting {readme}: only part of the bench ran)", file=sys.stderr)
        else:
            rewrite_readme(readme, lines, "make bench", started, load)
            print(f"(table written to {readme})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
