"""QC results through the HTTP API: evaluation, deviations, verification, readiness for release (R-QC-2..5).

The small readers at the top (stream, outbox, deviations, refusals that also leave
QC results and signatures alone) are shared by the other issue-3 API test modules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from labtrack.models import Batch
from tests.api.test_identity import assert_mismatch_recorded, assert_problem, assert_refused
from tests.helpers import GOOD_RESULTS, PROCESS_ORDER, USERS, now, signature

UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


# --- shared readers -----------------------------------------------------------------------------


def view(lab, din: str, by: str = "qa") -> dict:
    return lab.ok(lab.get(by, f"/batches/{din}"), 200)


def stream(lab, din: str, type: str | None = None) -> list[dict]:
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    return [e for e in events if type is None or e["type"] == type]


def outbox(lab, topic: str, din: str | None = None) -> list[dict[str, Any]]:
    rows = lab.sql("SELECT payload FROM outbox WHERE topic = :topic ORDER BY id", topic=topic)
    payloads = [row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in rows]
    return [p for p in payloads if din is None or p.get("din") == din]


def deviations(lab, din: str, status: str | None = None) -> list[dict]:
    query = {"din": din} | ({"status": status} if status else {})
    return sorted(lab.ok(lab.get("qa", "/deviations", **query), 200)["items"], key=lambda d: d["id"])


def manual_deviation(lab, din: str, by: str = "tech") -> int:
    body = {"kind": "manual", "description": "Label smudged; checked and re-labelled."}
    return lab.ok(lab.post(by, f"/batches/{din}/deviations", body))["id"]


def dispose(lab, deviation_id: int, decision: str = "accept", *, by: str = "qa", **signed: str):
    body = {"decision": decision, "justification": "Assessed by QA: use as is.", "signature": signature("approved")}
    body["signature"] |= signed
    return lab.post(by, f"/deviations/{deviation_id}/disposition", body)


def expire(lab, din: str) -> None:
    """Move the batch's expiry into the past (``batches`` is a projection, not an event table)."""
    moment = now() - timedelta(minutes=1)
    lab.db.write(lambda s: s.execute(update(Batch).where(Batch.din == din).values(expires_at=moment)))


def blocker_codes(response) -> set[str]:
    problem = assert_problem(response, 409, "release_blocked")
    return {b["code"] for b in problem["blockers"]}


def qc_footprint(lab) -> dict[str, list[tuple]]:
    """What the QA writes touch beyond the batch footprint of ``assert_refused``."""
    queries = {
        "qc": "SELECT id, value, within_spec, verified_by_id, verified_seq, corrected, record_hash FROM qc_results",
        "signature_failures": "SELECT id FROM signature_failures",
        "deviations": "SELECT id, status, decision, closed_by_id FROM deviations",
        "batches": "SELECT din, released_at, conditional_release FROM batches",
        "users": "SELECT username, locked_at FROM users",
    }
    return {name: sorted(tuple(map(str, row)) for row in lab.sql(query)) for name, query in queries.items()}


def assert_nothing_written(lab, request: Callable[[], Any], status: int, code: str) -> dict[str, Any]:
    before = qc_footprint(lab)
    problem = assert_refused(lab, request, status, code)
    assert qc_footprint(lab) == before
    return problem


def enter(lab, din: str, test: str, value: Any, **extra: Any) -> dict:
    return lab.ok(lab.qc(din, test, value, **extra))


def process(
    lab,
    din: str,
    tissue_source: str = "adipose",
    *,
    mrn: str = "MRN-1",
    weight_kg: float = 80,
    final_volume_ml: float = 8,
) -> str:
    """Harvest (from patient ``mrn``), bring to the lab and process a registered batch."""
    lab.ok(lab.harvest(din, tissue_source, weight_kg=weight_kg, patient_mrn=mrn))
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    for name in PROCESS_ORDER[tissue_source]:
        extra = {"data": {"final_volume_ml": final_volume_ml}} if name == "concentration" else {}
        lab.ok(lab.step(din, name, **extra))
    return din


def processed_with(lab, tissue_source: str = "adipose", *, mrn: str = "MRN-1", **values: float) -> str:
    """A processed batch of patient ``mrn``; its endotoxin limit follows from ``weight_kg`` and ``final_volume_ml``."""
    return process(lab, lab.batch(tissue_source, mrn=mrn), tissue_source, mrn=mrn, **values)


def complete_qc(
    lab,
    din: str,
    tissue_source: str = "adipose",
    results: dict[str, Any] | None = None,
    *,
    omit: tuple[str, ...] = (),
    unverified: tuple[str, ...] = (),
) -> dict[str, int]:
    """Enter the required results (tech) and verify them (tech2): awaiting release unless some are left out."""
    ids = {}
    for test, value in (GOOD_RESULTS[tissue_source] | (results or {})).items():
        if test in omit:
            continue
        ids[test] = enter(lab, din, test, value)["id"]
        if test not in unverified:
            lab.ok(lab.verify(din, ids[test]), 200)
    return ids


# --- R-QC-2: evaluation against the batch's specification ----------------------------------------


@pytest.mark.parametrize(
    ("tissue_source", "test", "value", "within"),
    [
        ("adipose", "viability_pct", 70, True),
        ("adipose", "viability_pct", 69.9, False),
        ("adipose", "viability_pct", 100, True),
        ("bone_marrow", "viability_pct", 69.9, False),
        ("adipose", "tnc_total", 1.0e7, True),
        ("adipose", "tnc_total", 9.99e6, False),
        ("bone_marrow", "tnc_total", 1.0e8, True),
        ("bone_marrow", "tnc_total", 9.9e7, False),
        ("bone_marrow", "tnc_total", 5.0e7, False),  # within the SVF limit, not the BMAC one
        ("adipose", "gram_stain", "no_organisms_seen", True),
        ("adipose", "gram_stain", "organisms_seen", False),
        ("adipose", "cd34_pct", 0, True),
        ("bone_marrow", "cd34_pct", 100, True),
        ("adipose", "sterility_culture", "pending", True),
    ],
)
def test_r_qc_2_each_test_is_evaluated_at_its_limit(lab, tissue_source, test, value, within):
    din = lab.processed(tissue_source)
    result = enter(lab, din, test, value)
    assert (result["test"], result["value"], result["within_spec"], result["verified"]) == (test, value, within, False)
    assert result["entered_by"]["username"] == "tech"
    assert result["spec"]  # the limit applied, in words, is part of the record
    recorded = stream(lab, din, "qc_recorded")[-1]
    assert (recorded["data"]["value"], recorded["data"]["within_spec"]) == (value, within)
    assert recorded["data"]["specification_version"] == 1
    assert [d["kind"] for d in deviations(lab, din)] == ([] if within else ["qc_out_of_spec"])
    assert view(lab, din)["held"] is (not within)


@pytest.mark.parametrize(
    ("weight_kg", "final_volume_ml", "value", "within"),
    [
        (80, 8, 50, True),  # 5 EU/kg × 80 kg = 400 EU; 50 EU/mL × 8 mL = 400 EU
        (80, 8, 50.1, False),
        (60, 8, 37.5, True),  # 300 EU limit
        (60, 8, 37.6, False),
        (80, 10, 40, True),  # the final volume scales the dose
        (80, 10, 40.1, False),
    ],
)
def test_r_qc_2_endotoxin_limit_is_total_dose_against_weight(lab, weight_kg, final_volume_ml, value, within):
    din = processed_with(lab, weight_kg=weight_kg, final_volume_ml=final_volume_ml)
    result = enter(lab, din, "endotoxin_eu_per_ml", value)
    assert result["within_spec"] is within
    assert result["unit"] == "EU/mL"
    assert f"{5 * weight_kg:g} EU" in result["spec"]


def test_r_qc_2_bone_marrow_endotoxin_uses_the_same_rule(lab):
    din = processed_with(lab, "bone_marrow", weight_kg=100, final_volume_ml=5)
    assert enter(lab, din, "endotoxin_eu_per_ml", 100)["within_spec"] is True  # 500 EU ≤ 500 EU
    other = processed_with(lab, "bone_marrow", mrn="MRN-2", weight_kg=100, final_volume_ml=5.5)
    assert enter(lab, other, "endotoxin_eu_per_ml", 100)["within_spec"] is False  # 550 EU > 500 EU


def test_r_qc_2_out_of_spec_opens_a_deviation_linked_to_the_result_and_holds(lab):
    din = lab.processed()
    result = enter(lab, din, "viability_pct", 55)
    [deviation] = deviations(lab, din)
    assert (deviation["kind"], deviation["status"], deviation["din"]) == ("qc_out_of_spec", "open", din)
    assert deviation["opened_by"]["username"] == "tech"
    assert "viability_pct" in deviation["description"]
    opened = stream(lab, din, "deviation_opened")[-1]
    assert opened["data"]["qc_result_id"] == result["id"]
    assert lab.sql("SELECT qc_result_id FROM deviations WHERE id = :id", id=deviation["id"]) == [(result["id"],)]
    assert outbox(lab, "deviation.opened", din)[0]["deviation_id"] == deviation["id"]
    batch = view(lab, din)
    assert batch["held"] is True
    assert [d["id"] for d in batch["deviations"]] == [deviation["id"]]
    assert [(q["id"], q["within_spec"]) for q in batch["qc"]] == [(result["id"], False)]
    assert len(lab.ok(lab.get("qa", "/batches", held="true"), 200)["items"]) == 1


@pytest.mark.parametrize(
    ("test", "value"),
    [
        ("viability_pct", -1),
        ("viability_pct", 100.5),
        ("cd34_pct", 101),
        ("tnc_total", -5),
        ("endotoxin_eu_per_ml", -0.1),
        ("viability_pct", "eighty"),
        ("viability_pct", "88"),
        ("tnc_total", True),
        ("tnc_total", None),
        ("tnc_total", [1e7]),
        ("gram_stain", 0),
        ("gram_stain", "maybe"),
        ("sterility_culture", "contaminated"),
        ("platelets", 5),
        ("", 5),
    ],
)
def test_r_qc_2_nonsense_results_are_refused(lab, test, value):
    din = lab.processed()
    problem = assert_nothing_written(lab, lambda: lab.qc(din, test, value), 422, "validation_error")
    assert set(problem["errors"]) & {"test", "value"}


def test_r_qc_2_a_second_result_for_the_same_test_is_a_conflict(lab):
    din = lab.processed()
    enter(lab, din, "viability_pct", 88)
    problem = assert_nothing_written(lab, lambda: lab.qc(din, "viability_pct", 91, by="tech2"), 409, "conflict")
    assert "correction" in problem["detail"]
    # a second sterility *sample* is the same test too; only its final value is recorded later (R-QC-5)
    enter(lab, din, "sterility_culture", "pending")
    assert_nothing_written(lab, lambda: lab.qc(din, "sterility_culture", "pending"), 409, "conflict")


@pytest.mark.parametrize("stage", ["registered", "collected", "received", "processing"])
def test_r_qc_2_qc_before_processing_is_done_is_an_invalid_transition(lab, stage):
    din = lab.batch()
    if stage != "registered":
        lab.ok(lab.harvest(din))
    if stage in ("received", "processing"):
        lab.ok(lab.handoff(din))
        lab.ok(lab.receive(din))
    if stage == "processing":
        lab.ok(lab.step(din, "digestion"))
    problem = assert_nothing_written(lab, lambda: lab.qc(din, "viability_pct", 88), 409, "invalid_transition")
    assert "qc" not in problem["allowed_actions"]
    assert view(lab, din)["status"] == stage


def test_r_qc_2_qc_needs_the_sample_in_lab_custody(lab):
    din = lab.processed()
    lab.ok(lab.handoff(din, by="tech", to="tech2", seal="SEAL-L"))  # in transit inside the lab
    assert_nothing_written(lab, lambda: lab.qc(din, "viability_pct", 88, by="tech2"), 409, "custody_violation")
    lab.ok(lab.receive(din, by="tech2", seal="SEAL-L"))
    assert enter(lab, din, "viability_pct", 88)["within_spec"] is True  # any lab user, while the lab holds it


def test_r_qc_2_only_lab_staff_record_qc(lab):
    din = lab.processed()
    for who in ("clinic", "admin"):
        assert_nothing_written(lab, lambda w=who: lab.qc(din, "viability_pct", 88, by=w), 403, "forbidden")
    assert_nothing_written(lab, lambda: lab.qc(din, "viability_pct", 88, by="other"), 404, "not_found")
    assert enter(lab, din, "viability_pct", 88, by="qa")["entered_by"]["username"] == "qa"


def test_r_qc_2_wrong_sample_scanned_is_refused_and_recorded(lab):
    din = lab.processed()
    other = lab.batch(mrn="MRN-2")
    recorded = assert_mismatch_recorded(
        lab, din, lambda: lab.qc(din, "viability_pct", 88, scanned_din=other), actor="tech"
    )
    assert (recorded["data"]["action"], recorded["data"]["scanned"]) == ("qc", other)
    assert view(lab, din)["qc"] == []
    unscanned = {"test": "viability_pct", "value": 88}
    problem = assert_nothing_written(
        lab, lambda: lab.post("tech", f"/batches/{din}/qc", unscanned), 422, "validation_error"
    )
    assert "scanned_din" in problem["errors"]
    assert enter(lab, din, "viability_pct", 88)["within_spec"] is True


# --- R-QC-3: a second person verifies with a signature -------------------------------------------


def test_r_qc_3_the_enterer_cannot_verify_their_own_result(lab):
    din = lab.processed()
    result = enter(lab, din, "viability_pct", 88)
    problem = assert_nothing_written(lab, lambda: lab.verify(din, result["id"], by="tech"), 403, "forbidden")
    assert "second person" in problem["detail"]
    by_qa = enter(lab, din, "tnc_total", 4e7, by="qa")
    assert_nothing_written(lab, lambda: lab.verify(din, by_qa["id"], by="qa"), 403, "forbidden")


@pytest.mark.parametrize("verifier", ["tech2", "qa"])
def test_r_qc_3_a_second_technician_or_qa_verifies_with_a_signature(lab, verifier):
    din = lab.processed()
    result = enter(lab, din, "viability_pct", 88)
    verified = lab.ok(lab.verify(din, result["id"], by=verifier), 200)
    assert verified["verified"] is True
    assert verified["verified_by"]["username"] == verifier
    assert UTC_Z.match(verified["verified_at"])
    [event] = stream(lab, din, "qc_verified")
    recorded = stream(lab, din, "qc_recorded")[0]
    manifestation = event["signature"]
    assert manifestation == {
        "printed_name": USERS[verifier][0],
        "username": verifier,
        "signed_at": manifestation["signed_at"],
        "meaning": "verified",
        "record_hash": recorded["hash"],
    }
    assert UTC_Z.match(manifestation["signed_at"])
    assert event["data"]["qc_result_id"] == result["id"]
    assert event["actor"]["username"] == verifier
    assert "password" not in json.dumps(event)
    [shown] = view(lab, din)["qc"]
    assert (shown["verified"], shown["verified_by"]["username"]) == (True, verifier)


def test_r_qc_3_verification_needs_the_password(lab):
    din = lab.processed()
    result = enter(lab, din, "viability_pct", 88)
    problem = assert_problem(lab.verify(din, result["id"], password="not-my-password"), 401, "signature_invalid")
    assert "recorded" in problem["detail"]
    assert view(lab, din)["qc"][0]["verified"] is False
    assert stream(lab, din)[-1]["type"] == "signature_failed"
    assert stream(lab, din, "qc_verified") == []


@pytest.mark.parametrize("meaning", ["approved", "rejected"])
def test_r_qc_3_verification_meaning_must_be_verified(lab, meaning):
    din = lab.processed()
    result = enter(lab, din, "viability_pct", 88)
    body = {"signature": signature(meaning)}
    path = f"/batches/{din}/qc/{result['id']}/verify"
    problem = assert_nothing_written(lab, lambda: lab.post("tech2", path, body), 422, "validation_error")
    assert "signature.meaning" in problem["errors"]
    for broken in ({"signature": {"password": "x"}}, {"signature": {"meaning": "verified"}}, {}):
        assert_nothing_written(lab, lambda b=broken: lab.post("tech2", path, b), 422, "validation_error")


def test_r_qc_3_a_second_verification_is_a_conflict(lab):
    din = lab.processed()
    result = enter(lab, din, "viability_pct", 88)
    lab.ok(lab.verify(din, result["id"]), 200)
    assert_nothing_written(lab, lambda: lab.verify(din, result["id"], by="qa"), 409, "conflict")
    assert len(stream(lab, din, "qc_verified")) == 1


def test_r_qc_3_only_lab_staff_verify_and_only_results_of_this_batch(lab):
    din = lab.processed()
    other = processed_with(lab, mrn="MRN-2")
    result = enter(lab, din, "viability_pct", 88)
    assert_nothing_written(lab, lambda: lab.verify(din, result["id"], by="admin"), 403, "forbidden")
    assert_nothing_written(lab, lambda: lab.verify(din, result["id"], by="clinic"), 403, "forbidden")
    assert_nothing_written(lab, lambda: lab.verify(din, result["id"], by="other"), 404, "not_found")
    assert_nothing_written(lab, lambda: lab.verify(other, result["id"]), 404, "not_found")
    assert_nothing_written(lab, lambda: lab.verify(din, 99999), 404, "not_found")


# --- R-QC-4: awaiting_release once every required test is verified --------------------------------


@pytest.mark.parametrize("tissue_source", ["adipose", "bone_marrow"])
def test_r_qc_4_awaiting_release_only_when_every_required_test_is_verified(lab, tissue_source):
    din = lab.processed(tissue_source)
    entered = {test: enter(lab, din, test, value)["id"] for test, value in GOOD_RESULTS[tissue_source].items()}
    assert view(lab, din)["status"] == "processed"  # all entered, none verified
    # verify in an order that leaves sterility's pending record and cd34 (no limit) for last
    order = [t for t in entered if t not in ("sterility_culture", "cd34_pct")] + ["sterility_culture", "cd34_pct"]
    for test in order[:-1]:
        lab.ok(lab.verify(din, entered[test]), 200)
        assert view(lab, din)["status"] == "processed", test
    lab.ok(lab.verify(din, entered[order[-1]]), 200)
    batch = view(lab, din)
    assert batch["status"] == "awaiting_release"
    assert "release" in batch["next_actions"]


def test_r_qc_4_a_missing_test_keeps_the_batch_processed(lab):
    din = lab.processed()
    complete_qc(lab, din, omit=("sterility_culture",))
    assert view(lab, din)["status"] == "processed"
    lab.ok(lab.verify(din, enter(lab, din, "sterility_culture", "pending")["id"]), 200)
    assert view(lab, din)["status"] == "awaiting_release"


def test_r_qc_4_out_of_spec_results_still_complete_qc_but_block_release(lab):
    din = lab.awaiting_release(results={"gram_stain": "organisms_seen"})
    assert view(lab, din)["status"] == "awaiting_release"
    assert {"qc_out_of_spec:gram_stain"} <= blocker_codes(lab.release(din))


# --- R-QC-5: the final sterility culture --------------------------------------------------------


def final_sterility(lab, din: str, value: str, *, by: str = "tech") -> dict:
    return enter(lab, din, "sterility_culture", value, by=by)


def test_r_qc_5_growth_after_release_opens_a_deviation_holds_and_notifies(lab):
    din = lab.released()
    result = final_sterility(lab, din, "growth")
    assert (result["value"], result["within_spec"]) == ("growth", False)
    [deviation] = deviations(lab, din, "open")
    assert deviation["kind"] == "sterility_positive"
    assert stream(lab, din, "deviation_opened")[-1]["data"]["qc_result_id"] == result["id"]
    [alert] = outbox(lab, "sterility.positive", din)
    assert (alert["qc_result_id"], alert["status"]) == (result["id"], "released")
    batch = view(lab, din)
    assert (batch["status"], batch["held"]) == ("released", True)
    problem = assert_refused(lab, lambda: lab.handoff(din, by="tech", to="clinic", seal="S-2"), 409, "batch_held")
    assert "held" in problem["detail"]
    readiness = lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)
    assert readiness["ready"] is False
    assert {b["code"] for b in readiness["blockers"]} == {f"open_deviation:{deviation['id']}"}


@pytest.mark.parametrize("stage", ["dispatched", "delivered"])
def test_r_qc_5_growth_is_recorded_wherever_the_batch_is(lab, stage):
    din = lab.released()
    lab.ok(lab.handoff(din, by="tech", to="clinic", seal="SEAL-2"))
    if stage == "delivered":
        lab.ok(lab.receive(din, by="clinic", seal="SEAL-2"))
    assert view(lab, din)["status"] == stage
    result = final_sterility(lab, din, "growth", by="tech2")  # the lab holds the culture, not the product
    assert result["within_spec"] is False
    assert view(lab, din)["held"] is True
    assert len(outbox(lab, "sterility.positive", din)) == 1
    if stage == "dispatched":
        lab.ok(lab.receive(din, by="clinic", seal="SEAL-2"))  # custody is still recorded while held
    assert_refused(lab, lambda: lab.administration(din), 409, "batch_held")


def test_r_qc_5_growth_after_administration_notifies_but_does_not_hold(lab):
    din = lab.delivered()
    lab.ok(lab.administration(din))
    final_sterility(lab, din, "growth")
    [deviation] = deviations(lab, din, "open")
    assert deviation["kind"] == "sterility_positive"
    assert "follow up" in deviation["description"].lower()
    [alert] = outbox(lab, "sterility.positive", din)
    assert alert["status"] == "administered"
    batch = view(lab, din)
    assert (batch["status"], batch["held"]) == ("administered", False)


def test_r_qc_5_verified_no_growth_clears_the_conditional_release(lab):
    din = lab.released()
    assert view(lab, din)["conditional_release"] is True
    result = final_sterility(lab, din, "no_growth")
    assert result["within_spec"] is True
    assert deviations(lab, din) == []
    assert view(lab, din)["conditional_release"] is True  # not before a second person verified it
    lab.ok(lab.verify(din, result["id"]), 200)
    batch = view(lab, din)
    assert (batch["status"], batch["conditional_release"], batch["held"]) == ("released", False, False)
    assert lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)["conditional_release"] is False


def test_r_qc_5_final_result_needs_the_pending_sample_and_comes_once(lab):
    din = lab.processed()
    problem = assert_nothing_written(
        lab, lambda: lab.qc(din, "sterility_culture", "no_growth"), 409, "invalid_transition"
    )
    assert "pending" in problem["detail"]
    enter(lab, din, "sterility_culture", "pending")
    final_sterility(lab, din, "no_growth")
    assert_nothing_written(lab, lambda: lab.qc(din, "sterility_culture", "growth"), 409, "conflict")


def test_r_qc_5_final_result_keeps_the_clock_honest(lab):
    din = lab.released()
    future = (now() + timedelta(minutes=30)).isoformat()
    assert_nothing_written(
        lab, lambda: lab.qc(din, "sterility_culture", "no_growth", occurred_at=future), 422, "validation_error"
    )
    late = datetime.fromisoformat(view(lab, din)["released_at"].replace("Z", "+00:00")) - timedelta(hours=2)
    assert_nothing_written(
        lab,
        lambda: lab.qc(din, "sterility_culture", "no_growth", occurred_at=late.isoformat()),
        422,
        "validation_error",
    )
    result = final_sterility(lab, din, "no_growth")
    assert result["value"] == "no_growth"
