"""Side-by-side measurements for the benchmark scripts: interleaved repeats and one Markdown table.

Interleaving (a, b, a, b, ...) lets the machine's noise hit every contender alike, so the ratio
of medians is the figure to quote (this machine is noisy).
"""

from __future__ import annotations

import statistics
from typing import Callable, Mapping


def interleaved(runs: Mapping[str, Callable[[int], float]], repeats: int) -> dict[str, list[float]]:
    """Each run's measurement per repeat, ``run(repeat)``, taking the runs in turn within each repeat."""
    values: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats):
        for name, run in runs.items():
            values[name].append(run(repeat))
    return values


def print_table(what: str, unit: str, values: Mapping[str, list[float]], digits: int) -> None:
    """A Markdown table of min and median per contender (``what`` heads the first column)."""
    print(f"| {what} | {unit} (min) | {unit} (median) |")
    print("|---|---|---|")
    for name, measured in values.items():
        print(f"| {name} | {min(measured):.{digits}f} | {statistics.median(measured):.{digits}f} |")


def median_ratio(values: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
    """median(values[numerator]) / median(values[denominator])."""
    return statistics.median(values[numerator]) / statistics.median(values[denominator])
