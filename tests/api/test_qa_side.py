"""The QA side through the HTTP API: the batch's decisions for the signed-in user (segregation of duties
said before it bites, R-REL-1), the QC panel after one scan (R-COI-1, R-QC-2), several results verified
with one signature that lists each (R-QC-3, R-SIG-1..3), and the password an admin reset (sign-in)."""

from __future__ import annotations

from io import BytesIO

from pypdf import PdfReader

from labtrack.services import qc
from tests.api.test_identity import assert_refused
from tests.helpers import GOOD_RESULTS, PASSWORD, signature


def decisions(lab, din: str, by: str) -> dict[tuple[str, int | None], dict]:
    batch = lab.ok(lab.get(by, f"/batches/{din}"), 200)
    return {(d["action"], d["subject"]): d for d in batch["decisions"]}


def panel(lab, din: str, results: dict, *, by: str = "tech", scanned: str | None = None):
    body = {"scanned_din": scanned or din, "results": [{"test": t, "value": v} for t, v in results.items()]}
    return lab.post(by, f"/batches/{din}/qc/panel", body)


def verify_many(lab, din: str, ids: list[int], *, by: str = "qa", password: str = PASSWORD):
    return lab.post(by, f"/batches/{din}/qc/verify", {"qc_ids": ids, "signature": signature("verified", password)})


def test_r_rel_1_qa_is_warned_before_verifying_and_then_told_who_must_release(lab):
    din = lab.processed()
    entered = lab.ok(panel(lab, din, GOOD_RESULTS["adipose"]))
    before = decisions(lab, din, "qa")
    verify = before[("verify", entered[0]["id"])]
    assert verify["allowed"] is True
    assert verify["warning"] == "If you do this, another QA user must release this batch."
    lab.ok(verify_many(lab, din, [r["id"] for r in entered]), 200)
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["status"] == "awaiting_release"
    release = decisions(lab, din, "qa")[("release", None)]
    assert (release["allowed"], release["code"]) == (False, "segregation_of_duties")
    assert release["sentence"] == "Another QA user must release: you verified QC results on this batch."
    assert decisions(lab, din, "qa2")[("release", None)]["allowed"] is True
    assert lab.ok(lab.release(din, by="qa2"), 200)["status"] == "released"


def test_r_acc_3_decisions_say_who_takes_what_the_user_may_not(lab):
    din = lab.processed()
    tech = decisions(lab, din, "tech")
    assert tech[("qc", None)]["allowed"] is True
    assert tech[("release", None)]["sentence"] == "This is done by a QA user."
    clinic = decisions(lab, din, "clinic")
    assert clinic[("qc", None)]["allowed"] is False
    assert clinic[("handoff", None)]["sentence"].startswith("Only the batch's current custodian can hand it off.")


def test_r_coi_1_r_qc_2_the_panel_is_entered_after_one_scan_and_evaluated(lab):
    din = lab.processed()
    entered = lab.ok(panel(lab, din, GOOD_RESULTS["adipose"] | {"viability_pct": 55}))
    assert [r["test"] for r in entered] == list(GOOD_RESULTS["adipose"])
    assert {r["test"]: r["within_spec"] for r in entered}["viability_pct"] is False
    deviations = lab.ok(lab.get("qa", "/deviations", din=din), 200)
    assert [d["kind"] for d in deviations["items"]] == ["qc_out_of_spec"]
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert [e["type"] for e in events].count("qc_recorded") == len(GOOD_RESULTS["adipose"])


def test_r_coi_1_a_panel_with_the_wrong_container_records_nothing_but_the_refusal(lab):
    din, other = lab.processed(), lab.batch(mrn="MRN-2")
    refused = panel(lab, din, GOOD_RESULTS["adipose"], scanned=other)
    assert (refused.status_code, refused.get_json()["code"]) == (422, "identity_mismatch")
    assert lab.sql("SELECT count(*) FROM qc_results") == [(0,)]


def test_r_qc_2_a_refused_value_in_the_panel_names_its_test_and_records_none(lab):
    din = lab.processed()
    problem = assert_refused(
        lab, lambda: panel(lab, din, {"viability_pct": 88, "tnc_total": -4}), 422, "validation_error"
    )
    assert "results.tnc_total.value" in problem["errors"]
    assert_refused(lab, lambda: panel(lab, din, {}), 422, "validation_error")


def test_r_qc_3_r_sig_3_one_signature_covers_several_results_each_hash_bound(lab):
    din = lab.processed()
    entered = lab.ok(panel(lab, din, GOOD_RESULTS["adipose"]))
    ids = [r["id"] for r in entered]
    verified = lab.ok(verify_many(lab, din, ids, by="tech2"), 200)
    assert all(r["verified_by"]["username"] == "tech2" for r in verified)
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    signed = [e for e in events if e["type"] == "qc_verified"]
    assert len(signed) == 1  # one signing act
    manifestation = signed[0]["signature"]
    assert (manifestation["printed_name"], manifestation["username"], manifestation["meaning"]) == (
        "Tara Second",
        "tech2",
        "verified",
    )
    hashes = {e["seq"]: e["hash"] for e in events}
    recorded = {r["id"]: r["record_seq"] for r in entered}
    assert [c["qc_result_id"] for c in manifestation["covers"]] == ids
    for cover in manifestation["covers"]:
        assert cover["record_hash"] == hashes[recorded[cover["qc_result_id"]]]  # each result's own record
    assert manifestation["record_hash"] == qc.covered_hash(manifestation["covers"])
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["status"] == "awaiting_release"


def test_r_qc_3_several_results_are_verified_all_or_none(lab):
    din = lab.processed()
    own = lab.ok(lab.qc(din, "viability_pct", 88, by="tech2"))
    other = lab.ok(lab.qc(din, "tnc_total", 4.2e7, by="tech"))
    problem = assert_refused(lab, lambda: verify_many(lab, din, [other["id"], own["id"]], by="tech2"), 403, "forbidden")
    assert "second person" in problem["detail"]
    assert_refused(lab, lambda: verify_many(lab, din, [other["id"], other["id"]], by="tech2"), 422, "validation_error")
    assert lab.sql("SELECT count(*) FROM qc_results WHERE verified_by_id IS NOT NULL") == [(0,)]


def test_r_sig_1_a_wrong_password_verifies_none_of_the_results_and_is_recorded(lab):
    din = lab.processed()
    entered = lab.ok(panel(lab, din, {"viability_pct": 88, "tnc_total": 4.2e7}))
    refused = verify_many(lab, din, [r["id"] for r in entered], by="tech2", password="wrong-password")
    assert (refused.status_code, refused.get_json()["code"]) == (401, "signature_invalid")
    assert lab.sql("SELECT count(*) FROM qc_results WHERE verified_by_id IS NOT NULL") == [(0,)]
    assert lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)[-1]["type"] == "signature_failed"


def test_a_reset_password_must_be_replaced_before_a_token_is_issued(lab):
    lab.headers("tech")  # a live token, which the reset ends
    lab.ok(lab.patch("admin", "/users/tech", {"password": "temporary-pass-1"}), 200)
    assert lab.client.get("/api/v1/batches", headers=lab.headers("tech")).status_code == 401
    token = lab.client.post("/api/v1/auth/token", json={"username": "tech", "password": "temporary-pass-1"})
    assert (token.status_code, token.get_json()["code"]) == (403, "password_change_required")
    change = {"username": "tech", "password": "temporary-pass-1"}
    same = lab.client.post("/api/v1/auth/password", json=change | {"new_password": "temporary-pass-1"})
    assert (same.status_code, same.get_json()["code"]) == (422, "validation_error")
    chosen = lab.client.post("/api/v1/auth/password", json=change | {"new_password": "my-own-pass-22"})
    assert chosen.status_code == 200, chosen.get_json()
    assert chosen.get_json()["user"]["must_change_password"] is False
    fresh = lab.client.post("/api/v1/auth/token", json={"username": "tech", "password": "my-own-pass-22"})
    assert fresh.status_code == 200
    audit = lab.sql("SELECT type FROM admin_events WHERE type IN ('user_updated', 'password_changed') ORDER BY seq")
    assert audit == [("user_updated",), ("password_changed",)]
    assert "temporary-pass-1" not in str(lab.sql("SELECT data FROM admin_events"))


def test_admin_edits_name_and_moves_a_clinic_user_holding_no_batch(lab):
    renamed = lab.ok(lab.patch("admin", "/users/tech2", {"full_name": "Tara Second-Jones"}), 200)
    assert renamed["full_name"] == "Tara Second-Jones"
    assert lab.ok(lab.patch("admin", "/users/clinic_b", {"clinic": "C2"}), 200)["clinic"] == "C2"
    din = lab.batch()
    lab.ok(lab.harvest(din))  # clinic now holds a C1 batch
    problem = assert_refused(lab, lambda: lab.patch("admin", "/users/clinic", {"clinic": "C2"}), 409, "conflict")
    assert din in problem["detail"]
    assert_refused(lab, lambda: lab.patch("admin", "/users/tech", {"clinic": "C1"}), 422, "validation_error")


def test_r_sig_2_r_sig_3_the_record_names_each_result_one_signature_covers(lab):
    din = lab.processed()
    entered = lab.ok(panel(lab, din, {"viability_pct": 88, "tnc_total": 4.2e7}))
    lab.ok(verify_many(lab, din, [r["id"] for r in entered], by="tech2"), 200)
    text = "".join(
        page.extract_text() for page in PdfReader(BytesIO(lab.get("qa", f"/batches/{din}/record.pdf").data)).pages
    )
    flat = " ".join(text.split())
    assert "covers 2 results: Viability (record" in flat
    assert "Total nucleated cells (record" in flat
