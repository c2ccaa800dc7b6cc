"""Clinic, QA and admin pages over the same services as the API (requirements §7)."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from labtrack.models import OutboxMessage
from labtrack.services import notifications
from tests.helpers import PASSWORD
from tests.web.support import error_beside


def _row(page: str, din: str) -> str:
    return re.search(rf'<li class="row" data-din="{din}">.*?</li>\s*(?=<li class="row"|</ul>)', page, re.S).group(0)


def test_r_rdy_1_readiness_board_shows_ready_or_the_blockers_in_words(lab, sign_in):
    ready = lab.released()
    waiting = lab.batch(mrn="MRN-2")
    board = sign_in("clinic").get("/clinic").text
    waiting_row = _row(board, waiting)
    assert "Not harvested yet." in waiting_row
    assert "Not ready yet." in waiting_row
    assert "viability" not in waiting_row.lower()  # the lab's internal list is not repeated to the clinic
    ready_row = _row(board, ready)
    assert "Ready to administer" in ready_row
    assert "conditional release: the sterility culture is still running" in ready_row
    assert "Released at the lab on" in ready_row
    assert "min left" in ready_row  # the expiry countdown


def test_r_acc_1_board_shows_only_the_clinics_own_batches(lab, sign_in):
    din = lab.batch()
    assert din not in sign_in("other").get("/clinic").text


def test_patient_registration_and_batch_ordering(lab, sign_in):
    clinic = sign_in("clinic")
    patient = {"action": "register", "mrn": "MRN-7", "family_name": "Roe", "given_name": "Rita"}
    missing = clinic.submit("/clinic/patients", patient)
    assert missing.status_code == 422
    assert error_beside(missing.text, "register", "birth_date") == "This is required."
    registered = clinic.submit("/clinic/patients", patient | {"birth_date": "1975-02-03"}, follow_redirects=True)
    assert "Patient Roe, Rita (MRN MRN-7) registered." in registered.text
    twice = clinic.submit("/clinic/patients", patient | {"birth_date": "1975-02-03"})
    assert twice.status_code == 409
    assert "already registered" in twice.text
    (patient_id,) = lab.sql("SELECT id FROM patients WHERE mrn = 'MRN-7'")[0]
    ordered = clinic.submit(
        "/clinic/patients",
        {"action": "order", "patient_id": str(patient_id), "tissue_source": "bone_marrow"},
        follow_redirects=True,
    )
    (din,) = lab.sql("SELECT din FROM batches")[0]
    assert ordered.request.path == f"/batches/{din}"
    assert "BMAC" in ordered.text
    assert "Record harvest" in ordered.text
    assert "Anticoagulant" in ordered.text  # the bone-marrow harvest asks for it


def test_r_coi_3_wrong_birth_date_at_the_bedside_is_refused_beside_the_field_and_recorded(lab, sign_in):
    din = lab.delivered()
    form = {
        "action": "step",
        "form_id": "step:administration",
        "step": "administration",
        "scanned_din": din,
        "data.patient_mrn": "MRN-1",
        "data.patient_birth_date": "1980-05-18",
        "data.volume_ml": "6",
        "data.injection_sites": "frontal scalp, vertex",
        "data.physician": "Dr. Ines Marlow",
    }
    response = sign_in("clinic").submit(f"/batches/{din}", form)
    assert response.status_code == 422
    message = error_beside(response.text, "step:administration", "data.patient_birth_date")
    assert "do not match the batch's patient" in html.unescape(message)
    assert not error_beside(response.text, "step:administration", "data.patient_mrn")
    assert lab.sql("SELECT status FROM batches")[0][0] == "delivered"
    assert lab.sql("SELECT count(*) FROM batch_events WHERE type = 'identity_mismatch'")[0][0] == 1


def test_qa_queue_lists_awaiting_held_open_deviations_and_identity_mismatches(lab, sign_in):
    awaiting = lab.awaiting_release()
    held = lab.batch(mrn="MRN-2")
    lab.ok(lab.post("tech", f"/batches/{held}/deviations", {"description": "Label smudged"}))
    lab.post("tech", f"/batches/{held}/qc", {"scanned_din": awaiting, "test": "viability_pct", "value": 90})
    page = sign_in("qa").get("/qa").text
    queues = dict(re.findall(r'data-queue="(\w+)">(.*?)</section>', page, re.S))
    assert f"/batches/{awaiting}" in queues["awaiting"]
    assert f"/batches/{held}" in queues["held"]
    assert "Label smudged" in queues["deviations"]
    assert "container" in queues["mismatches"]
    assert "Tomas Bench (tech)" in queues["mismatches"]
    assert html.escape(awaiting) in queues["mismatches"]  # what was scanned


def test_r_cor_1_r_sig_2_record_marks_corrections_and_shows_signature_manifestations(lab, sign_in):
    din = lab.released()
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    harvest = next(e for e in events if e["type"] == "harvest")
    correction = {"event_seq": harvest["seq"], "reason": "Scale misread", "data": {"weight_kg": 82}}
    lab.ok(lab.post("clinic", f"/batches/{din}/corrections", correction))
    page = html.unescape(sign_in("qa").get(f"/batches/{din}/record").text)
    assert "Corrected by entry" in page
    assert "Patient weight was 80 kg, now 82 kg; reason: Scale misread" in page
    signatures = re.search(r'<table class="signatures stack">.*?</table>', page, re.S).group(0)
    assert "Quinn Assurance" in signatures
    assert "approved" in signatures
    assert "Tara Second" in signatures
    assert "verified" in signatures
    assert "Chain verified" in page


def test_r_aud_3_audit_page_verifies_the_chains(lab, sign_in):
    lab.released()
    qa = sign_in("qa")
    assert "Every chain verifies" not in qa.get("/audit").text  # runs only when asked
    page = qa.get("/audit", query_string={"run": "1"}).text
    assert "Every chain verifies" in page
    bad = qa.get("/audit", query_string={"run": "1", "din": "nonsense"})
    assert bad.status_code == 422
    assert error_beside(bad.text, "audit", "din")
    assert sign_in("tech").get("/audit").status_code == 403


def test_notifications_page_lists_the_users_own_and_marks_them_read(lab, sign_in, db):
    din = lab.released()

    def fan_out(session):
        messages = session.execute(select(OutboxMessage)).scalars().all()
        notifications.fan_out(session, messages, notifications.Recipients(session))

    db.write(fan_out)
    clinic = sign_in("clinic")
    page = clinic.get("/notifications").text
    assert "was released" in page
    assert 'aria-label="1 unread"' in page
    (notification_id,) = lab.sql(
        "SELECT id FROM notifications WHERE user_id = (SELECT id FROM users WHERE username = 'clinic')"
    )[0]
    clinic.submit("/notifications", {"action": "read", "notification_id": str(notification_id)})
    assert 'aria-label="1 unread"' not in clinic.get("/notifications").text
    assert din[:5] in page


def test_r_acc_2_admin_manages_users_create_deactivate_unlock(lab, sign_in):
    admin = sign_in("admin")
    user = {"action": "create", "username": "tina", "full_name": "Tina Third", "role": "technician"}
    short = admin.submit("/admin/users", user | {"password": "short"})
    assert short.status_code == 422
    assert error_beside(short.text, "create", "password") == "Must be at least 10 characters"
    created = admin.submit("/admin/users", user | {"password": "long-enough-pass"}, follow_redirects=True)
    assert "User tina created." in created.text
    unconfirmed = {"action": "update", "form_id": "deactivate:tina", "username": "tina", "change": "deactivate"}
    assert admin.submit("/admin/users", unconfirmed).status_code == 422  # not without the confirmation
    assert lab.sql("SELECT active FROM users WHERE username = 'tina'")[0][0] in (True, 1)
    dialog = re.search(r'<dialog id="deactivate-tina-dialog".*?</dialog>', admin.get("/admin/users").text, re.S)
    assert "Deactivate Tina Third (tina)?" in dialog.group(0)
    admin.submit("/admin/users", unconfirmed | {"confirmed": "yes"})
    assert lab.sql("SELECT active FROM users WHERE username = 'tina'")[0][0] in (False, 0)
    lab.sql("UPDATE users SET locked_at = CURRENT_TIMESTAMP WHERE username = 'tech'")
    assert "Unlock tech" in admin.get("/admin/users").text
    admin.submit("/admin/users", {"action": "update", "username": "tech", "change": "unlock"})
    assert lab.sql("SELECT locked_at FROM users WHERE username = 'tech'")[0][0] is None
    refused = admin.submit(
        "/admin/users", {"action": "update", "username": "admin", "change": "deactivate", "confirmed": "yes"}
    )
    assert refused.status_code == 422
    assert "cannot deactivate your own account" in refused.text


def test_r_acc_2_admin_edits_a_users_name_role_and_clinic(lab, sign_in):
    admin = sign_in("admin")
    edit = {"action": "edit", "form_id": "edit:tech2", "username": "tech2", "full_name": "Tara Second-Jones"}
    saved = admin.submit("/admin/users", edit | {"role": "qa"}, follow_redirects=True)
    assert "User tech2: Tara Second-Jones, qa." in saved.text
    assert lab.sql("SELECT full_name, role FROM users WHERE username = 'tech2'") == [("Tara Second-Jones", "qa")]
    moved = admin.submit(
        "/admin/users", {"action": "edit", "username": "clinic_b", "clinic": "C2"}, follow_redirects=True
    )
    assert "clinic C2" in moved.text
    swap = admin.submit(
        "/admin/users", {"action": "edit", "form_id": "edit:tech", "username": "tech", "role": "clinic"}
    )
    assert swap.status_code == 422
    assert "create a new user" in error_beside(swap.text, "edit:tech", "role")


def test_password_reset_makes_the_user_choose_a_new_one_at_the_next_sign_in(lab, sign_in, app):
    tech = sign_in("tech")
    admin = sign_in("admin")
    reset = {"action": "reset", "form_id": "reset:tech", "username": "tech", "password": "temporary-pass-1"}
    assert "choose a new one at their next sign-in" in admin.submit("/admin/users", reset, follow_redirects=True).text
    assert tech.get("/bench").status_code == 302  # the old session ended
    client = app.test_client()
    login = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    first = client.post("/login", data={"username": "tech", "password": "temporary-pass-1", "csrf_token": token})
    assert first.status_code == 403
    assert 'data-role="choose-password"' in first.text
    differ = {"username": "tech", "password": "temporary-pass-1", "csrf_token": token}
    mismatch = client.post("/login", data=differ | {"new_password": "my-own-pass-22", "confirm_password": "typo"})
    assert "two new passwords differ" in error_beside(mismatch.text, "login", "confirm_password")
    chosen = client.post(
        "/login", data=differ | {"new_password": "my-own-pass-22", "confirm_password": "my-own-pass-22"}
    )
    assert chosen.status_code == 303
    assert client.get("/bench").status_code == 200
    assert lab.sql("SELECT must_change_password FROM users WHERE username = 'tech'")[0][0] in (False, 0)


def test_admin_manages_clinics_lots_and_equipment(lab, sign_in):
    admin = sign_in("admin")
    assert (
        "Clinic C3 created."
        in admin.submit(
            "/admin/clinics", {"action": "create", "code": "C3", "name": "Third Clinic"}, follow_redirects=True
        ).text
    )
    lot = {"action": "create", "kind": "collagenase", "name": "Collagenase NB", "lot_number": "CG-9"}
    lot |= {"expires_on": "2030-01-01", "status": "quarantined"}
    admin.submit("/admin/lots", lot)
    (lot_id,) = lab.sql("SELECT id FROM reagent_lots WHERE lot_number = 'CG-9'")[0]
    released = {"action": "update", "lot_id": str(lot_id), "status": "released", "expires_on": "2030-01-01"}
    assert "is released" in admin.submit("/admin/lots", released, follow_redirects=True).text
    item = {"action": "create", "code": "CEN-9", "kind": "centrifuge", "name": "Centrifuge 9"}
    admin.submit("/admin/equipment", item | {"calibration_due_on": "2030-01-01", "status": "in_service"})
    retire = {"action": "update", "code": "CEN-9", "status": "retired", "calibration_due_on": "2030-01-01"}
    assert "is retired" in admin.submit("/admin/equipment", retire, follow_redirects=True).text
    assert sign_in("tech").get("/admin/lots").status_code == 403


def test_r_qc_6_admin_proposes_and_another_qa_user_approves_on_the_page(lab, sign_in):
    admin = sign_in("admin")
    form = {
        "action": "propose",
        "form_id": "propose:adipose",
        "tissue_source": "adipose",
        "stability_hours": "36",
        "transport_temperature_c.min": "2",
        "transport_temperature_c.max": "25",
        "tests.viability_pct.min": "75",
        "tests.tnc_total.min": "10000000",
        "tests.endotoxin_eu_per_ml.max_eu_per_kg": "5",
        "reason": "Stability study 2026-14 supports 36 h",
    }
    bad = admin.submit("/admin/specifications", form | {"tests.viability_pct.min": "150"})
    assert bad.status_code == 422
    assert "a percentage, from 0 to 100" in bad.text
    unexplained = admin.submit("/admin/specifications", form | {"reason": ""})
    assert unexplained.status_code == 422
    assert error_beside(unexplained.text, "propose:adipose", "reason")
    proposed = admin.submit("/admin/specifications", form, follow_redirects=True)
    assert "takes force when another QA user approves it" in proposed.text
    (proposal_id,) = lab.sql("SELECT id FROM specification_proposals")[0]
    page = sign_in("qa").get("/admin/specifications").text
    assert 'data-role="open-proposal"' in page
    compared = re.search(r'<tr data-path="tests.viability_pct.min" class="changed">.*?</tr>', page, re.S).group(0)
    assert "70" in compared  # the version in force ...
    assert "75" in compared  # ... beside the proposal
    signed = {"action": "approve", "proposal_id": str(proposal_id), "signature.meaning": "approved"}
    approved = sign_in("qa").submit(
        "/admin/specifications", signed | {"signature.password": PASSWORD}, follow_redirects=True
    )
    assert "Version 2 of the adipose tissue specification is in force" in approved.text
    spec = next(s for s in lab.ok(lab.get("qa", "/specifications"), 200) if s["tissue_source"] == "adipose")
    assert spec["version"] == 2
    assert spec["body"]["tests"]["viability_pct"]["min"] == 75
    assert spec["body"]["tests"]["gram_stain"] == {"unit": None, "equals": "no_organisms_seen"}  # the rest is kept


def test_r_qc_6_the_proposer_is_told_another_qa_user_must_approve(lab, sign_in):
    body = next(s for s in lab.ok(lab.get("qa", "/specifications"), 200) if s["tissue_source"] == "bone_marrow")
    lab.ok(lab.post("qa", "/specifications/bone_marrow/proposals", {"body": body["body"], "reason": "review"}))
    page = sign_in("qa").get("/admin/specifications").text
    assert "Another QA user must approve it: you proposed it." in page
    assert "Sign: approved" not in page.split('data-tissue="bone_marrow"')[1]
