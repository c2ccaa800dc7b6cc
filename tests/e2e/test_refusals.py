"""Refusals a person meets in the browser: the wrong patient, a forged form, another clinic's batch."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from labtrack.domain.din import Din


def test_r_coi_3_wrong_patient_bedside_scan_is_refused_with_a_clear_message(people, lab):
    din = lab.delivered()
    clinic = people("clinic")
    clinic.goto(f"/batches/{din}", "card-delivered")
    bedside = clinic.form("step:administration")
    bedside.get_by_label("1. Scan the product's DIN").focus()
    clinic.scan(Din(din).barcode_data)
    clinic.scan("MRN-999")  # another patient's wristband
    bedside.get_by_label("Patient birth date").fill("1980-05-17")
    bedside.get_by_label("Volume").fill("6")
    bedside.get_by_label("Injection sites").fill("vertex")
    bedside.get_by_label("Physician").fill("Dr. Ines Marlow")
    clinic.submit(bedside.get_by_role("button", name="Record administration"), "wrong-patient-refused")
    page = clinic.page
    expect(page.get_by_role("alert").first).to_contain_text("Not recorded")
    mrn = clinic.form("step:administration").get_by_label("2. Patient MRN")
    expect(mrn).to_have_attribute("aria-invalid", "true")
    expect(mrn).to_be_focused()  # the refused field takes the focus, for the keyboard
    expect(page.locator(".field.has-error .field-error")).to_have_text(
        ["The patient identifiers (Patient MRN) do not match the batch's patient."]  # the glossary's words
    )
    expect(page.locator("[data-role=status]")).to_have_text("delivered")
    assert lab.sql("SELECT count(*) FROM batch_events WHERE type = 'identity_mismatch'")[0][0] == 1
    assert "Traceback" not in page.content()


def test_post_without_csrf_token_is_refused_in_the_browser(people, lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    tech = people("tech")
    tech.goto(f"/batches/{din}", "card-in-transit")
    # A form posted from elsewhere: the session cookie goes along, the page's CSRF token does not.
    response = tech.page.request.post(
        f"/batches/{din}",
        form={
            "action": "receipt",
            "scanned_din": din,
            "seal_id": "SEAL-1",
            "temperature_c": "6",
            "condition": "intact",
        },
    )
    assert response.status == 400
    assert "security token" in response.text()
    tech.page.set_content(response.text())
    tech.snap("csrf-refused")
    assert lab.sql("SELECT status FROM batches")[0][0] == "in_transit"


def test_r_acc_1_clinic_user_cannot_open_another_clinics_batch(people, lab):
    din = lab.batch()
    other = people("other")
    response = other.goto(f"/batches/{din}", "other-clinics-batch")
    assert response.status == 404
    expect(other.page.get_by_role("alert")).to_have_text("No such batch.")
    expect(other.page.get_by_text("Doe")).to_have_count(0)
    other.goto("/clinic", "own-board")
    expect(other.page.locator(f"tr[data-din='{din}']")).to_have_count(0)
    expect(other.page).to_have_title(re.compile("Readiness"))
