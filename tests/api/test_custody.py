"""Chain of custody through the HTTP API (R-CUS-1..4)."""

from __future__ import annotations

import pytest

from tests.api.test_identity import assert_refused


def batch_view(lab, din: str, by: str = "qa") -> dict:
    return lab.ok(lab.get(by, f"/batches/{din}"), 200)


def collected(lab, tissue_source: str = "adipose", *, by: str = "clinic") -> str:
    din = lab.batch(tissue_source)
    lab.ok(lab.harvest(din, tissue_source, by=by))
    return din


# --- R-CUS-1 ------------------------------------------------------------------------------------


def test_r_cus_1_only_the_custodian_hands_off(lab):
    din = collected(lab)
    for intruder in ("clinic_b", "tech", "qa"):
        problem = assert_refused(lab, lambda who=intruder: lab.handoff(din, by=who), 409, "custody_violation")
        assert "custodian" in problem["detail"]
    event = lab.ok(lab.handoff(din))
    assert (event["type"], event["data"]["to"], event["data"]["seal_id"]) == ("handoff", "tech", "SEAL-1")
    batch = batch_view(lab, din)
    assert batch["pending_transfer"]["to"] == "tech"
    assert batch["custodian"]["username"] == "clinic"  # custody moves on receipt, not on hand-off


def test_r_cus_1_handoff_needs_an_active_named_user(lab):
    din = collected(lab)
    lab.ok(lab.patch("admin", "/users/tech2", {"active": False}), 200)
    for recipient in ("tech2", "nobody"):
        problem = assert_refused(lab, lambda to=recipient: lab.handoff(din, to=to), 422, "validation_error")
        assert "to_username" in problem["errors"]
    lab.ok(lab.handoff(din, to="tech"))


@pytest.mark.parametrize("recipient", ["admin", "other", "clinic"])
def test_r_cus_1_admin_other_clinic_and_self_cannot_be_recipients(lab, recipient):
    din = collected(lab)
    problem = assert_refused(lab, lambda: lab.handoff(din, to=recipient), 422, "validation_error")
    assert "to_username" in problem["errors"]


def test_r_cus_1_only_the_named_recipient_receives(lab):
    din = collected(lab)
    lab.ok(lab.handoff(din, to="tech"))
    for intruder in ("tech2", "qa", "clinic", "clinic_b"):
        problem = assert_refused(lab, lambda who=intruder: lab.receive(din, by=who), 409, "custody_violation")
        assert "named" in problem["detail"]
    assert_refused(lab, lambda: lab.receive(din, by="other"), 404, "not_found")  # R-ACC-1: not even visible
    assert_refused(lab, lambda: lab.receive(din, by="admin"), 403, "forbidden")  # R-ACC-2
    lab.ok(lab.receive(din, by="tech"))
    batch = batch_view(lab, din)
    assert (batch["custodian"]["username"], batch["pending_transfer"], batch["status"]) == ("tech", None, "received")


def test_r_cus_1_one_custodian_at_a_time_after_receipt(lab):
    din = lab.at_lab()
    assert_refused(lab, lambda: lab.handoff(din, by="clinic", to="clinic_b"), 409, "custody_violation")
    # within the lab a hand-off moves custody without changing the status
    lab.ok(lab.handoff(din, by="tech", to="tech2", seal="SEAL-2"))
    lab.ok(lab.receive(din, by="tech2", seal="SEAL-2"))
    batch = batch_view(lab, din)
    assert (batch["custodian"]["username"], batch["status"], batch["held"]) == ("tech2", "received", False)
    assert_refused(lab, lambda: lab.handoff(din, by="tech", to="qa"), 409, "custody_violation")


def test_r_cus_1_receipt_without_pending_handoff_is_invalid_transition(lab):
    din = collected(lab)
    problem = assert_refused(lab, lambda: lab.receive(din, by="clinic"), 409, "invalid_transition")
    assert problem["allowed_actions"] == ["handoff"]


# --- R-CUS-2 ------------------------------------------------------------------------------------


def test_r_cus_2_nothing_is_recorded_while_a_handoff_is_pending(lab):
    din = collected(lab)
    lab.ok(lab.handoff(din, to="tech"))
    assert_refused(lab, lambda: lab.step(din, "digestion", by="tech"), 409, "custody_violation")
    assert_refused(lab, lambda: lab.step(din, "digestion", by="tech2"), 409, "custody_violation")
    assert_refused(lab, lambda: lab.harvest(din), 409, "custody_violation")
    assert_refused(lab, lambda: lab.handoff(din, to="tech2", seal="SEAL-2"), 409, "custody_violation")
    assert batch_view(lab, din)["next_actions"] == ["receipt"]


def test_r_cus_2_lab_internal_handoff_blocks_steps_until_received(lab):
    din = lab.at_lab()
    lab.ok(lab.handoff(din, by="tech", to="tech2", seal="SEAL-2"))
    for who in ("tech", "tech2"):
        assert_refused(lab, lambda by=who: lab.step(din, "digestion", by=by), 409, "custody_violation")
    lab.ok(lab.receive(din, by="tech2", seal="SEAL-2"))
    lab.ok(lab.step(din, "digestion", by="tech"))  # any lab user while a lab user holds it (R-CUS-3)


# --- R-CUS-3 ------------------------------------------------------------------------------------


def test_r_cus_3_harvest_only_by_a_user_of_the_batchs_clinic(lab):
    din = lab.batch()
    assert_refused(lab, lambda: lab.harvest(din, by="other"), 404, "not_found")
    for lab_user in ("tech", "qa", "admin"):
        assert_refused(lab, lambda by=lab_user: lab.harvest(din, by=by), 403, "forbidden")
    event = lab.ok(lab.harvest(din, by="clinic_b"))
    assert event["actor"]["username"] == "clinic_b"


def test_r_cus_3_custody_starts_with_the_harvesting_user(lab):
    din = collected(lab, by="clinic_b")  # registered by "clinic", harvested by a colleague
    batch = batch_view(lab, din)
    assert (batch["status"], batch["custodian"]["username"]) == ("collected", "clinic_b")
    assert_refused(lab, lambda: lab.handoff(din, by="clinic"), 409, "custody_violation")
    lab.ok(lab.handoff(din, by="clinic_b"))


def test_r_cus_3_lab_steps_need_lab_custody(lab):
    din = collected(lab)
    problem = assert_refused(lab, lambda: lab.step(din, "digestion", by="tech"), 409, "custody_violation")
    assert "lab custody" in problem["detail"]
    assert_refused(lab, lambda: lab.step(din, "digestion", by="clinic"), 403, "forbidden")
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    lab.ok(lab.step(din, "digestion", by="tech2"))  # any lab user while the lab holds it


def test_r_cus_3_bone_marrow_lab_step_needs_lab_custody(lab):
    din = collected(lab, "bone_marrow")
    assert_refused(lab, lambda: lab.step(din, "separation", by="tech"), 409, "custody_violation")


# --- R-CUS-4 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("receipt", "kind"),
    [
        ({"seal": "SEAL-OTHER"}, "seal_mismatch"),
        ({"condition": "damaged"}, "damaged_container"),
        ({"temperature_c": 1}, "temperature_excursion"),
        ({"temperature_c": 26}, "temperature_excursion"),
        ({"temperature_c": 1.9}, "temperature_excursion"),
        ({"temperature_c": 25.1}, "temperature_excursion"),
    ],
)
def test_r_cus_4_receipt_is_recorded_and_opens_a_deviation(lab, receipt, kind):
    din = collected(lab)
    lab.ok(lab.handoff(din))
    event = lab.ok(lab.receive(din, **receipt))
    assert event["type"] == "receipt"
    batch = batch_view(lab, din)
    assert (batch["status"], batch["custodian"]["username"], batch["held"]) == ("received", "tech", True)
    [deviation] = batch["deviations"]
    assert (deviation["kind"], deviation["status"], deviation["din"]) == (kind, "open", din)
    assert deviation["opened_by"]["username"] == "tech"
    types = [e["type"] for e in lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)]
    assert types[-2:] == ["receipt", "deviation_opened"]
    readiness = lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)
    assert readiness["ready"] is False
    assert f"open_deviation:{deviation['id']}" in [b["code"] for b in readiness["blockers"]]
    topics = [row[0] for row in lab.sql("SELECT topic FROM outbox ORDER BY id")]
    assert topics == ["batch.handed_to_you", "deviation.opened"]  # the recipient told at hand-off, then QA


def test_r_cus_4_every_problem_at_receipt_opens_its_own_deviation(lab):
    din = collected(lab)
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din, seal="SEAL-9", condition="damaged", temperature_c=30))
    kinds = sorted(d["kind"] for d in batch_view(lab, din)["deviations"])
    assert kinds == ["damaged_container", "seal_mismatch", "temperature_excursion"]


@pytest.mark.parametrize("temperature_c", [2, 25, 6])
def test_r_cus_4_intact_receipt_within_range_opens_no_deviation(lab, temperature_c):
    din = collected(lab)
    lab.ok(lab.handoff(din))
    event = lab.ok(lab.receive(din, temperature_c=temperature_c))
    assert (event["data"]["temperature_c"], event["data"]["seal_id"]) == (temperature_c, "SEAL-1")
    batch = batch_view(lab, din)
    assert (batch["held"], batch["deviations"]) == (False, [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"condition": "leaking"}, "condition"),
        ({"temperature_c": "warm"}, "temperature_c"),
        ({"seal_id": ""}, "seal_id"),
    ],
)
def test_r_cus_4_receipt_needs_seal_temperature_and_condition(lab, body, field):
    din = collected(lab)
    lab.ok(lab.handoff(din))
    request = {"scanned_din": din, "seal_id": "SEAL-1", "temperature_c": 6, "condition": "intact"} | body
    problem = assert_refused(
        lab, lambda: lab.post("tech", f"/batches/{din}/custody/receipt", request), 422, "validation_error"
    )
    assert field in problem["errors"]
