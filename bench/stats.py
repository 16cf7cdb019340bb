"""Medians, spread, percentiles and ratios."""

from __future__ import annotations

import math
import statistics


def summarise(rounds: list[dict]) -> dict:
    """Per metric: median, min, max and spread ((max - min) / median, in %) over the rounds."""
    keys: list[str] = []
    for r in rounds:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
    out = {}
    for k in keys:
        values = [r[k] for r in rounds if isinstance(r.get(k), (int, float))]
        if not values:
            continue
        med = statistics.median(values)
        spread = (max(values) - min(values)) / abs(med) * 100 if med else 0.0
        out[k] = {"median": round(med, 3), "min": min(values), "max": max(values), "spread_pct": round(spread, 1),
                  "n": len(values)}
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return float(f"{a / b:.3g}")  # three significant digits: 0.00303x stays visible


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 < p <= 100) of values sorted ascending: the smallest value that at
    least p% of them do not exceed (p99 of 100 values is the 99th, of 1,000 the 990th)."""
    if not sorted_values:
        raise ValueError("no values")
    return sorted_values[max(0, math.ceil(p * len(sorted_values) / 100) - 1)]
