"""I-MR limits and Nelson rules 1–4 (R-SPC-1, R-SPC-2): each rule tripped, and just missed."""

from __future__ import annotations

import math

import pytest

from labtrack.domain.spc import BASELINE_POINTS, Limits, Rule, chart, limits_of, nelson

UNIT = Limits(centre=0.0, sigma=1.0, ucl=3.0, lcl=-3.0, mr_bar=1.128, mr_ucl=3.685)


def tripped(values: list[float], rule: Rule) -> list[int]:
    return [i for i, rules in enumerate(nelson(values, UNIT)) if rule in rules]


def test_r_spc_1_limits_come_from_the_first_20_points_by_the_mean_moving_range():
    baseline = [80 + (i % 5) * 1.5 for i in range(BASELINE_POINTS)] + [200.0]  # the 21st is not in the baseline
    ranges = [abs(baseline[i] - baseline[i - 1]) for i in range(1, BASELINE_POINTS)]
    mr_bar = sum(ranges) / 19
    centre = sum(baseline[:20]) / 20
    limits = limits_of(baseline)
    assert limits is not None
    assert math.isclose(limits.centre, centre)
    assert math.isclose(limits.sigma, mr_bar / 1.128)
    assert math.isclose(limits.ucl, centre + 3 * mr_bar / 1.128)
    assert math.isclose(limits.lcl, centre - 3 * mr_bar / 1.128)
    assert math.isclose(limits.mr_ucl, 3.267 * mr_bar)


def test_r_spc_1_no_limits_and_no_flags_before_20_points():
    assert limits_of([1.0] * 19) is None
    drawn = chart([1.0] * 10 + [99.0] * 9)
    assert drawn.limits is None
    assert not any(drawn.flags)


def test_r_spc_1_a_reset_baseline_judges_only_points_from_its_start():
    values = [50.0] * 5 + [10.0 + (i % 2) * 0.5 for i in range(20)]
    drawn = chart(values, baseline_start=5)
    assert drawn.limits is not None
    assert math.isclose(drawn.limits.centre, 10.25)
    assert drawn.flags[:5] == [[]] * 5  # 50 is far beyond 3 σ of the new baseline, but before it


@pytest.mark.parametrize("value", [3.01, -3.2])
def test_r_spc_2_rule_1_a_point_beyond_3_sigma_trips(value):
    assert tripped([value], Rule.BEYOND_3_SIGMA) == [0]


@pytest.mark.parametrize("value", [3.0, -3.0, -2.99])
def test_r_spc_2_rule_1_just_misses_on_the_limit_itself(value):
    assert tripped([value], Rule.BEYOND_3_SIGMA) == []


def test_r_spc_2_rule_2_nine_in_a_row_on_one_side_trips_on_the_ninth():
    assert tripped([0.5] * 9, Rule.NINE_ON_ONE_SIDE) == [8]
    assert tripped([-0.2] * 10, Rule.NINE_ON_ONE_SIDE) == [8, 9]


def test_r_spc_2_rule_2_just_misses_with_eight_or_a_point_on_the_centre():
    assert tripped([0.5] * 8, Rule.NINE_ON_ONE_SIDE) == []
    assert tripped([0.5] * 4 + [0.0] + [0.5] * 4, Rule.NINE_ON_ONE_SIDE) == []
    assert tripped([0.5] * 8 + [-0.5], Rule.NINE_ON_ONE_SIDE) == []


def test_r_spc_2_rule_3_six_rising_or_falling_trips_on_the_sixth():
    assert tripped([-1.0, -0.6, -0.2, 0.2, 0.6, 1.0], Rule.SIX_TRENDING) == [5]
    assert tripped([1.0, 0.6, 0.2, -0.2, -0.6, -1.0], Rule.SIX_TRENDING) == [5]


def test_r_spc_2_rule_3_just_misses_with_five_or_a_tie():
    assert tripped([-1.0, -0.6, -0.2, 0.2, 0.6], Rule.SIX_TRENDING) == []
    assert tripped([-1.0, -0.6, -0.2, -0.2, 0.6, 1.0], Rule.SIX_TRENDING) == []


def test_r_spc_2_rule_4_fourteen_alternating_trips_on_the_fourteenth():
    assert tripped([0.3 if i % 2 else -0.3 for i in range(14)], Rule.FOURTEEN_ALTERNATING) == [13]


def test_r_spc_2_rule_4_just_misses_with_thirteen_or_a_repeat():
    assert tripped([0.3 if i % 2 else -0.3 for i in range(13)], Rule.FOURTEEN_ALTERNATING) == []
    broken = [0.3 if i % 2 else -0.3 for i in range(14)]
    broken[7] = broken[6]  # two equal points in the middle break the alternation
    assert tripped(broken, Rule.FOURTEEN_ALTERNATING) == []
