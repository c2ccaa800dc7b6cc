"""R-OUT-5: the outcomes report's statistics are computed by a real Celery worker (which may load scipy; the
web process may not), stored once under the key of their inputs, and match values computed here by hand."""

from __future__ import annotations

import math

import pytest

from tests.api.test_follow_up import DENSITIES, DOSES, followed_up

T_975 = {1: 12.706205, 2: 4.302653}  # Student's t, 97.5th percentile, from printed tables


def test_r_out_5_a_worker_computes_the_known_mean_ci_and_slope_once_per_set_of_numbers(lab, start_worker):
    followed_up(lab)
    start_worker(beat=False)
    report = lab.ok(lab.get("qa", "/reports/outcomes", tissue_source="adipose"), 200)
    (cohort,) = report["cohorts"]
    assert cohort["statistics"] == "computed"

    m6_pct = [100 * (m6 - base) / base for base, _m3, m6 in DENSITIES.values()]  # 30, 10, 40
    mean = sum(m6_pct) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in m6_pct) / 2)
    summary = next(v for v in cohort["visits"] if v["visit"] == "m6")
    assert (summary["n"], summary["median"]) == (3, 30.0)
    assert summary["mean"] == pytest.approx(mean)
    assert summary["ci_low"] == pytest.approx(mean - T_975[2] * sd / math.sqrt(3))
    assert summary["ci_high"] == pytest.approx(mean + T_975[2] * sd / math.sqrt(3))

    x = [tnc * 88 / 100 for tnc in DOSES]  # viable cells
    mx, my = sum(x) / 3, mean
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, m6_pct, strict=True)) / sxx
    intercept = my - slope * mx
    residual = math.sqrt(sum((b - intercept - slope * a) ** 2 for a, b in zip(x, m6_pct, strict=True)) / (3 - 2))
    half = T_975[1] * residual / math.sqrt(sxx)
    fit = cohort["dose_response"]
    assert (fit["n"], fit["visit"]) == (3, "m6")
    assert fit["slope"] == pytest.approx(slope)
    assert fit["intercept"] == pytest.approx(intercept)
    assert fit["ci_low"] == pytest.approx(slope - half, rel=1e-6)
    assert fit["ci_high"] == pytest.approx(slope + half, rel=1e-6)

    # stored once: the same numbers again (the clinic's own patients here) read the stored answer
    assert lab.sql("SELECT COUNT(*) FROM outcome_statistics")[0][0] == 1
    mine = lab.ok(lab.get("clinic", "/reports/outcomes", tissue_source="adipose"), 200)
    assert mine["cohorts"] == report["cohorts"]
    assert lab.sql("SELECT COUNT(*) FROM outcome_statistics")[0][0] == 1
