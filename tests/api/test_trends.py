"""Quality trends (R-SPC-1..3): I-MR charts over released batches, Nelson flags, a signed re-baseline,
and the trend watcher telling QA once per new flag, with two watchers at once too.

One set of 22 released adipose batches is built for the module (each release is ~20 requests).
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from labtrack import jobs
from labtrack.domain.spc import limits_of
from labtrack.models import OutboxMessage, TrendFlag
from labtrack.services import outbox
from tests.conftest import ON_POSTGRES, fresh_database, make_app
from tests.helpers import GOOD_RESULTS, Lab, signature
from tests.outcome_support import released

VIABILITY = [88, 89, 87, 90, 88, 86, 89, 88, 87, 91, 88, 89, 86, 88, 90, 87, 89, 88, 87, 89, 70, 88.5]


@pytest.fixture(scope="module")
def world(_template, tmp_path_factory):
    directory = tmp_path_factory.mktemp("trends")
    app = make_app(fresh_database(_template, directory), directory)
    lab = Lab.build(app, app.test_client())
    dins = [released(lab, f"MRN-T{i}", {"viability_pct": value}) for i, value in enumerate(VIABILITY)]
    yield lab, dins
    app.extensions["labtrack.db"].dispose()


def test_r_spc_3_the_chart_document_and_who_may_read_it(world):
    lab, dins = world
    chart = lab.ok(lab.get("qa", "/trends/adipose/viability_pct"), 200)
    assert [p["din"] for p in chart["points"]] == dins
    assert [p["value"] for p in chart["points"]] == VIABILITY
    expected = limits_of([float(v) for v in VIABILITY])
    assert math.isclose(chart["centre"], sum(VIABILITY[:20]) / 20)
    assert math.isclose(chart["ucl"], expected.ucl)
    assert math.isclose(chart["lcl"], expected.lcl)
    assert math.isclose(chart["mr_ucl"], expected.mr_ucl)
    assert chart["unit"] == "%"
    assert [p["flags"] for p in chart["points"]][20] == ["nelson_1"]
    assert sum(1 for p in chart["points"] if p["flags"]) == 1
    assert all(p["in_baseline"] for p in chart["points"][:20])
    assert not chart["points"][20]["in_baseline"]
    for user in ("tech", "clinic", "admin"):
        assert lab.get(user, "/trends/adipose/viability_pct").status_code == 403
    assert lab.get("qa", "/trends/adipose/colour").status_code == 404
    assert lab.get("qa", "/trends/kidney/viability_pct").status_code == 404


def test_r_spc_1_tnc_per_ml_harvested_and_endotoxin_charts(world):
    lab, dins = world
    tnc = lab.ok(lab.get("qa", "/trends/adipose/tnc_per_ml_harvested"), 200)
    volume = lab.harvest_data()["volume_ml"]
    assert [p["value"] for p in tnc["points"]] == pytest.approx([GOOD_RESULTS["adipose"]["tnc_total"] / volume] * 22)
    assert tnc["unit"] == "cells/mL"
    assert not any(p["flags"] for p in tnc["points"])  # constant: σ = 0 and every point on the centre
    endotoxin = lab.ok(lab.get("qa", "/trends/adipose/endotoxin_eu_per_ml"), 200)
    assert endotoxin["unit"] == "EU/mL"
    assert len(endotoxin["points"]) == len(dins)
    assert lab.ok(lab.get("qa", "/trends/bone_marrow/viability_pct"), 200)["points"] == []


def flags_and_alerts(lab: Lab) -> tuple[int, int]:
    session = lab.db.reader()
    try:
        flags = session.execute(select(func.count()).select_from(TrendFlag)).scalar_one()
        alerts = session.execute(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.topic == "trend.flag")
        ).scalar_one()
        return flags, alerts
    finally:
        session.close()


def test_r_spc_2_a_new_flag_notifies_qa_once_as_a_trend_alert(world):
    lab, dins = world
    held_before = lab.sql("SELECT COUNT(*) FROM deviations")
    assert jobs.trend_watch(lab.db) == [f"{dins[20]}:viability_pct:nelson_1"]
    assert jobs.trend_watch(lab.db) == []
    assert flags_and_alerts(lab) == (1, 1)
    assert lab.sql("SELECT COUNT(*) FROM deviations") == held_before  # neither a deviation...
    assert lab.ok(lab.get("qa", f"/batches/{dins[20]}"), 200)["held"] is False  # ...nor a hold
    jobs.dispatch(lab.db, outbox.Settings.of(lab.app.config))
    told = lab.sql(
        "SELECT u.username, n.message FROM notifications n JOIN users u ON u.id = n.user_id "
        "WHERE n.topic = 'trend.flag'"
    )
    assert sorted(name for name, _ in told) == ["qa", "qa2"]
    assert "Trend alert" in told[0][1]
    assert "not a deviation" in told[0][1]


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
def test_r_spc_2_two_watchers_at_once_record_each_flag_once(world):
    lab, _dins = world
    lab.sql("DELETE FROM trend_flags")
    before = flags_and_alerts(lab)[1]
    start = threading.Barrier(2)
    results: list[list[str]] = []

    def run() -> None:
        start.wait()
        results.append(jobs.trend_watch(lab.db))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r) for r in results) == [0, 1]
    assert flags_and_alerts(lab) == (1, before + 1)


def test_r_spc_1_qa_resets_the_baseline_with_a_signed_reason(world):
    lab, dins = world
    chart = lab.ok(lab.get("qa", "/trends/adipose/viability_pct"), 200)
    starts_at = chart["points"][2]["at"]
    body = {"starts_at": starts_at, "reason": "new collagenase supplier", "signature": signature("approved")}
    assert lab.post("tech", "/trends/adipose/viability_pct/baseline", body).status_code == 403
    wrong = lab.post("qa", "/trends/adipose/viability_pct/baseline", body | {"signature": signature("approved", "no")})
    assert wrong.status_code == 401
    assert lab.post("qa", "/trends/adipose/viability_pct/baseline", body | {"reason": " "}).status_code == 422
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert lab.post("qa", "/trends/adipose/viability_pct/baseline", body | {"starts_at": future}).status_code == 422
    assert lab.sql("SELECT COUNT(*) FROM trend_baselines")[0][0] == 0
    reset = lab.ok(lab.post("qa", "/trends/adipose/viability_pct/baseline", body))
    assert reset["signature"]["meaning"] == "approved"
    assert reset["signature"]["username"] == "qa"
    after = lab.ok(lab.get("qa", "/trends/adipose/viability_pct"), 200)
    assert after["baseline_from"] == dins[2]
    assert after["baseline_reason"] == "new collagenase supplier"
    assert not any(p["in_baseline"] for p in after["points"][:2])
    assert all(p["in_baseline"] for p in after["points"][2:22])
    assert after["centre"] == pytest.approx(sum(VIABILITY[2:22]) / 20)
    # the point that tripped rule 1 is now inside the baseline: judged again, under the new baseline
    audited = lab.sql("SELECT data FROM admin_events WHERE type = 'trend_baseline_reset'")
    assert len(audited) == 1
