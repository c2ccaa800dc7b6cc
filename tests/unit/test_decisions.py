"""The one policy for batch actions (``labtrack.domain.decisions``): allowed, or refused with why and who
can instead, with no database (R-REL-1, R-QC-3, R-QC-4, R-CUS-1, R-ACC-3, R-COR-1, R-QC-6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labtrack.domain.actors import Actor, Role
from labtrack.domain.decisions import (
    BatchFacts,
    ResultFacts,
    blockers_for,
    check_label,
    check_qc_entry,
    check_release,
    check_verify,
    decide,
    decision_for,
)
from labtrack.domain.errors import (
    Conflict,
    CustodyViolation,
    Forbidden,
    InvalidTransition,
    ReleaseBlocked,
    ValidationFailed,
)
from labtrack.domain.lifecycle import BatchState, PendingTransfer, Status
from labtrack.domain.process import Performer, TissueSource
from labtrack.domain.qc import ALL_TESTS, required_tests, validate_specification
from labtrack.domain.specifications import (
    FOLLOW_UP_PLAN,
    ProposalFacts,
    check_approval,
    check_proposal,
    decide_proposal,
    default_specification,
)

CLINIC = 1
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
TECH = Actor(10, "tech", "Tomas Bench", Role.TECHNICIAN, None)
TECH2 = Actor(11, "tech2", "Tara Second", Role.TECHNICIAN, None)
QA = Actor(20, "qa", "Quinn Assurance", Role.QA, None)
QA2 = Actor(21, "qa2", "Quincy Reviewer", Role.QA, None)
CLINIC_USER = Actor(30, "clinic", "Clara Clinic", Role.CLINIC, CLINIC)
ADMIN = Actor(40, "admin", "Ada Admin", Role.ADMIN, None)
REQUIRED = tuple(required_tests(default_specification(TissueSource.ADIPOSE)))
GOOD = {"viability_pct": 88, "tnc_total": 4e7, "gram_stain": "no_organisms_seen"}


def state(status: Status, **changes) -> BatchState:
    values = {
        "status": status,
        "tissue_source": TissueSource.ADIPOSE,
        "clinic_id": CLINIC,
        "steps_done": ("harvest", "digestion", "isolation", "concentration"),
        "custodian_id": TECH.id,
        "custodian_side": Performer.LAB,
        "expires_at": NOW + timedelta(hours=12),
    }
    return BatchState(**(values | changes))


def results(entered_by: int = TECH.id, verified_by: int | None = TECH2.id) -> tuple[ResultFacts, ...]:
    return tuple(
        ResultFacts(
            i,
            test,
            GOOD.get(test, "pending" if test == "sterility_culture" else 1.0),
            True,
            entered_by,
            verified_by,
            f"{i:064x}",
        )
        for i, test in enumerate(ALL_TESTS, start=1)
    )


def awaiting(**participation: frozenset[str]) -> BatchFacts:
    return BatchFacts(
        state(Status.AWAITING_RELEASE),
        NOW,
        REQUIRED,
        results(),
        participation={TECH.id: frozenset({"digestion", "qc_recorded"}), TECH2.id: frozenset({"qc_verified"})}
        | {int(k): v for k, v in participation.items()},
    )


def test_r_rel_1_qa_who_took_no_part_may_release():
    decision = decision_for(decide(QA, awaiting()), "release")
    assert decision.allowed
    check_release(QA, awaiting())


def test_r_rel_1_segregation_of_duties_names_who_must_release_instead():
    facts = awaiting(**{str(QA.id): frozenset({"qc_verified"})})
    decision = decision_for(decide(QA, facts), "release")
    assert not decision.allowed
    assert decision.code == "segregation_of_duties"
    assert decision.sentence == "Another QA user must release: you verified QC results on this batch."
    with pytest.raises(ReleaseBlocked) as refused:
        check_release(QA, facts)
    assert refused.value.blockers == [
        {
            "code": "segregation_of_duties",
            "detail": "Another QA user must release: you verified QC results on this batch.",
        }
    ]
    assert decision_for(decide(QA2, facts), "release").allowed


def test_r_rel_1_every_blocker_is_in_the_refusal_and_in_words():
    facts = BatchFacts(state(Status.PROCESSED, held=True), NOW, REQUIRED, (), open_deviation_ids=(7,))
    codes = [b.code for b in blockers_for(QA, facts)]
    assert codes[:2] == ["not_ready:processed", "qc_missing:viability_pct"]
    assert "open_deviation:7" in codes
    decision = decision_for(decide(QA, facts), "release")
    assert not decision.allowed
    assert "Deviation 7 is open" in decision.sentence


def test_r_qc_3_the_enterer_is_told_someone_else_must_verify():
    facts = BatchFacts(state(Status.PROCESSED), NOW, REQUIRED, results(verified_by=None))
    mine = [d for d in decide(TECH, facts) if d.action == "verify"]
    assert mine
    assert not any(d.allowed for d in mine)
    assert mine[0].sentence == "Another technician or QA user must verify it: you entered this result."
    with pytest.raises(Forbidden):
        check_verify(TECH, facts.results[0])
    assert all(d.allowed for d in decide(TECH2, facts) if d.action == "verify")


def test_r_qc_3_r_rel_1_qa_is_warned_before_verifying_that_another_qa_user_must_release():
    facts = BatchFacts(state(Status.PROCESSED), NOW, REQUIRED, results(verified_by=None))
    verify = next(d for d in decide(QA, facts) if d.action == "verify")
    assert verify.allowed
    assert verify.warning == "If you do this, another QA user must release this batch."
    assert next(d for d in decide(TECH2, facts) if d.action == "verify").warning == ""  # a technician never releases


def test_r_qc_3_a_verified_result_is_not_verified_twice():
    with pytest.raises(Conflict):
        check_verify(QA, results()[0])


def test_r_acc_3_a_role_that_does_not_take_an_action_is_told_who_does():
    facts = awaiting()
    release = decision_for(decide(TECH, facts), "release")
    assert (release.allowed, release.code, release.sentence) == (False, "forbidden", "This is done by a QA user.")
    assert not decision_for(decide(ADMIN, facts), "open_deviation").allowed
    assert decision_for(decide(CLINIC_USER, facts), "open_deviation").allowed


def test_r_cus_1_only_the_custodian_is_offered_the_hand_off():
    facts = BatchFacts(state(Status.RELEASED), NOW, custodian_name="Tomas Bench (tech)")
    assert decision_for(decide(TECH, facts), "handoff").allowed
    other = decision_for(decide(TECH2, facts), "handoff")
    assert not other.allowed
    assert other.sentence == (
        "Only the batch's current custodian can hand it off. Ask the custodian, Tomas Bench (tech)."
    )


def test_r_cus_1_only_the_named_recipient_is_offered_the_receipt():
    transfer = PendingTransfer(CLINIC_USER.id, TECH.id, Performer.LAB, "SEAL-1", Status.COLLECTED)
    facts = BatchFacts(
        state(Status.IN_TRANSIT, custodian_id=CLINIC_USER.id, custodian_side=Performer.CLINIC, transfer=transfer),
        NOW,
        recipient_name="Tomas Bench (tech)",
    )
    assert decision_for(decide(TECH, facts), "receipt").allowed
    refused = decision_for(decide(TECH2, facts), "receipt")
    assert "Ask Tomas Bench (tech), named in the hand-off." in refused.sentence
    assert next(d.action for d in decide(TECH, facts)) == "receipt"  # nothing else of the process while in transit


def test_r_qc_4_the_panel_is_offered_once_processing_is_done_in_lab_custody():
    assert decision_for(decide(TECH, BatchFacts(state(Status.PROCESSED), NOW)), "qc").allowed
    with pytest.raises(InvalidTransition):
        check_qc_entry(state(Status.PROCESSING), "viability_pct", 88, [])
    with pytest.raises(CustodyViolation):
        check_qc_entry(state(Status.PROCESSED, custodian_side=Performer.CLINIC), "viability_pct", 88, [])
    with pytest.raises(Conflict):
        check_qc_entry(state(Status.PROCESSED), "viability_pct", 88, [90])


def test_r_qc_5_the_final_culture_is_recorded_wherever_the_batch_is_after_its_sample():
    delivered = state(Status.DELIVERED, custodian_side=Performer.CLINIC)
    assert check_qc_entry(delivered, "sterility_culture", "no_growth", ["pending"]) is True
    with pytest.raises(InvalidTransition):
        check_qc_entry(delivered, "sterility_culture", "no_growth", [])
    with pytest.raises(Conflict):
        check_qc_entry(delivered, "sterility_culture", "growth", ["pending", "no_growth"])


@pytest.mark.parametrize(
    ("status", "kinds"),
    [
        (Status.REGISTERED, ["collection"]),
        (Status.PROCESSING, []),
        (Status.RELEASED, ["product"]),
        (Status.DELIVERED, ["product"]),
    ],
)
def test_labels_a_status_allows(status, kinds):
    offered = [
        d.action for d in decide(TECH, BatchFacts(state(status), NOW)) if d.action.startswith("label:") and d.allowed
    ]
    assert offered == [f"label:{kind}" for kind in kinds]
    for kind in {"product", "collection"} - set(kinds):
        with pytest.raises(InvalidTransition):
            check_label(status, kind)


def test_r_acc_3_technicians_read_the_record_of_any_batch():
    assert decision_for(decide(TECH, awaiting()), "record").allowed
    assert not decision_for(decide(ADMIN, awaiting()), "record").allowed


def test_r_qc_6_another_qa_user_approves_a_proposal_on_the_version_in_force():
    proposal = ProposalFacts(1, "proposed", QA.id, base_version=3, version_in_force=3)
    approve = decide_proposal(QA, proposal)[0]
    assert approve.sentence == "Another QA user must approve it: you proposed it."
    assert decide_proposal(QA2, proposal)[0].allowed
    assert not decide_proposal(ADMIN, proposal)[0].allowed
    with pytest.raises(Conflict):
        check_approval(QA2, ProposalFacts(1, "proposed", QA.id, base_version=2, version_in_force=3))
    with pytest.raises(Conflict):
        check_approval(QA2, ProposalFacts(1, "withdrawn", QA.id, base_version=3, version_in_force=3))


def test_r_out_1_follow_up_plans_change_under_the_specifications_rules_admin_proposes_qa_approves():
    check_proposal(ADMIN, "Shorter first window after the audit", None, FOLLOW_UP_PLAN)
    with pytest.raises(ValidationFailed):
        check_proposal(ADMIN, "  ", None, FOLLOW_UP_PLAN)  # a plan says why it changes, as a specification does
    for refused, error in ((QA, Forbidden), (TECH, Forbidden)):
        with pytest.raises(error):
            check_proposal(refused, "why", None, FOLLOW_UP_PLAN)
    with pytest.raises(Conflict):
        check_proposal(ADMIN, "why", 7, FOLLOW_UP_PLAN)  # one open proposal per tissue source
    proposed = ProposalFacts(7, "proposed", ADMIN.id, base_version=1, version_in_force=1)
    check_approval(QA, proposed, FOLLOW_UP_PLAN)
    with pytest.raises(Forbidden):
        check_approval(ADMIN, proposed, FOLLOW_UP_PLAN)
    with pytest.raises(Forbidden):
        check_approval(QA, ProposalFacts(7, "proposed", QA.id, base_version=1, version_in_force=1), FOLLOW_UP_PLAN)
    with pytest.raises(Conflict):
        check_approval(QA, ProposalFacts(7, "approved", ADMIN.id, base_version=1, version_in_force=1), FOLLOW_UP_PLAN)


@pytest.mark.parametrize(
    ("test", "rule", "message"),
    [
        ("viability_pct", {"min": 150}, "a percentage, from 0 to 100"),
        ("cd34_pct", {"max": -5}, "a percentage, from 0 to 100"),
        ("tnc_total", {"min": 0}, "a cell count, above 0"),
        ("endotoxin_eu_per_ml", {"max_eu_per_kg": 0}, "above 0 EU/kg"),
        ("viability_pct", {"min": 90, "max": 80}, "must not be above the upper limit"),
    ],
)
def test_r_qc_6_limits_are_checked_against_physical_ranges(test, rule, message):
    body = default_specification(TissueSource.ADIPOSE)
    body["tests"][test] |= rule
    with pytest.raises(ValidationFailed) as refused:
        validate_specification(body)
    assert any(message in m for messages in refused.value.errors.values() for m in messages)


def test_r_qc_6_the_defaults_are_within_their_physical_ranges():
    for source in TissueSource:
        validate_specification(default_specification(source))
