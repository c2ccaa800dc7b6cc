"""Issue 3 journeys: from a processed batch to an injected one, with the QA controls (R-QC, R-REL, R-COI-3)."""

from tests.helpers import GOOD_RESULTS


def test_r_qc_4_r_rel_1_adipose_journey_registration_to_administration(lab):
    din = lab.awaiting_release("adipose")
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["status"] == "awaiting_release"
    released = lab.ok(lab.release(din), 200)
    assert released["status"] == "released"
    assert released["conditional_release"] is True  # sterility culture still pending (R-REL-2)
    readiness = lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)
    assert readiness["ready"] is True
    assert readiness["conditional_release"] is True
    lab.ok(lab.handoff(din, by="tech", to="clinic", seal="SEAL-2"))
    assert lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["status"] == "dispatched"
    lab.ok(lab.receive(din, by="clinic", seal="SEAL-2"))
    assert lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["status"] == "delivered"
    lab.ok(lab.administration(din))
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert batch["status"] == "administered"
    assert lab.ok(lab.get("qa", "/audit/verify"), 200)["ok"] is True


def test_r_qc_4_bone_marrow_journey_to_administration(lab):
    din = lab.delivered("bone_marrow")
    lab.ok(lab.administration(din))
    assert lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["status"] == "administered"


def test_r_rel_1_every_blocker_reported_at_once(lab):
    din = lab.processed("adipose")
    entered = lab.ok(lab.qc(din, "viability_pct", 50))  # out of spec, unverified
    response = lab.release(din)
    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "release_blocked"
    codes = {b["code"] for b in body["blockers"]}
    assert "not_ready:processed" in codes
    assert "qc_out_of_spec:viability_pct" in codes
    assert "qc_unverified:viability_pct" in codes
    assert {f"qc_missing:{t}" for t in GOOD_RESULTS["adipose"] if t != "viability_pct"} <= codes
    deviation = lab.ok(lab.get("qa", "/deviations", din=din, status="open"), 200)["items"][0]
    assert deviation["kind"] == "qc_out_of_spec"
    assert f"open_deviation:{deviation['id']}" in codes
    assert entered["within_spec"] is False
