"""Outcome statistics (R-OUT-5), computed by scipy rather than by hand.

Per batch: the baseline hair density, the change at each visit (absolute and % of
baseline) and the dose (total nucleated cells; viable cells = TNC × viability).
Per visit and tissue source: n, mean, median and the 95 % confidence interval of
the mean % change (Student's t, n − 1 degrees of freedom). And the relation of
viable-cell dose to the 6-month % change: the least-squares slope with its 95 %
confidence interval (t with n − 2 degrees of freedom), from ``scipy.stats.linregress``.

numpy and scipy.stats are imported on first use: they add some 70 MB to a process, which a web
worker that never draws the outcomes report should not carry (SPEC §9, 150 MB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
DOSE_VISIT = "m6"


@dataclass(frozen=True)
class Change:
    absolute: float
    percent: float | None  # None when the baseline is 0 hairs/cm²


def change(baseline: float, value: float) -> Change:
    absolute = value - baseline
    return Change(absolute, 100.0 * absolute / baseline if baseline > 0 else None)


def viable_cells(tnc: float | None, viability_pct: float | None) -> float | None:
    return tnc * viability_pct / 100.0 if tnc is not None and viability_pct is not None else None


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float | None
    median: float | None
    ci_low: float | None
    ci_high: float | None


def summarise(values: Sequence[float]) -> Summary:
    """n, mean, median and the t-based 95 % CI of the mean (no interval below two values)."""
    import numpy as np  # see the module's note

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Summary(0, None, None, None, None)
    mean, median = float(np.mean(data)), float(np.median(data))
    if data.size < 2:
        return Summary(1, mean, median, None, None)
    from scipy import stats  # see the module's note

    sem = stats.sem(data)
    if sem == 0:
        return Summary(int(data.size), mean, median, mean, mean)
    low, high = stats.t.interval(CONFIDENCE, data.size - 1, loc=mean, scale=sem)
    return Summary(int(data.size), mean, median, float(low), float(high))


@dataclass(frozen=True)
class Fit:
    n: int
    slope: float | None
    intercept: float | None
    ci_low: float | None
    ci_high: float | None
    r: float | None
    p_value: float | None


def fit_line(x: Sequence[float], y: Sequence[float]) -> Fit:
    """Least-squares line of ``y`` on ``x`` with the 95 % CI of its slope; none below three points."""
    n = len(x)
    if n < 3 or len(set(x)) < 2:
        return Fit(n, None, None, None, None, None, None)
    import numpy as np
    from scipy import stats  # see the module's note

    result = stats.linregress(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 2)) * float(result.stderr)
    r = float(result.rvalue)
    p_value = float(result.pvalue)
    return Fit(
        n,
        float(result.slope),
        float(result.intercept),
        float(result.slope) - half,
        float(result.slope) + half,
        r if math.isfinite(r) else None,
        p_value if math.isfinite(p_value) else None,
    )
