"""Outcome statistics (R-OUT-5) against values worked out by hand for a known data set.

The quantiles of Student's t are from printed tables, not from scipy, so the check is independent.
"""

from __future__ import annotations

import math

from labtrack.domain.outcomes import change, empty, fit_line, inputs, key, statistics, summarise, viable_cells

T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445}


def test_r_out_5_mean_median_and_t_interval_of_a_known_set():
    data = [12.0, 25.0, 31.0, 40.0, 52.0]
    n, mean = 5, 32.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in data) / (n - 1))
    half = T_975[n - 1] * sd / math.sqrt(n)
    found = summarise(data)
    assert (found.n, found.mean, found.median) == (5, 32.0, 31.0)
    assert math.isclose(found.ci_low, mean - half, rel_tol=1e-6)
    assert math.isclose(found.ci_high, mean + half, rel_tol=1e-6)


def test_r_out_5_small_sets_have_no_interval():
    assert summarise([]).n == 0
    assert summarise([]).mean is None
    one = summarise([7.5])
    assert (one.n, one.mean, one.ci_low) == (1, 7.5, None)


def test_r_out_5_slope_and_its_interval_of_a_known_line():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [2.0, 4.1, 5.9, 8.2, 9.9]
    n = 5
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    intercept = my - slope * mx
    sse = sum((b - intercept - slope * a) ** 2 for a, b in zip(x, y, strict=True))
    half = T_975[n - 2] * math.sqrt(sse / (n - 2) / sxx)
    fit = fit_line(x, y)
    assert math.isclose(fit.slope, slope)
    assert math.isclose(fit.slope, 1.99)
    assert math.isclose(fit.intercept, intercept, abs_tol=1e-9)
    assert math.isclose(fit.ci_low, slope - half, rel_tol=1e-6)
    assert math.isclose(fit.ci_high, slope + half, rel_tol=1e-6)
    assert fit_line([1.0, 2.0], [1.0, 2.0]).slope is None  # a line through two points has no interval


def test_r_out_5_change_from_baseline_and_viable_dose():
    assert change(100.0, 130.0).absolute == 30.0
    assert change(100.0, 130.0).percent == 30.0
    assert change(0.0, 5.0).percent is None
    assert viable_cells(4.0e7, 90.0) == 3.6e7
    assert viable_cells(None, 90.0) is None


def test_r_out_5_a_cohorts_statistics_are_keyed_by_its_numbers_alone():
    values = inputs({"m6": [30.0, 10.0, 40.0], "m3": [10.0, 5.0, 6.0]}, [1e7, 2e7, 3e7], [30.0, 10.0, 40.0])
    assert list(values["visits"]) == ["m3", "m6"]  # in visit order, whatever order they were met in
    same = inputs({"m3": [10.0, 5.0, 6.0], "m6": [30.0, 10.0, 40.0]}, [1e7, 2e7, 3e7], [30.0, 10.0, 40.0])
    other = inputs({"m3": [10.0, 5.0, 6.0], "m6": [30.0, 10.0, 41.0]}, [1e7, 2e7, 3e7], [30.0, 10.0, 41.0])
    assert key(values) == key(same) != key(other)
    assert len(key(values)) == 64
    computed = statistics(values)
    assert [v["visit"] for v in computed["visits"]] == ["m3", "m6"]
    assert computed["visits"][1]["mean"] == 80 / 3
    assert computed["dose_response"]["n"] == 3
    assert empty(values) is None
    assert empty(inputs({}, [], [])) == {
        "visits": [],
        "dose_response": {"n": 0, "slope": None, "intercept": None, "ci_low": None, "ci_high": None, "r": None,
                          "p_value": None},
    }  # fmt: skip
