"""Deviations hold the batch (R-DEV-1) until QA disposes of them with a signature (R-DEV-2)."""

from __future__ import annotations

import pytest

from tests.api.test_identity import assert_problem, assert_refused
from tests.api.test_qc import (
    assert_nothing_written,
    blocker_codes,
    complete_qc,
    deviations,
    dispose,
    manual_deviation,
    outbox,
    stream,
    view,
)
from tests.helpers import PROCESS_ORDER, USERS, signature

# --- R-DEV-1: an open deviation holds the batch ---------------------------------------------------


def test_r_dev_1_release_dispatch_and_administration_are_refused_while_held(lab):
    awaiting = lab.awaiting_release()
    deviation = manual_deviation(lab, awaiting)
    assert blocker_codes(lab.release(awaiting)) == {f"open_deviation:{deviation}"}
    lab.ok(dispose(lab, deviation), 200)
    lab.ok(lab.release(awaiting), 200)

    deviation = manual_deviation(lab, awaiting, by="qa")
    problem = assert_nothing_written(
        lab, lambda: lab.handoff(awaiting, by="tech", to="clinic", seal="SEAL-2"), 409, "batch_held"
    )
    assert "dispatched" in problem["detail"]
    assert view(lab, awaiting)["status"] == "released"
    lab.ok(dispose(lab, deviation), 200)
    lab.ok(lab.handoff(awaiting, by="tech", to="clinic", seal="SEAL-2"))
    lab.ok(lab.receive(awaiting, by="clinic", seal="SEAL-2"))

    deviation = manual_deviation(lab, awaiting, by="clinic")
    problem = assert_nothing_written(lab, lambda: lab.administration(awaiting), 409, "batch_held")
    assert "administered" in problem["detail"]
    lab.ok(dispose(lab, deviation), 200)
    lab.ok(lab.administration(awaiting))
    assert view(lab, awaiting)["status"] == "administered"


def test_r_dev_1_processing_and_qc_go_on_while_held(lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din, temperature_c=30))  # outside 2-25 °C: temperature_excursion, held
    [excursion] = deviations(lab, din)
    assert excursion["kind"] == "temperature_excursion"
    for name in PROCESS_ORDER["adipose"]:
        lab.ok(lab.step(din, name))
    complete_qc(lab, din)
    batch = view(lab, din)
    assert (batch["status"], batch["held"]) == ("awaiting_release", True)
    assert blocker_codes(lab.release(din)) == {f"open_deviation:{excursion['id']}"}


# --- R-DEV-2: only QA closes, signed, accept or reject -------------------------------------------


def test_r_dev_2_accept_closes_with_justification_and_signature(lab):
    din = lab.processed()
    deviation = manual_deviation(lab, din)
    closed = lab.ok(dispose(lab, deviation), 200)
    assert (closed["id"], closed["status"], closed["decision"]) == (deviation, "closed", "accept")
    assert closed["justification"] == "Assessed by QA: use as is."
    assert closed["closed_by"] == {"username": "qa", "full_name": USERS["qa"][0]}
    assert closed["closed_at"] is not None
    assert (closed["signature"]["username"], closed["signature"]["meaning"]) == ("qa", "approved")
    [event] = stream(lab, din, "deviation_closed")
    assert event["data"]["deviation_id"] == deviation
    assert (event["data"]["decision"], event["signature"]) == ("accept", closed["signature"])
    assert closed["closed_at"] == event["recorded_at"]
    batch = view(lab, din)
    assert (batch["held"], batch["status"]) == (False, "processed")
    assert batch["deviations"][0]["status"] == "closed"
    assert deviations(lab, din, "open") == []


def test_r_dev_2_the_batch_stays_held_while_another_deviation_is_open(lab):
    din = lab.processed()
    first, second = manual_deviation(lab, din), manual_deviation(lab, din, by="qa")
    lab.ok(dispose(lab, first), 200)
    assert view(lab, din)["held"] is True
    assert [d["id"] for d in deviations(lab, din, "open")] == [second]
    lab.ok(dispose(lab, second, by="qa2"), 200)
    assert view(lab, din)["held"] is False


def test_r_dev_2_an_accepted_out_of_spec_result_no_longer_blocks_release(lab):
    din = lab.processed()
    complete_qc(lab, din, results={"viability_pct": 65})
    [deviation] = deviations(lab, din)
    assert deviation["kind"] == "qc_out_of_spec"
    codes = blocker_codes(lab.release(din))
    assert codes == {"qc_out_of_spec:viability_pct", f"open_deviation:{deviation['id']}"}
    lab.ok(dispose(lab, deviation["id"]), 200)
    released = lab.ok(lab.release(din), 200)
    assert released["status"] == "released"
    assert [q["within_spec"] for q in view(lab, din)["qc"] if q["test"] == "viability_pct"] == [False]  # still shown


def test_r_dev_2_a_manual_acceptance_does_not_cover_an_out_of_spec_result(lab):
    din = lab.processed()
    complete_qc(lab, din, results={"tnc_total": 1e6})
    [out_of_spec] = deviations(lab, din)
    manual = manual_deviation(lab, din)
    lab.ok(dispose(lab, manual), 200)
    codes = blocker_codes(lab.release(din))
    assert codes == {"qc_out_of_spec:tnc_total", f"open_deviation:{out_of_spec['id']}"}


def test_r_dev_2_reject_rejects_the_batch(lab):
    din = lab.processed()
    deviation = manual_deviation(lab, din)
    closed = lab.ok(dispose(lab, deviation, "reject"), 200)
    assert (closed["status"], closed["decision"]) == ("closed", "reject")
    batch = view(lab, din)
    assert (batch["status"], batch["held"], batch["next_actions"]) == ("rejected", False, [])
    closing, rejection = stream(lab, din)[-2:]
    assert (closing["type"], rejection["type"]) == ("deviation_closed", "rejected")
    assert rejection["data"]["deviation_id"] == deviation
    assert outbox(lab, "batch.rejected", din)[0]["seq"] == rejection["seq"]
    assert_refused(lab, lambda: lab.qc(din, "viability_pct", 88), 409, "invalid_transition")
    assert "not_ready:rejected" in blocker_codes(lab.release(din))


@pytest.mark.parametrize("who", ["tech", "tech2", "admin", "clinic", "other"])
def test_r_dev_2_only_qa_disposes(lab, who):
    din = lab.processed()
    deviation = manual_deviation(lab, din)
    assert_nothing_written(lab, lambda: dispose(lab, deviation, by=who), 403, "forbidden")
    assert deviations(lab, din)[0]["status"] == "open"


def test_r_dev_2_disposing_twice_is_a_conflict(lab):
    din = lab.processed()
    deviation = manual_deviation(lab, din)
    lab.ok(dispose(lab, deviation), 200)
    problem = assert_nothing_written(lab, lambda: dispose(lab, deviation, "reject", by="qa2"), 409, "conflict")
    assert "already closed" in problem["detail"]
    assert view(lab, din)["status"] == "processed"


def test_r_dev_2_a_wrong_password_closes_nothing(lab):
    din = lab.processed()
    deviation = manual_deviation(lab, din)
    assert_problem(dispose(lab, deviation, password="not-the-password"), 401, "signature_invalid")
    [still] = deviations(lab, din)
    assert (still["status"], still["decision"], still["signature"]) == ("open", None, None)
    assert view(lab, din)["held"] is True
    assert stream(lab, din, "deviation_closed") == []
    assert stream(lab, din)[-1]["type"] == "signature_failed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"decision": "maybe"}, "decision"),
        ({"justification": "   "}, "justification"),
        ({"justification": ""}, "justification"),
        ({"signature": signature("verified")}, "signature.meaning"),
        ({"signature": signature("rejected")}, "signature.meaning"),
        ({"signature": None}, "signature"),
    ],
)
def test_r_dev_2_disposition_needs_a_decision_justification_and_approval(lab, change, field):
    din = lab.processed()
    deviation = manual_deviation(lab, din)
    body = {"decision": "accept", "justification": "Use as is.", "signature": signature("approved")} | change
    path = f"/deviations/{deviation}/disposition"
    problem = assert_nothing_written(lab, lambda: lab.post("qa", path, body), 422, "validation_error")
    assert field in problem["errors"]


def test_r_dev_2_an_unknown_deviation_is_not_found(lab):
    lab.processed()
    assert_nothing_written(lab, lambda: dispose(lab, 4242), 404, "not_found")
