"""The everyday page behaviour a technician, QA and a clinic rely on, in Chromium (requirements §7, §8).

Every page that matters is checked at 390, 1024 and 1440 px (no sideways scrolling, no code shown).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pypdfium2 as pdfium
from playwright.sync_api import expect

from labtrack import jobs
from labtrack.domain.din import Din
from labtrack.services import outbox
from tests.e2e.conftest import SCREENSHOTS

LOCAL = "%Y-%m-%dT%H:%M"


def test_scan_fields_select_on_focus_empty_after_a_refusal_and_enter_never_submits_half_a_form(people, lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    tech = people("tech")
    page = tech.page
    scan_box = page.get_by_label("Scan a batch (DIN)")
    tech.scan("A999926000006ZA")  # a misread: refused beside the field
    page.wait_for_load_state()
    expect(page.locator("#scan-din-error")).to_be_visible()
    expect(scan_box).to_have_value("")  # emptied: the next scan is not glued to the refused one
    expect(scan_box).to_be_focused()
    tech.check("bench-refused-scan")
    with page.expect_navigation():
        tech.scan(Din(din).barcode_data)
    digestion = tech.form("step:digestion")
    scanned = digestion.get_by_label("Scan the DIN")
    scanned.fill("A9999 26")
    digestion.get_by_label("Duration").focus()
    scanned.focus()
    assert scanned.evaluate("el => [el.selectionStart, el.selectionEnd]") == [0, 8]  # selected: a scan replaces it
    page.keyboard.type(din)
    assert scanned.input_value() == din
    page.keyboard.press("Enter")
    expect(digestion.get_by_label("Duration")).to_be_focused()  # Enter moved on, nothing was submitted
    page.keyboard.type("45")
    page.keyboard.press("Enter")  # a field that is no scan field: still moves on, never submits half a form
    expect(digestion.get_by_label("Temperature")).to_be_focused()
    assert page.url.endswith(f"/batches/{din}")

    lot_scan = digestion.get_by_label("or scan the lot number")
    lots = digestion.get_by_label("Reagent lot: collagenase")
    lots.select_option("")
    lot_scan.focus()
    tech.scan("CG-Q")  # quarantined: said why, not picked
    expect(digestion.locator("[id$=reagent_lots-collagenase-scan-error]")).to_contain_text("quarantined")
    expect(lots).to_have_value("")
    disabled = lots.locator("option[disabled]", has_text="CG-Q")
    expect(disabled).to_contain_text("not usable: reagent lot CG-Q is quarantined")
    tech.scan("cg-1")  # the scanner's code replaces the refused one and picks the lot
    expect(lots).to_have_value(str(lab.lot("collagenase")))
    tech.check("card-lot-scanned")


def test_a_wrong_seal_is_a_deviation_not_a_green_success_and_the_receipt_is_blind(people, lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din, seal="SEAL-77"))
    tech = people("tech")
    tech.goto(f"/batches/{din}", "card-to-receive")
    assert "SEAL-77" not in tech.page.locator("body").inner_text()  # blind: the receiver reads the seal, not the page
    receipt = tech.form("receipt")
    receipt.get_by_label("Scan the DIN").fill(din)
    receipt.get_by_label("Seal id on the container").fill("SEAL-78")
    receipt.get_by_label("Temperature on arrival").fill("6")
    tech.submit(receipt.get_by_role("button", name="Record receipt"), "received-wrong-seal")
    flash = tech.page.locator("main > .alert").first
    expect(flash).to_have_attribute("data-tone", "warning")
    expect(flash).to_contain_text("with a deviation")
    expect(flash).to_contain_text("SEAL-78")
    expect(tech.page.locator(".alert.success")).to_have_count(0)
    tech.check("received-wrong-seal")


def test_an_out_of_spec_value_asks_for_confirmation_before_it_is_recorded(people, lab):
    din = lab.processed()
    tech = people("tech")
    tech.goto(f"/batches/{din}", "card-processed")
    panel = tech.form("qc_panel")
    panel.get_by_label("Viability").fill("55")
    panel.get_by_label("Scan the sample's DIN").fill(din)
    tech.submit(panel.get_by_role("button", name="Record the results"), "out-of-spec-asked")
    expect(tech.page.locator("[data-role=confirm-out-of-spec]")).to_be_visible()
    expect(tech.page.locator("#qc_panel-value-viability_pct-error")).to_contain_text("outside the specification")
    assert lab.sql("SELECT count(*) FROM qc_results")[0][0] == 0  # nothing recorded until confirmed
    tech.check("out-of-spec-asked")
    panel = tech.form("qc_panel")
    panel.get_by_label("Scan the sample's DIN").fill(din)
    panel.get_by_label("The out-of-specification values are right").check()
    tech.submit(panel.get_by_role("button", name="Record the results"), "out-of-spec-recorded")
    flash = tech.page.locator("main > .alert").first
    expect(flash).to_have_attribute("data-tone", "warning")  # bad news, recorded: never green
    expect(flash).to_contain_text("Out of specification")
    assert lab.sql("SELECT count(*) FROM qc_results WHERE test = 'viability_pct'")[0][0] == 1


def test_clinic_board_on_a_phone_says_where_the_product_is_and_refuses_a_planned_date_in_the_past(people, lab):
    released = lab.released()
    lab.ok(lab.handoff(released, by="tech", to="clinic", seal="SEAL-2"))
    clinic = people("clinic")
    clinic.goto("/clinic/patients", "patients")
    clinic.page.get_by_label("Find a patient").fill("doe")
    with clinic.page.expect_navigation():
        clinic.page.get_by_role("button", name="Find").click()
    order = clinic.page.locator("li[data-mrn='MRN-1'] form")
    order.get_by_label("Tissue source").select_option("adipose")
    yesterday = datetime.now(UTC) - timedelta(days=1)
    order.get_by_label("Planned administration").fill(yesterday.strftime(LOCAL))
    clinic.submit(order.get_by_role("button", name="Order batch"), "order-in-the-past")
    expect(clinic.page.locator("main")).to_contain_text("in the past")
    order = clinic.page.locator("li[data-mrn='MRN-1'] form")
    order.get_by_label("Tissue source").select_option("adipose")
    order.get_by_label("Planned administration").fill((datetime.now(UTC) + timedelta(days=2)).strftime(LOCAL))
    clinic.submit(order.get_by_role("button", name="Order batch"), "ordered")
    clinic.goto("/clinic", "board")
    board = clinic.page.locator("[data-role=board]")
    dispatched = board.locator(f"[data-din='{released}']")
    expect(dispatched.locator("[data-role=where]")).to_contain_text("Dispatched at")
    expect(dispatched.locator("[data-role=where]")).to_contain_text("to Clara Clinic")
    expect(dispatched.locator("[data-role=ready]")).to_contain_text("Ready to administer")
    ordered = board.locator(".row").first
    expect(ordered.locator("[data-role=where]")).to_have_text("Not harvested yet.")
    expect(ordered.locator("[data-role=planned]")).not_to_have_text("not planned")
    expect(ordered.locator("[data-role=ready]")).not_to_contain_text("Ready")
    clinic.page.set_viewport_size({"width": 390, "height": 844})
    clinic.album.save(clinic.page, "clinic-board-phone")
    clinic.check("board")


def test_bench_filters_and_pages_and_notifications_page(people, lab, app, db):
    first = lab.batch(mrn="MRN-1")
    lab.ok(lab.harvest(first))
    lab.ok(lab.handoff(first))  # handed to tech: waiting for them, and they are told
    second = lab.batch(mrn="PT-22")
    tech = people("tech")
    tech.goto("/bench?limit=1", "bench-page-1")
    rows = tech.page.locator("[data-role=batches] .row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-din", second)
    with tech.page.expect_navigation():
        tech.page.get_by_role("link", name="Next batches →").click()
    expect(rows.first).to_have_attribute("data-din", first)
    expect(tech.page.get_by_role("link", name="Next batches →")).to_have_count(0)
    tech.goto("/bench", "bench")
    tech.page.get_by_label("Waiting for me").check()
    with tech.page.expect_navigation():
        tech.page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-din", first)
    tech.goto("/bench?patient=PT-2", "bench-by-mrn")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-din", second)
    tech.goto("/bench?status=in_transit", "bench-in-transit")
    expect(rows.first).to_contain_text("in transit")
    tech.check("bench-filtered")

    assert lab.sql("SELECT count(*) FROM outbox WHERE topic = 'batch.handed_to_you'")[0][0] == 1
    pending = [row.id for row in lab.sql("SELECT id FROM outbox ORDER BY id")]
    jobs.dispatch(db, outbox.Settings.of(app.config), pending)
    tech.goto("/notifications?limit=1", "notifications")
    expect(tech.page.locator(".notifications li").first).to_contain_text("handed to you by Clara Clinic")
    tech.check("notifications")


def test_batch_record_page_and_pdf_read_as_words_with_the_stepper_and_the_sign_off(people, lab):
    din = lab.released()
    qa = people("qa")
    qa.goto("/qa", "queue")
    qa.check("queue")
    qa.goto(f"/batches/{din}", "card")
    expect(qa.page.locator("[data-role=stepper] .stage.done")).to_have_count(5)
    expect(qa.page.locator("[data-role=stepper] [aria-current=step]")).to_contain_text("Dispatch")
    qa.check("card")
    qa.goto(f"/batches/{din}/record", "record")
    expect(qa.page.locator("[data-role=sign-off]")).to_contain_text("Released by")
    expect(qa.page.locator("[data-role=sign-off]")).to_contain_text("Quinn Assurance (qa)")
    expect(qa.page.locator("main")).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
    expect(qa.page.locator("main")).to_contain_text("4.2 × 10⁷ cells")
    qa.check("record")
    pdf = qa.page.request.get(f"/batches/{din}/record.pdf")
    assert pdf.ok
    document = pdfium.PdfDocument(pdf.body())
    folder: Path = SCREENSHOTS / "batch-record-pdf"
    folder.mkdir(parents=True, exist_ok=True)
    document[0].render(scale=2).to_pil().save(folder / "page-1.png")
    text = document[0].get_textpage().get_text_range()
    assert "Reviewer sign-off" in "".join(p.get_textpage().get_text_range() for p in document)
    assert "Harvest" in text
