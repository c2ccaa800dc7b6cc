"""Into the patient: the administration step with the bedside double check (R-COI-3), and the
expiry that stops release, dispatch and administration (R-SEQ-3), through the HTTP API."""

from __future__ import annotations

import pytest

from tests.api.test_identity import assert_mismatch_recorded, assert_refused
from tests.api.test_qc import blocker_codes, expire, outbox, stream, view


def test_r_coi_3_administration_with_matching_identifiers_completes_the_batch(lab):
    din = lab.delivered()
    event = lab.ok(lab.administration(din, by="clinic_b"))  # any user of the batch's clinic, at the bedside
    assert (event["type"], event["actor"]["username"]) == ("administration", "clinic_b")
    values = event["data"]["values"]
    assert (values["patient_mrn"], values["patient_birth_date"]) == ("MRN-1", "1980-05-17")
    assert (values["volume_ml"], values["physician"]) == (6, "Dr. Ines Marlow")
    batch = view(lab, din, by="clinic")
    assert (batch["status"], batch["next_actions"]) == ("administered", [])
    assert batch["steps_done"][-1] == "administration"
    assert_refused(lab, lambda: lab.administration(din), 409, "invalid_transition")  # once only


@pytest.mark.parametrize(
    ("overrides", "mismatched"),
    [
        ({"patient_mrn": "MRN-2"}, ["patient_mrn"]),
        ({"patient_birth_date": "1980-05-18"}, ["patient_birth_date"]),
        ({"patient_mrn": "MRN-2", "patient_birth_date": "1917-05-18"}, ["patient_mrn", "patient_birth_date"]),
    ],
)
def test_r_coi_3_wrong_patient_at_the_bedside_is_refused_recorded_and_qa_notified(lab, overrides, mismatched):
    din = lab.delivered()
    recorded = assert_mismatch_recorded(lab, din, lambda: lab.administration(din, **overrides), actor="clinic")
    assert (recorded["data"]["action"], recorded["data"]["check"]) == ("administration", "patient")
    assert recorded["data"]["mismatched"] == mismatched
    [alert] = outbox(lab, "identity.mismatch", din)
    assert (alert["action"], alert["mismatched"], alert["actor"]) == ("administration", mismatched, "clinic")
    assert view(lab, din)["status"] == "delivered"
    lab.ok(lab.administration(din))  # the right patient still receives it


def test_r_coi_3_wrong_container_at_the_bedside_is_refused_and_recorded(lab):
    din = lab.delivered()
    other = lab.batch(mrn="MRN-2")
    body = {"step": "administration", "scanned_din": other, "data": {}}
    recorded = assert_mismatch_recorded(
        lab, din, lambda: lab.post("clinic", f"/batches/{din}/steps", body), actor="clinic"
    )
    assert (recorded["data"]["check"], recorded["data"]["scanned"]) == ("container", other)


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        ("processed", "invalid_transition"),
        ("awaiting_release", "invalid_transition"),
        ("released", "invalid_transition"),
        ("dispatched", "custody_violation"),
    ],
)
def test_r_coi_3_administration_needs_the_batch_delivered(lab, stage, code):
    if stage == "processed":
        din = lab.processed()
    elif stage == "awaiting_release":
        din = lab.awaiting_release()
    else:
        din = lab.released()
    if stage == "dispatched":
        lab.ok(lab.handoff(din, by="tech", to="clinic", seal="SEAL-2"))
    assert view(lab, din)["status"] == stage
    problem = assert_refused(lab, lambda: lab.administration(din), 409, code)
    assert "administration" not in problem.get("allowed_actions", [])


def test_r_coi_3_administration_needs_the_clinic_to_hold_the_product(lab):
    din = lab.delivered()
    lab.ok(lab.handoff(din, by="clinic", to="clinic_b", seal="SEAL-3"))  # carried to the ward, not yet received
    assert_refused(lab, lambda: lab.administration(din), 409, "custody_violation")
    assert_refused(lab, lambda: lab.administration(din, by="clinic_b"), 409, "custody_violation")
    lab.ok(lab.receive(din, by="clinic_b", seal="SEAL-3"))
    assert view(lab, din)["status"] == "delivered"
    lab.ok(lab.administration(din, by="clinic_b"))


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [("tech", 403, "forbidden"), ("qa", 403, "forbidden"), ("admin", 403, "forbidden"), ("other", 404, "not_found")],
)
def test_r_coi_3_only_the_batch_clinic_administers(lab, who, status, code):
    din = lab.delivered()
    assert_refused(lab, lambda: lab.administration(din, by=who), status, code)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"volume_ml": 0}, "volume_ml"),
        ({"volume_ml": 301}, "volume_ml"),
        ({"physician": ""}, "physician"),
        ({"injection_sites": "scalp"}, "injection_sites"),
        ({"patient_birth_date": "17/05/1980"}, "patient_birth_date"),
    ],
)
def test_r_coi_3_administration_data_are_validated(lab, overrides, field):
    din = lab.delivered()
    problem = assert_refused(lab, lambda: lab.administration(din, **overrides), 422, "validation_error")
    assert any(field in name for name in problem["errors"])


# --- R-SEQ-3: nothing is released, dispatched or administered after expiry --------------------------


def test_r_seq_3_expired_product_is_not_administered(lab):
    din = lab.delivered()
    expire(lab, din)
    problem = assert_refused(lab, lambda: lab.administration(din), 409, "invalid_transition")
    assert "expired" in problem["detail"]
    assert lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)["ready"] is False


def test_r_seq_3_expired_product_is_not_dispatched(lab):
    din = lab.released()
    expire(lab, din)
    problem = assert_refused(
        lab, lambda: lab.handoff(din, by="tech", to="clinic", seal="SEAL-2"), 409, "invalid_transition"
    )
    assert "expired" in problem["detail"]
    lab.ok(lab.handoff(din, by="tech", to="tech2", seal="SEAL-L"))  # moving it inside the lab is still recorded


def test_r_seq_3_expired_product_is_not_released(lab):
    din = lab.awaiting_release()
    expire(lab, din)
    assert blocker_codes(lab.release(din)) == {"expired"}
    assert stream(lab, din, "released") == []
