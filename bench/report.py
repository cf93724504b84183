"""Medians, ratios, targets and the printed table.

Targets come from the issues; each reads the medians of one metric per
contender and answers PASS, MISS, or n/a (a contender missing).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from phases import METRIC_BY_KEY, METRICS

SUBJECT = "layerfs"
BASELINES = ("kernel", "fuse-overlayfs")
CONTENDER_ORDER = (SUBJECT, f"{SUBJECT}-xattrs-on", f"{SUBJECT}-noxattrs",
                   f"{SUBJECT}-pyfuse3") + BASELINES

Medians = dict[str, dict[str, float]]
"""metric key -> contender -> median."""


@dataclass(frozen=True)
class Target:
    metric: str
    text: str
    check: Callable[[dict[str, float]], bool | None]


def _relative(other: str, factor: float, *, at_least: bool) -> Callable[[dict[str, float]], bool | None]:
    def check(values: dict[str, float]) -> bool | None:
        if SUBJECT not in values or other not in values:
            return None
        if at_least:
            return values[SUBJECT] >= factor * values[other]
        return values[SUBJECT] <= factor * values[other]
    return check


def _below(limit: float) -> Callable[[dict[str, float]], bool | None]:
    def check(values: dict[str, float]) -> bool | None:
        return None if SUBJECT not in values else values[SUBJECT] < limit
    return check


# Issue 2 (read-only mount), tightened by issue 11 (the native FUSE engine).
TARGETS = [
    Target("mount_cold_s", "< 3 s (200k files)", _below(3.0)),
    Target("find_cold_s", "<= 1.3x kernel", _relative("kernel", 1.3, at_least=False)),
    Target("find_warm_s", "<= 1.2x kernel", _relative("kernel", 1.2, at_least=False)),
    Target("ls_warm_s", "<= 1.5x kernel", _relative("kernel", 1.5, at_least=False)),
    Target("read_all_cold_s", "<= fuse-overlayfs",
           _relative("fuse-overlayfs", 1.0, at_least=False)),
    Target("read_all_warm_s", "<= 1.5x kernel", _relative("kernel", 1.5, at_least=False)),
    Target("dd_cold_mbps", ">= fuse-overlayfs", _relative("fuse-overlayfs", 1.0, at_least=True)),
    Target("dd_warm_mbps", ">= fuse-overlayfs", _relative("fuse-overlayfs", 1.0, at_least=True)),
    Target("rss_peak_mb", "< 300 MB", _below(300.0)),
]


def medians(samples: dict[str, dict[str, list[float]]]) -> Medians:
    return {metric: {name: statistics.median(values) for name, values in per.items() if values}
            for metric, per in samples.items()}


def evaluate(table: Medians) -> list[dict]:
    results = []
    for target in TARGETS:
        verdict = target.check(table.get(target.metric, {}))
        results.append({"metric": target.metric, "target": target.text,
                        "status": "n/a" if verdict is None else "PASS" if verdict else "MISS"})
    return results


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _ratio(values: dict[str, float], other: str) -> str:
    if SUBJECT not in values or other not in values or not values[other]:
        return "-"
    return f"{values[SUBJECT] / values[other]:.2f}x"


def format_table(table: Medians, verdicts: list[dict], contenders: list[str]) -> str:
    by_metric: dict[str, list[dict]] = {}
    for verdict in verdicts:
        by_metric.setdefault(verdict["metric"], []).append(verdict)
    shown = [name for name in CONTENDER_ORDER if name in contenders]
    shown += [name for name in contenders if name not in shown]
    header = ["metric", "unit", *shown,
              *(f"{SUBJECT}/{other}" for other in BASELINES if SUBJECT in shown), "target",
              "status"]
    rows = [header]
    keys = [metric.key for metric in METRICS if metric.key in table]
    keys += [key for key in table if key not in keys]
    for key in keys:
        metric = METRIC_BY_KEY.get(key)
        values = table[key]
        digits = metric.digits if metric else 2
        targets = by_metric.get(key, [])
        row = [metric.label if metric else key, metric.unit if metric else "",
               *(_number(values.get(name), digits) for name in shown)]
        if SUBJECT in shown:
            row += [_ratio(values, other) for other in BASELINES]
        row += ["; ".join(t["target"] for t in targets), "; ".join(t["status"] for t in targets)]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = set(range(2, len(header) - 2))
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                 for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
