"""Reagent lots and equipment used in a step (R-MAT-1..3), and the statuses a lot may be given (R-LBK-5)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from labtrack.domain.errors import Conflict, EquipmentNotUsable, ReagentNotUsable, ValidationFailed
from labtrack.domain.materials import (
    SETTABLE_LOT_STATUSES,
    EquipmentState,
    EquipmentStatus,
    Lot,
    LotStatus,
    check_materials,
    check_settable_lot_status,
)
from labtrack.domain.process import PROCESSES, TissueSource

STEP_DATE = date(2026, 3, 1)
DIGESTION = PROCESSES[TissueSource.ADIPOSE].step("digestion")


def collagenase(status: LotStatus = LotStatus.RELEASED, expires_on: date = date(2027, 1, 1)) -> Lot:
    return Lot(1, "collagenase", "COL-42", status, expires_on)


def incubator(
    status: EquipmentStatus = EquipmentStatus.IN_SERVICE, calibration_due_on: date = date(2027, 1, 1)
) -> EquipmentState:
    return EquipmentState("INC-1", "incubator", status, calibration_due_on)


def test_r_mat_1_released_unexpired_lot_is_usable():
    check_materials(DIGESTION, [collagenase()], [incubator()], STEP_DATE)


@pytest.mark.parametrize("status", [LotStatus.QUARANTINED, LotStatus.REJECTED])
def test_r_mat_1_lot_not_released_is_refused(status):
    with pytest.raises(ReagentNotUsable) as refused:
        check_materials(DIGESTION, [collagenase(status)], [incubator()], STEP_DATE)
    assert (refused.value.status, refused.value.code) == (422, "reagent_not_usable")
    assert "COL-42" in refused.value.detail
    assert status.value in refused.value.detail


def test_r_mat_1_lot_expired_before_the_step_date_is_refused():
    with pytest.raises(ReagentNotUsable) as refused:
        check_materials(DIGESTION, [collagenase(expires_on=STEP_DATE - timedelta(days=1))], [incubator()], STEP_DATE)
    assert "expired" in refused.value.detail


def test_r_mat_1_lot_expiring_on_the_step_date_is_still_usable():
    check_materials(DIGESTION, [collagenase(expires_on=STEP_DATE)], [incubator()], STEP_DATE)


def test_r_mat_1_every_supplied_lot_is_checked():
    expired_extra = Lot(2, "collagenase", "COL-OLD", LotStatus.RELEASED, date(2020, 1, 1))
    with pytest.raises(ReagentNotUsable) as refused:
        check_materials(DIGESTION, [collagenase(), expired_extra], [incubator()], STEP_DATE)
    assert "COL-OLD" in refused.value.detail


@pytest.mark.parametrize("status", [EquipmentStatus.OUT_OF_SERVICE, EquipmentStatus.RETIRED])
def test_r_mat_2_equipment_not_in_service_is_refused(status):
    with pytest.raises(EquipmentNotUsable) as refused:
        check_materials(DIGESTION, [collagenase()], [incubator(status)], STEP_DATE)
    assert (refused.value.status, refused.value.code) == (422, "equipment_not_usable")
    assert "INC-1" in refused.value.detail


def test_r_mat_2_calibration_overdue_is_refused():
    with pytest.raises(EquipmentNotUsable) as refused:
        check_materials(
            DIGESTION, [collagenase()], [incubator(calibration_due_on=STEP_DATE - timedelta(days=1))], STEP_DATE
        )
    assert "calibration" in refused.value.detail


def test_r_mat_2_calibration_due_on_the_step_date_is_usable():
    check_materials(DIGESTION, [collagenase()], [incubator(calibration_due_on=STEP_DATE)], STEP_DATE)


def test_r_mat_3_missing_kinds_are_named():
    with pytest.raises(ValidationFailed) as refused:
        check_materials(DIGESTION, [], [], STEP_DATE)
    errors = refused.value.errors
    assert set(errors) == {"reagent_lots", "equipment"}
    assert "collagenase" in " ".join(errors["reagent_lots"])
    assert "incubator" in " ".join(errors["equipment"])
    assert "collagenase" in refused.value.detail
    assert "incubator" in refused.value.detail


def test_r_mat_3_a_usable_item_of_the_wrong_kind_does_not_count():
    centrifuge = EquipmentState("CEN-1", "centrifuge", EquipmentStatus.IN_SERVICE, date(2027, 1, 1))
    with pytest.raises(ValidationFailed) as refused:
        check_materials(DIGESTION, [collagenase()], [centrifuge], STEP_DATE)
    assert set(refused.value.errors) == {"equipment"}
    assert "incubator" in refused.value.errors["equipment"][0]


# requirements §2 "Process definitions", column "required materials".
REQUIRED = {
    (TissueSource.ADIPOSE, "harvest"): ((), ()),
    (TissueSource.ADIPOSE, "digestion"): (("collagenase",), ("incubator",)),
    (TissueSource.ADIPOSE, "isolation"): ((), ("centrifuge",)),
    (TissueSource.ADIPOSE, "concentration"): ((), ("centrifuge",)),
    (TissueSource.ADIPOSE, "administration"): ((), ()),
    (TissueSource.BONE_MARROW, "harvest"): ((), ()),
    (TissueSource.BONE_MARROW, "separation"): (("separation_kit",), ("centrifuge",)),
    (TissueSource.BONE_MARROW, "concentration"): ((), ("centrifuge",)),
    (TissueSource.BONE_MARROW, "administration"): ((), ()),
}


@pytest.mark.parametrize(("tissue", "step_name"), list(REQUIRED))
def test_r_mat_3_required_kinds_per_step_match_the_spec(tissue, step_name):
    step = PROCESSES[tissue].step(step_name)
    reagent_kinds, equipment_kinds = REQUIRED[tissue, step_name]
    assert (step.reagent_kinds, step.equipment_kinds) == (reagent_kinds, equipment_kinds)
    lots = [Lot(n, kind, f"LOT-{n}", LotStatus.RELEASED, date(2027, 1, 1)) for n, kind in enumerate(reagent_kinds)]
    items = [
        EquipmentState(f"EQ-{kind}", kind, EquipmentStatus.IN_SERVICE, date(2027, 1, 1)) for kind in equipment_kinds
    ]
    check_materials(step, lots, items, STEP_DATE)
    for missing in reagent_kinds + equipment_kinds:
        with pytest.raises(ValidationFailed) as refused:
            check_materials(
                step, [lot for lot in lots if lot.kind != missing], [i for i in items if i.kind != missing], STEP_DATE
            )
        assert missing in " ".join(m for messages in refused.value.errors.values() for m in messages)


# --- R-LBK-5: the statuses a lot may be given -------------------------------------------------------------


@pytest.mark.parametrize("status", SETTABLE_LOT_STATUSES)
def test_r_lbk_5_a_lot_is_registered_with_any_status_but_recalled(status):
    assert check_settable_lot_status("COL-42", None, status.value) is status


@pytest.mark.parametrize("current", [None, LotStatus.QUARANTINED, LotStatus.RELEASED, LotStatus.REJECTED])
def test_r_lbk_5_only_a_recall_with_its_reason_makes_a_lot_recalled(current):
    with pytest.raises(ValidationFailed) as refused:
        check_settable_lot_status("COL-42", current, "recalled")
    assert list(refused.value.errors) == ["status"]
    with pytest.raises(ValidationFailed) as blank:
        check_settable_lot_status("COL-42", current, LotStatus.RECALLED, recall_reason="  ")
    assert blank.value.errors == {"reason": ["is required"]}
    recalled = check_settable_lot_status("COL-42", current, LotStatus.RECALLED, recall_reason="Supplier notice")
    assert recalled is LotStatus.RECALLED


@pytest.mark.parametrize("status", SETTABLE_LOT_STATUSES)
def test_r_lbk_5_a_recalled_lot_never_goes_back(status):
    with pytest.raises(Conflict, match="a recall is not undone"):
        check_settable_lot_status("COL-42", LotStatus.RECALLED, status.value)


def test_r_lbk_5_a_recalled_lot_keeps_its_status_and_is_not_recalled_twice():
    assert check_settable_lot_status("COL-42", LotStatus.RECALLED, "recalled") is LotStatus.RECALLED
    with pytest.raises(Conflict, match="COL-42 is already recalled"):
        check_settable_lot_status("COL-42", LotStatus.RECALLED, LotStatus.RECALLED, recall_reason="again")


def test_r_lbk_5_an_unknown_status_is_refused_with_the_settable_ones():
    with pytest.raises(ValidationFailed) as refused:
        check_settable_lot_status("COL-42", LotStatus.RELEASED, "lost")
    assert refused.value.errors == {"status": ["must be one of: quarantined, released, rejected"]}
