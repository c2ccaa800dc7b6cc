"""Who may do what (R-ACC-1..3), and what a receipt reports (R-CUS-4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labtrack.domain.actors import Action, Actor, Role, can, clinic_scope, require, sees_clinic
from labtrack.domain.errors import Forbidden, NotFound, ValidationFailed
from labtrack.domain.lifecycle import BatchState, Status, check_handoff
from labtrack.domain.process import Performer, TissueSource
from labtrack.domain.specifications import default_specification, receipt_deviations

CLINIC_ID, OTHER_CLINIC_ID = 1, 2
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ADMIN = Actor(1, "admin", "Ada Admin", Role.ADMIN, None)
TECH = Actor(2, "tech", "Tom Tech", Role.TECHNICIAN, None)
QA = Actor(3, "qa", "Quinn QA", Role.QA, None)
CLINIC = Actor(4, "clinic", "Clara Clinic", Role.CLINIC, CLINIC_ID)
OTHER = Actor(5, "other", "Otto Other", Role.CLINIC, OTHER_CLINIC_ID)
BY_ROLE = {Role.ADMIN: ADMIN, Role.TECHNICIAN: TECH, Role.QA: QA, Role.CLINIC: CLINIC}

A, T, Q, C = Role.ADMIN, Role.TECHNICIAN, Role.QA, Role.CLINIC
# R-ACC-2, R-ACC-3 and the "who" column of the HTTP API table.
ALLOWED: dict[Action, set[Role]] = {
    Action.MANAGE_REFERENCE: {A},
    Action.READ_MATERIALS: {A, T, Q},  # GET lots and equipment: lab staff
    Action.READ_PATIENTS: {T, Q, C},  # QA too: batch records under review show the patient
    Action.REGISTER_PATIENT: {T, C},
    Action.REGISTER_BATCH: {T, C},
    Action.READ_BATCH: {A, T, Q, C},
    Action.LOG_CLINIC_STEP: {C},
    Action.LOG_LAB_STEP: {T},
    Action.CUSTODY: {T, Q, C},
    Action.OPEN_DEVIATION: {T, Q, C},
    Action.LIST_DEVIATIONS: {T, Q},
    Action.QC_ENTRY: {T, Q},
    Action.QC_VERIFY: {T, Q},
    Action.DISPOSITION: {Q},
    Action.RELEASE: {Q},
    Action.CORRECT: {T, Q, C},  # who made the original, or QA
    Action.PRINT_LABEL: {T, Q, C},  # lab staff; clinic (own)
    Action.READ_RECORD: {T, Q, C},  # batch record and audit export: lab staff; clinic (own)
    Action.AUDIT: {A, Q},
    Action.PROPOSE_SPECIFICATION: {A, Q},  # R-QC-6: admin or QA proposes
    Action.APPROVE_SPECIFICATION: {Q},  # R-QC-6: another QA user approves
    Action.REPORT_REACTION: {Q, C},  # R-ADV-1: the batch's clinic, or QA
    Action.READ_INVESTIGATIONS: {Q, C},  # clinics: their own reactions and lookbacks
    Action.INVESTIGATE: {Q},  # R-ADV-3, R-LBK-1, R-LBK-4
    Action.ACKNOWLEDGE_LOOKBACK: {C},  # R-LBK-3
    Action.RECORD_FOLLOW_UP: {C},  # R-OUT-2, R-OUT-3: the batch's clinic
    Action.READ_OUTCOMES: {Q, C},  # R-OUT-5: a clinic, its own patients
    Action.READ_TRENDS: {Q},  # R-SPC-3
    Action.RESET_TREND_BASELINE: {Q},  # R-SPC-1
    Action.APPROVE_FOLLOW_UP_PLAN: {Q},  # R-OUT-1
}


def test_r_acc_table_covers_every_action():
    assert set(ALLOWED) == set(Action)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_r_acc_2_3_role_by_action(role, action):
    actor = BY_ROLE[role]
    allowed = role in ALLOWED[action]
    assert can(actor, action) is allowed
    if allowed:
        require(actor, action)
    else:
        with pytest.raises(Forbidden) as refused:
            require(actor, action)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")


@pytest.mark.parametrize("action", [Action.READ_BATCH, Action.LOG_CLINIC_STEP, Action.CUSTODY, Action.LOG_LAB_STEP])
def test_r_acc_1_another_clinics_resource_is_not_found(action):
    # 404 even for an action the role could never take: nothing about the batch leaks.
    assert not can(OTHER, action, CLINIC_ID)
    with pytest.raises(NotFound) as refused:
        require(OTHER, action, CLINIC_ID, what="batch")
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    assert refused.value.detail == "No such batch."


def test_r_acc_1_clinic_users_act_on_their_own_clinic():
    assert can(CLINIC, Action.LOG_CLINIC_STEP, CLINIC_ID)
    require(CLINIC, Action.READ_BATCH, CLINIC_ID)
    with pytest.raises(Forbidden):
        require(CLINIC, Action.LOG_LAB_STEP, CLINIC_ID)


@pytest.mark.parametrize("actor", [TECH, QA, ADMIN])
def test_r_acc_1_lab_users_see_every_clinic(actor):
    for clinic_id in (CLINIC_ID, OTHER_CLINIC_ID):
        assert can(actor, Action.READ_BATCH, clinic_id)
        require(actor, Action.READ_BATCH, clinic_id)


def test_r_acc_1_a_clinic_user_is_scoped_to_their_own_clinic_and_lab_users_to_none():
    assert (clinic_scope(CLINIC), clinic_scope(OTHER)) == (CLINIC_ID, OTHER_CLINIC_ID)
    assert [clinic_scope(actor) for actor in (ADMIN, TECH, QA)] == [None, None, None]
    # even a lab user record carrying a clinic id is not narrowed by it: the role decides
    assert clinic_scope(Actor(6, "odd", "Odd Tech", Role.TECHNICIAN, OTHER_CLINIC_ID)) is None
    for actor in (ADMIN, TECH, QA, CLINIC, OTHER):  # one thing or many rows: the same rule
        for clinic_id in (CLINIC_ID, OTHER_CLINIC_ID):
            assert sees_clinic(actor, clinic_id) == (clinic_scope(actor) in (None, clinic_id))


@pytest.mark.parametrize(
    "action",
    [
        Action.LOG_LAB_STEP,
        Action.LOG_CLINIC_STEP,
        Action.CUSTODY,
        Action.QC_ENTRY,
        Action.QC_VERIFY,
        Action.DISPOSITION,
        Action.RELEASE,
        Action.CORRECT,
        Action.PRINT_LABEL,
        Action.READ_RECORD,
    ],
)
def test_r_acc_2_admins_have_no_batch_authority(action):
    with pytest.raises(Forbidden):
        require(ADMIN, action, CLINIC_ID)


def test_r_acc_2_admins_cannot_take_custody():
    state = BatchState(
        status=Status.RECEIVED,
        tissue_source=TissueSource.ADIPOSE,
        clinic_id=CLINIC_ID,
        steps_done=("harvest",),
        custodian_id=TECH.id,
        custodian_side=Performer.LAB,
    )
    with pytest.raises(ValidationFailed) as refused:
        check_handoff(state, TECH, ADMIN, at=NOW)
    assert set(refused.value.errors) == {"to_username"}
    assert check_handoff(state, TECH, QA, at=NOW) == Status.RECEIVED  # lab to lab stays in the lab


SPEC = default_specification(TissueSource.ADIPOSE)


def deviations(seal_id="SEAL-1", condition="intact", temperature_c=8.0, spec=SPEC) -> list[str]:
    found = receipt_deviations(
        handoff_seal="SEAL-1", seal_id=seal_id, condition=condition, temperature_c=temperature_c, spec=spec
    )
    return [kind for kind, _ in found]


def test_r_cus_4_intact_receipt_opens_nothing():
    assert deviations() == []


def test_r_cus_4_seal_mismatch():
    found = receipt_deviations(
        handoff_seal="SEAL-1", seal_id="SEAL-9", condition="intact", temperature_c=8.0, spec=SPEC
    )
    assert [kind for kind, _ in found] == ["seal_mismatch"]
    assert "'SEAL-9'" in found[0][1]
    assert "'SEAL-1'" in found[0][1]


def test_r_cus_4_damaged_container():
    assert deviations(condition="damaged") == ["damaged_container"]


@pytest.mark.parametrize(("temperature", "excursion"), [(2, False), (25, False), (1.9, True), (25.1, True), (-5, True)])
def test_r_cus_4_transport_range_2_to_25_inclusive(temperature, excursion):
    assert SPEC["transport_temperature_c"] == {"min": 2, "max": 25}
    assert deviations(temperature_c=temperature) == (["temperature_excursion"] if excursion else [])


def test_r_cus_4_range_comes_from_the_specification():
    cold_chain = SPEC | {"transport_temperature_c": {"min": 2, "max": 8}}
    assert deviations(temperature_c=20, spec=cold_chain) == ["temperature_excursion"]
    assert deviations(temperature_c=20, spec={}) == []  # a specification without a range: the default


def test_r_cus_4_every_problem_is_reported():
    assert deviations(seal_id="SEAL-2", condition="damaged", temperature_c=30) == [
        "seal_mismatch",
        "damaged_container",
        "temperature_excursion",
    ]
