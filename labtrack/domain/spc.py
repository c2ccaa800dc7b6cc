"""Statistical process control (R-SPC-1, R-SPC-2): I-MR charts and Nelson rules 1–4.

An individuals and moving-range chart takes its centre line and limits from a
baseline of the first ``BASELINE_POINTS`` points (from the start QA last set):
the centre is their mean, σ is estimated from their mean moving range
(MR̄ / d₂, d₂ = 1.128 for ranges of two), the individuals' limits are the centre
± 3σ and the moving range's upper limit is D₄ · MR̄ (D₄ = 3.267). Until the
baseline has its 20 points there are no limits and nothing is flagged.

Nelson's rules, each flagging the point that completes its pattern:

1. a point more than 3σ from the centre line;
2. nine points in a row on the same side of the centre line;
3. six points in a row steadily rising or steadily falling;
4. fourteen points in a row alternating up and down.

A flag is a trend alert for QA: it neither opens a deviation nor blocks a release.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

BASELINE_POINTS = 20
D2 = 1.128
D4 = 3.267
SAME_SIDE_RUN = 9
TREND_RUN = 6
ALTERNATING_RUN = 14


class Metric(StrEnum):
    VIABILITY = "viability_pct"
    TNC_PER_ML = "tnc_per_ml_harvested"
    ENDOTOXIN = "endotoxin_eu_per_ml"


UNITS = {Metric.VIABILITY: "%", Metric.TNC_PER_ML: "cells/mL", Metric.ENDOTOXIN: "EU/mL"}
TITLES = {
    Metric.VIABILITY: "Viability",
    Metric.TNC_PER_ML: "Total nucleated cells per mL harvested",
    Metric.ENDOTOXIN: "Endotoxin",
}


class Rule(StrEnum):
    BEYOND_3_SIGMA = "nelson_1"
    NINE_ON_ONE_SIDE = "nelson_2"
    SIX_TRENDING = "nelson_3"
    FOURTEEN_ALTERNATING = "nelson_4"


RULE_WORDS = {
    Rule.BEYOND_3_SIGMA: "a point beyond 3 σ",
    Rule.NINE_ON_ONE_SIDE: "9 in a row on one side of the centre",
    Rule.SIX_TRENDING: "6 in a row rising or falling",
    Rule.FOURTEEN_ALTERNATING: "14 in a row alternating up and down",
}


@dataclass(frozen=True)
class Limits:
    centre: float
    sigma: float
    ucl: float
    lcl: float
    mr_bar: float
    mr_ucl: float


@dataclass
class Chart:
    values: list[float]
    baseline_start: int  # index of the baseline's first point
    limits: Limits | None
    moving_ranges: list[float | None]
    flags: list[list[Rule]] = field(default_factory=list)


def limits_of(baseline: Sequence[float]) -> Limits | None:
    """Centre and limits from the baseline's points; None until there are ``BASELINE_POINTS`` of them."""
    if len(baseline) < BASELINE_POINTS:
        return None
    points = list(baseline[:BASELINE_POINTS])
    centre = sum(points) / len(points)
    ranges = [abs(b - a) for a, b in itertools.pairwise(points)]
    mr_bar = sum(ranges) / len(ranges)
    sigma = mr_bar / D2
    # Viability, cells and endotoxin cannot be negative: a lower limit below zero would never be reached.
    return Limits(centre, sigma, centre + 3 * sigma, max(centre - 3 * sigma, 0.0), mr_bar, D4 * mr_bar)


def moving_ranges(values: Sequence[float]) -> list[float | None]:
    return [None, *(abs(b - a) for a, b in itertools.pairwise(values))]


def nelson(values: Sequence[float], limits: Limits) -> list[list[Rule]]:
    """The rules each point trips (R-SPC-2), in rule order."""
    flags: list[list[Rule]] = [[] for _ in values]
    side_run = rise_run = fall_run = alt_run = 0
    previous_side = previous_step = 0
    for i, value in enumerate(values):
        if abs(value - limits.centre) > 3 * limits.sigma:
            flags[i].append(Rule.BEYOND_3_SIGMA)
        side = (value > limits.centre) - (value < limits.centre)
        side_run = side_run + 1 if side != 0 and side == previous_side else (1 if side != 0 else 0)
        previous_side = side
        if side_run >= SAME_SIDE_RUN:
            flags[i].append(Rule.NINE_ON_ONE_SIDE)
        step = 0 if i == 0 else (value > values[i - 1]) - (value < values[i - 1])
        rise_run = rise_run + 1 if step > 0 else 1
        fall_run = fall_run + 1 if step < 0 else 1
        if rise_run >= TREND_RUN or fall_run >= TREND_RUN:
            flags[i].append(Rule.SIX_TRENDING)
        # A run of n alternating points has n - 1 steps, each the opposite sign of the one before.
        alt_run = (alt_run + 1 if step != 0 and step == -previous_step else 2) if step != 0 else 1
        previous_step = step
        if alt_run >= ALTERNATING_RUN:
            flags[i].append(Rule.FOURTEEN_ALTERNATING)
    return flags


def chart(values: Sequence[float], baseline_start: int = 0) -> Chart:
    """The I-MR chart of ``values`` in time order, its baseline starting at ``baseline_start``.

    Points before the baseline are drawn but judged by nothing; those from it on are judged.
    """
    values = list(values)
    limits = limits_of(values[baseline_start:])
    flags: list[list[Rule]] = [[] for _ in values]
    if limits is not None:
        flags[baseline_start:] = nelson(values[baseline_start:], limits)
    return Chart(values, baseline_start, limits, moving_ranges(values), flags)
