"""Reagent lots and equipment used in steps (R-MAT-1..3), through the HTTP API."""

from __future__ import annotations

import pytest

from tests.api.test_identity import assert_refused
from tests.helpers import now


def digestion(lab, din: str, *, lots: list[int] | None = None, equipment: list[str] | None = None):
    body = {
        "reagent_lots": [lab.lot("collagenase")] if lots is None else lots,
        "equipment": ["INC-1"] if equipment is None else equipment,
    }
    return lab.step(din, "digestion", **body)


# --- R-MAT-1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lot", ["quarantined", "expired"])
def test_r_mat_1_unusable_reagent_lot_is_refused(lab, lot):
    din = lab.at_lab()
    problem = assert_refused(lab, lambda: digestion(lab, din, lots=[lab.lot(lot)]), 422, "reagent_not_usable")
    assert {"quarantined": "CG-Q", "expired": "CG-X"}[lot] in problem["detail"]


def test_r_mat_1_unknown_reagent_lot_is_refused(lab):
    din = lab.at_lab()
    problem = assert_refused(lab, lambda: digestion(lab, din, lots=[987654]), 422, "reagent_not_usable")
    assert "987654" in problem["detail"]


def test_r_mat_1_one_unusable_lot_among_good_ones_is_refused(lab):
    din = lab.at_lab()
    lots = [lab.lot("collagenase"), lab.lot("quarantined")]
    assert_refused(lab, lambda: digestion(lab, din, lots=lots), 422, "reagent_not_usable")


def test_r_mat_1_rejected_lot_and_a_lot_released_later(lab):
    din = lab.at_lab()
    quarantined = lab.lot("quarantined")
    lab.ok(lab.patch("admin", f"/reagent-lots/{quarantined}", {"status": "rejected"}), 200)
    assert_refused(lab, lambda: digestion(lab, din, lots=[quarantined]), 422, "reagent_not_usable")
    lab.ok(lab.patch("admin", f"/reagent-lots/{quarantined}", {"status": "released"}), 200)
    event = lab.ok(digestion(lab, din, lots=[quarantined]))
    assert event["data"]["reagent_lots"] == [{"id": quarantined, "kind": "collagenase", "lot_number": "CG-Q"}]


def test_r_mat_1_lot_expiring_today_is_still_usable(lab):
    today = now().date().isoformat()  # the step's date, in UTC
    lot = lab.ok(
        lab.post(
            "admin",
            "/reagent-lots",
            {
                "kind": "collagenase",
                "name": "last day",
                "lot_number": "CG-T",
                "expires_on": today,
                "status": "released",
            },
        )
    )
    din = lab.at_lab()
    assert lab.ok(digestion(lab, din, lots=[lot["id"]]))["data"]["reagent_lots"][0]["lot_number"] == "CG-T"


# --- R-MAT-2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["CEN-OUT", "CEN-DUE"])
def test_r_mat_2_unusable_equipment_is_refused(lab, code):
    din = lab.at_lab()
    lab.ok(digestion(lab, din))
    problem = assert_refused(lab, lambda: lab.step(din, "isolation", equipment=[code]), 422, "equipment_not_usable")
    assert code in problem["detail"]


def test_r_mat_2_unknown_equipment_is_refused(lab):
    din = lab.at_lab()
    problem = assert_refused(lab, lambda: digestion(lab, din, equipment=["INC-404"]), 422, "equipment_not_usable")
    assert "INC-404" in problem["detail"]


def test_r_mat_2_equipment_back_in_service_and_calibrated_is_usable(lab):
    din = lab.at_lab()
    lab.ok(digestion(lab, din))
    lab.ok(lab.patch("admin", "/equipment/CEN-OUT", {"status": "in_service"}), 200)
    today = now().date().isoformat()  # the step's date, in UTC
    lab.ok(lab.patch("admin", "/equipment/CEN-DUE", {"calibration_due_on": today}), 200)  # due today: still fine
    event = lab.ok(lab.step(din, "isolation", equipment=["CEN-OUT", "CEN-DUE"]))
    assert sorted(item["code"] for item in event["data"]["equipment"]) == ["CEN-DUE", "CEN-OUT"]


def test_r_mat_2_retired_equipment_is_refused(lab):
    din = lab.at_lab()
    lab.ok(lab.patch("admin", "/equipment/INC-1", {"status": "retired"}), 200)
    assert_refused(lab, lambda: digestion(lab, din), 422, "equipment_not_usable")


# --- R-MAT-3 ------------------------------------------------------------------------------------


def test_r_mat_3_missing_reagent_kind_is_named(lab):
    din = lab.at_lab()
    problem = assert_refused(lab, lambda: digestion(lab, din, lots=[]), 422, "validation_error")
    assert "collagenase" in " ".join(problem["errors"]["reagent_lots"])


def test_r_mat_3_wrong_reagent_kind_counts_as_missing(lab):
    din = lab.at_lab()
    lots = [lab.lot("separation_kit")]
    problem = assert_refused(lab, lambda: digestion(lab, din, lots=lots), 422, "validation_error")
    assert "collagenase" in " ".join(problem["errors"]["reagent_lots"])


def test_r_mat_3_missing_equipment_kind_is_named(lab):
    din = lab.at_lab()
    problem = assert_refused(lab, lambda: digestion(lab, din, equipment=["CEN-1"]), 422, "validation_error")
    assert "incubator" in " ".join(problem["errors"]["equipment"])


def test_r_mat_3_everything_missing_is_named_at_once(lab):
    din = lab.at_lab("bone_marrow")
    problem = assert_refused(
        lab, lambda: lab.step(din, "separation", reagent_lots=[], equipment=[]), 422, "validation_error"
    )
    assert "separation_kit" in " ".join(problem["errors"]["reagent_lots"])
    assert "centrifuge" in " ".join(problem["errors"]["equipment"])


def test_r_mat_3_concentration_needs_a_centrifuge(lab):
    din = lab.at_lab("bone_marrow")
    lab.ok(lab.step(din, "separation"))
    problem = assert_refused(lab, lambda: lab.step(din, "concentration", equipment=[]), 422, "validation_error")
    assert "centrifuge" in " ".join(problem["errors"]["equipment"])


def test_r_mat_1_and_r_mat_2_event_records_the_lots_and_equipment_used(lab):
    din = lab.at_lab()
    lab.ok(digestion(lab, din, lots=[lab.lot("collagenase"), lab.lot("collagenase")]))  # a repeat counts once
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    recorded = events[-1]
    assert recorded["type"] == "digestion"
    assert recorded["data"]["reagent_lots"] == [
        {"id": lab.lot("collagenase"), "kind": "collagenase", "lot_number": "CG-1"}
    ]
    assert recorded["data"]["equipment"] == [{"code": "INC-1", "kind": "incubator"}]
    assert '"lot_number":"CG-1"' in recorded["canonical"]  # part of what the chain hashes
