"""The QA side in Chromium, at 390, 1024 and 1440 px: the review queue with every kind of waiting work, the
segregation-of-duties warning before QA verifies, several results verified with one signature, the QC panel
and a correction on the card, specification change control (R-QC-6), and the admin's user page."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from labtrack.domain.din import Din
from tests.helpers import GOOD_RESULTS, PASSWORD


def _panel(lab, din: str, by: str = "tech") -> list[dict]:
    results = [{"test": t, "value": v} for t, v in GOOD_RESULTS["adipose"].items()]
    return lab.ok(lab.post(by, f"/batches/{din}/qc/panel", {"scanned_din": din, "results": results}))


def _at_lab(lab, mrn: str) -> str:
    din = lab.batch(mrn=mrn)
    lab.ok(lab.harvest(din, patient_mrn=mrn))
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    return din


def _processed(lab, mrn: str) -> str:
    din = _at_lab(lab, mrn)
    for name in ("digestion", "isolation", "concentration"):
        lab.ok(lab.step(din, name))
    return din


def _spec_body(lab, source: str = "adipose") -> dict:
    return next(s["body"] for s in lab.ok(lab.get("qa", "/specifications"), 200) if s["tissue_source"] == source)


def test_r_rel_1_r_sig_3_queue_lists_every_kind_of_work_and_qa_is_warned_before_verifying(people, lab):
    din = lab.processed()
    _panel(lab, din)
    held = _processed(lab, "MRN-2")
    lab.ok(lab.post("tech", f"/batches/{held}/deviations", {"description": "Cap found loose at the bench"}))
    near_miss = _at_lab(lab, "MRN-3")
    lab.post("tech", f"/batches/{near_miss}/steps", {"step": "digestion", "scanned_din": din, "data": {}})
    lab.ok(
        lab.post(
            "qa2",
            "/specifications/bone_marrow/proposals",
            {"body": _spec_body(lab, "bone_marrow"), "reason": "TNC review"},
        )
    )

    qa = people("qa")
    page = qa.page
    for queue in ("verify", "deviations", "mismatches", "proposals"):
        expect(page.locator(f"[data-queue={queue}] tbody tr, [data-queue={queue}] li").first).to_be_visible()
    qa.check("queue")
    qa.submit(page.locator("[data-queue=verify] a").first, "card")
    expect(page.locator("[data-role=sod-warning]").first).to_contain_text("another QA user must release this batch")
    qa.check("card-before-verifying")

    page.get_by_role("button", name=re.compile(r"^Verify 6 result")).click()
    dialog = page.locator("dialog[open]")
    expect(dialog.locator("fieldset.covers input[type=checkbox]")).to_have_count(6)
    expect(dialog).to_contain_text("One signature covers them all")
    qa.snap("verify-dialog")
    dialog.get_by_label("Your password").fill(PASSWORD)
    qa.submit(dialog.get_by_role("button", name="Sign: verified"), "verified")
    expect(page.locator(".batch-head")).to_have_attribute("data-status", "awaiting_release")
    expect(page.locator("[data-role=release-refused]")).to_have_text(
        "Another QA user must release: you verified QC results on this batch."
    )
    expect(page.get_by_role("button", name="Release…")).to_have_count(0)  # never offered when it can only fail
    qa.check("card-after-verifying")

    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    signed = [e for e in events if e["type"] == "qc_verified"]
    assert len(signed) == 1
    assert len(signed[0]["signature"]["covers"]) == 6

    qa.goto("/qa", "queue-after")
    expect(page.locator(f"[data-queue=awaiting] tr[data-din='{din}'] [data-role=sod]")).to_be_visible()
    qa2 = people("qa2")
    qa2.submit(qa2.page.locator(f"[data-queue=awaiting] tr[data-din='{din}'] a"), "card")
    expect(qa2.page.get_by_role("button", name="Release…")).to_be_visible()


def test_r_coi_1_r_cor_1_qc_panel_after_one_scan_and_a_correction_beside_the_original(people, lab):
    din = lab.processed()
    tech = people("tech")
    page = tech.page
    tech.goto(f"/batches/{din}", "card")
    panel = tech.form("qc_panel")
    for label, value in (
        ("Viability", "88"),
        ("Total nucleated cells", "42000000"),
        ("Endotoxin", "0.5"),
        ("CD34+", "3.1"),
    ):
        panel.get_by_label(label, exact=False).first.fill(value)
    panel.get_by_label("Gram stain").select_option("no_organisms_seen")
    tech.check("panel-filled")
    panel.get_by_label("Scan the sample's DIN").fill(Din(din).barcode_data)
    tech.submit(panel.get_by_role("button", name="Record the results"), "panel-recorded")
    expect(page.locator("table.qc tbody tr")).to_have_count(6)
    expect(page.locator("[data-role=verify-refused]").first).to_contain_text("you entered this result")

    correction = page.locator("details[data-role=correct]")
    correction.locator("summary").click()
    viability = correction.locator("option", has_text=re.compile(r"Viability \(entry \d+\): now 88"))
    correction.get_by_label("What to correct").select_option(viability.get_attribute("value"))
    correction.get_by_label("Corrected value").fill("86")
    correction.get_by_label("Reason for the correction").fill("Transcription error: counter shows 86 %")
    tech.submit(correction.get_by_role("button", name="Record the correction"), "corrected")
    row = page.locator("[data-role=corrections] tbody tr").first
    expect(row.locator("del")).to_contain_text("88")
    expect(row.locator("ins")).to_contain_text("86")
    expect(page.locator("tr[data-test=viability_pct] .corrected")).to_contain_text("originally 88")
    tech.check("card-corrected")


def test_r_qc_6_a_specification_change_proposed_compared_and_approved_with_a_signature(people, lab):
    admin = people("admin")
    page = admin.page
    admin.goto("/admin/specifications", "specifications")
    admin.check("specifications")
    section = page.locator("section[data-tissue=adipose]")
    section.locator("[data-role=propose] summary").click()
    form = admin.form("propose:adipose")
    form.get_by_label("Viability, at least").fill("150")
    form.get_by_label("Reason for the change").fill("Viability study VS-26-03")
    admin.submit(form.get_by_role("button", name="Propose version 2"), "refused")
    expect(page.locator(".field-error").first).to_contain_text("percentage, from 0 to 100")
    form = admin.form("propose:adipose")
    form.get_by_label("Viability, at least").fill("75")
    admin.submit(form.get_by_role("button", name="Propose version 2"), "proposed")
    expect(page.locator("[data-role=open-proposal]")).to_contain_text("Viability study VS-26-03")
    expect(page.locator("tr.changed[data-path='tests.viability_pct.min']")).to_contain_text("75")
    admin.check("proposed")

    qa = people("qa")
    qa.goto("/qa", "queue")
    expect(qa.page.locator("[data-queue=proposals] li")).to_have_count(1)
    qa.goto("/admin/specifications", "to-approve")
    qa.check("to-approve")
    qa.sign("Approve", "approved")
    expect(qa.page.locator("section[data-tissue=adipose] h2")).to_contain_text("version 2 in force")
    qa.check("approved")
    spec = _spec_body(lab)
    assert spec["tests"]["viability_pct"]["min"] == 75
    registered = lab.ok(lab.get("clinic", f"/batches/{lab.batch(mrn='MRN-9')}"), 200)
    assert registered["specification_version"] == 2  # batches registered afterwards


def test_r_acc_2_admin_confirms_deactivation_edits_and_resets_a_password(people, lab, live_server):
    admin = people("admin")
    page = admin.page
    admin.goto("/admin/users", "users")
    admin.check("users")
    page.get_by_role("button", name="Deactivate tech2").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("Deactivate Tara Second (tech2)?")
    admin.snap("confirm-deactivation")
    admin.submit(dialog.get_by_role("button", name="Deactivate tech2"), "deactivated")
    expect(page.locator("tr[data-username=tech2]")).to_contain_text("deactivated")

    edit = page.locator("details[data-edit=qa2]")
    edit.locator("summary").click()
    edit.get_by_label("Full name (printed on signatures)").fill("Quincy R. Reviewer")
    admin.submit(edit.get_by_role("button", name="Save qa2"), "edited")
    expect(page.locator("tr[data-username=qa2]")).to_contain_text("Quincy R. Reviewer")

    reset = page.locator("details[data-reset=tech]")
    reset.locator("summary").click()
    reset.get_by_label("Temporary password").fill("temporary-pass-1")
    admin.submit(reset.get_by_role("button", name="Reset the password"), "reset")
    expect(page.locator("tr[data-username=tech] [data-role=must-change]")).to_be_visible()
    admin.check("users-after")

    tech = people("tech", sign_in=False)
    tech.goto("/login", "login")
    tech.page.get_by_label("Username").fill("tech")
    tech.page.get_by_label("Password").fill("temporary-pass-1")
    tech.submit(tech.page.get_by_role("button", name="Sign in"), "choose")
    expect(tech.page.locator("[data-role=choose-password]")).to_be_visible()
    tech.check("choose-password")
    tech.page.get_by_label("Current (temporary) password").fill("temporary-pass-1")
    tech.page.get_by_label("New password", exact=True).fill("my-own-pass-22")
    tech.page.get_by_label("New password again").fill("my-own-pass-22")
    tech.submit(tech.page.get_by_role("button", name="Set the new password and sign in"), "signed-in")
    assert tech.page.url.endswith("/bench")
    favicon = tech.page.request.get(f"{live_server}/favicon.ico")
    assert (favicon.status, favicon.headers["content-type"]) == (200, "image/vnd.microsoft.icon")
