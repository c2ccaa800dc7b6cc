"""Outcome statistics (R-OUT-5), computed by scipy rather than by hand.

Per batch: the baseline hair density, the change at each visit (absolute and % of
baseline) and the dose (total nucleated cells; viable cells = TNC × viability).
Per visit and tissue source: n, mean, median and the 95 % confidence interval of
the mean % change (Student's t, n − 1 degrees of freedom). And the relation of
viable-cell dose to the 6-month % change: the least-squares slope with its 95 %
confidence interval (t with n − 2 degrees of freedom), from ``scipy.stats.linregress``.

numpy and scipy.stats add some 70 MB to a process, more than a web worker may carry (150 MB
with charts): only a Celery worker computes them (``statistics``, called by the task
``labtrack.outcome_statistics``); the web process builds a cohort's ``Inputs``, their
``key``, and reads the stored answer. Both libraries are imported on first use, so a
process that never computes statistics never loads them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import rfc8785

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


# A cohort's statistics are a pure function of these numbers: the % changes per visit, in visit
# order, and the (viable cells, 6-month % change) pairs. ``key`` names them; ``statistics`` computes.
Inputs = dict[str, Any]  # {"visits": {visit: [% change, ...]}, "dose_x": [...], "dose_y": [...]}


def inputs(by_visit: dict[str, list[float]], dose_x: list[float], dose_y: list[float]) -> Inputs:
    """The numbers a cohort's statistics are computed from, visits in plan order (baseline first, then by month)."""
    order = sorted(by_visit, key=lambda name: int(name[1:]) if name[1:].isdigit() else 0)
    return {"visits": {name: by_visit[name] for name in order}, "dose_x": dose_x, "dose_y": dose_y}


def key(values: Inputs) -> str:
    """SHA-256 of the inputs' RFC 8785 JSON: equal numbers, equal key, on every machine."""
    return hashlib.sha256(rfc8785.dumps(values)).hexdigest()


def empty(values: Inputs) -> dict[str, Any] | None:
    """The statistics of a cohort with no visit recorded (no library needed), else None."""
    if any(values["visits"].values()):
        return None
    return {"visits": [], "dose_response": asdict(Fit(0, None, None, None, None, None, None))}


def statistics(values: Inputs) -> dict[str, Any]:
    """Per visit ``summarise``, and ``fit_line`` of the dose pairs, as stored and reported (loads scipy)."""
    return {
        "visits": [{"visit": name, **asdict(summarise(found))} for name, found in values["visits"].items()],
        "dose_response": asdict(fit_line(values["dose_x"], values["dose_y"])),
    }
