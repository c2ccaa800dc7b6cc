"""One batch from the clinic through the lab and QA back to the patient, in a real browser (requirements §7)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Locator, expect

from labtrack.domain.din import Din
from labtrack.glossary import words
from tests.e2e.conftest import Person
from tests.helpers import GOOD_RESULTS

LOCAL = "%Y-%m-%dT%H:%M"  # a datetime-local value; the lab's display zone is UTC in tests


def test_whole_journey_of_one_batch_from_harvest_to_administration(people, lab):
    # --- clinic: register the patient, order the batch, harvest, hand off to the lab -----------------
    clinic = people("clinic")
    page = clinic.page
    expect(page).to_have_url(re.compile(r"/clinic$"))
    clinic.goto("/clinic/patients", "patients")
    register = clinic.form("register")
    register.get_by_label("MRN").fill("MRN-1")
    register.get_by_label("Family name").fill("Doe")
    register.get_by_label("Given name").fill("Jane")
    register.get_by_label("Birth date").fill("1980-05-17")
    clinic.submit(register.get_by_role("button", name="Register patient"), "patient-registered")
    expect(page.get_by_role("status")).to_contain_text("MRN MRN-1")

    order = page.locator("[data-mrn='MRN-1'] form")
    order.get_by_label("Tissue source").select_option("adipose")
    clinic.submit(order.get_by_role("button", name="Order batch"), "batch-ordered")
    din = page.locator("[data-din]").get_attribute("data-din")
    code = Din(din)
    expect(page.locator("[data-role=status]")).to_have_text("registered")

    harvest = clinic.form("step:harvest")
    ended = datetime.now(UTC) - timedelta(minutes=15)
    harvest.get_by_label("Scan the DIN").focus()
    clinic.scan(code.barcode_data)  # the ISBT 128 data structure a scanner reads off the collection label
    expect(harvest.get_by_label("Patient MRN")).to_be_focused()  # Enter moved on instead of submitting
    clinic.scan("MRN-1")
    harvest.get_by_label("Patient birth date").fill("1980-05-17")
    harvest.get_by_label("Patient weight").fill("80")
    harvest.get_by_label("Volume").fill("150")
    harvest.get_by_label("Site").select_option("abdomen")
    harvest.get_by_label("Started").fill((ended - timedelta(minutes=40)).strftime(LOCAL))
    harvest.get_by_label("Ended").fill(ended.strftime(LOCAL))
    clinic.submit(harvest.get_by_role("button", name="Record harvest"), "harvested")
    expect(page.locator("[data-role=status]")).to_have_text("collected")

    handoff = clinic.form("handoff")
    handoff.get_by_label("Scan the DIN").fill(code.display)  # typed eye-readable, with spaces and check character
    handoff.get_by_label("Hand to").select_option("tech")
    handoff.get_by_label("Seal id applied").fill("SEAL-1")
    handoff.get_by_label("Temperature at hand-off").fill("6")
    clinic.submit(handoff.get_by_role("button", name="Record hand-off"), "handed-off")
    expect(page.locator("[data-role=status]")).to_have_text("in transit")

    # --- technician: scan at the bench, receive, process, enter QC ------------------------------------
    tech = people("tech")
    tp = tech.page
    expect(tp).to_have_url(re.compile(r"/bench$"))
    expect(tp.get_by_label("Scan a batch (DIN)")).to_be_focused()  # the scan box is focused on load
    with tp.expect_navigation():
        tech.scan(din + code.check)  # 13 characters and the check character
    tech.snap("card-received-scan")
    receipt = tech.form("receipt")
    receipt.get_by_label("Scan the DIN").fill(din)
    receipt.get_by_label("Seal id on the container").fill("SEAL-1")
    receipt.get_by_label("Temperature on arrival").fill("6")
    tech.submit(receipt.get_by_role("button", name="Record receipt"), "received")
    expect(tp.locator("[data-role=status]")).to_have_text("received")

    digestion = tech.form("step:digestion")
    lots = digestion.get_by_label("Reagent lot: collagenase")
    usable = lots.locator("option:not([disabled])").all_inner_texts()
    assert [o.split(" ")[0] for o in usable[1:]] == ["CG-1"]  # quarantined and expired lots: shown, not usable
    expect(lots.locator("option[disabled]", has_text="CG-Q")).to_contain_text("quarantined")
    digestion.get_by_label("Scan the DIN").fill(din)
    digestion.get_by_label("Duration").fill("45")
    digestion.get_by_label("Temperature").fill("37")
    lots.select_option("")  # as if nothing were chosen: the scanner picks the lot and the incubator
    _scan_pick(tech, digestion, "or scan the lot number", "CG-1", lots)
    incubators = digestion.get_by_label("Equipment: incubator")
    incubators.select_option("")
    _scan_pick(tech, digestion, "or scan the equipment code", "INC-1", incubators)
    tech.submit(digestion.get_by_role("button", name="Record digestion"), "digested")
    expect(tp.locator("[data-role=status]")).to_have_text("processing")

    isolation = tech.form("step:isolation")
    centrifuges = isolation.get_by_label("Equipment: centrifuge")
    usable = centrifuges.locator("option:not([disabled])").all_inner_texts()
    assert [o.split(" ")[0] for o in usable[1:]] == ["CEN-1"]  # out of service and overdue: shown, not usable
    isolation.get_by_label("Scan the DIN").fill(din)
    isolation.get_by_label("Centrifugal force").fill("400")
    isolation.get_by_label("Duration").fill("10")
    centrifuges.select_option("")
    _scan_pick(tech, isolation, "or scan the equipment code", "CEN-1", centrifuges)
    tech.submit(isolation.get_by_role("button", name="Record isolation"), "isolated")

    concentration = tech.form("step:concentration")
    concentration.get_by_label("Scan the DIN").fill(din)
    concentration.get_by_label("Final volume").fill("8")
    expect(concentration.get_by_label("Equipment: centrifuge").locator("option:checked")).to_contain_text("CEN-1")
    tech.submit(concentration.get_by_role("button", name="Record concentration"), "concentrated")
    expect(tp.locator("[data-role=status]")).to_have_text("processed")

    panel = tech.form("qc_panel")  # the whole panel after one scan
    panel.get_by_label("Scan the sample's DIN").fill(din)
    for test, value in GOOD_RESULTS["adipose"].items():
        result = panel.get_by_label(re.compile("^" + re.escape(words(test))))
        if isinstance(value, str):
            result.select_option(value)
        else:
            result.fill(str(value))
    tech.submit(panel.get_by_role("button", name="Record the results"), "qc-panel")
    expect(tp.locator("main > .alert").first).to_have_attribute("data-tone", "success")
    expect(tp.locator("table.qc tbody tr")).to_have_count(len(GOOD_RESULTS["adipose"]))

    # --- a second technician verifies every result with one signature ---------------------------------
    tech2 = people("tech2")
    tech2.goto(f"/batches/{din}", "card-to-verify")
    tech2.page.get_by_role("button", name=f"Verify {len(GOOD_RESULTS['adipose'])} result(s)…").click()
    dialog = tech2.page.locator("dialog[open]")
    expect(dialog.locator("[data-role=printed-name]")).to_have_text("Tara Second")
    expect(dialog.locator("[data-role=username]")).to_have_text("tech2")
    expect(dialog.locator("[data-role=meaning]")).to_have_text("verified")
    expect(dialog.locator("input[name=qc_id]:checked")).to_have_count(len(GOOD_RESULTS["adipose"]))
    dialog.get_by_label("Your password").fill("correct-horse-battery")
    tech2.submit(dialog.get_by_role("button", name="Sign: verified"), "verified")
    expect(tech2.page.locator("[data-role=status]")).to_have_text("awaiting release")

    # --- QA releases from the review queue, with a signature; the record shows it ---------------------
    qa = people("qa")
    expect(qa.page).to_have_url(re.compile(r"/qa$"))
    awaiting = qa.page.locator("[data-queue=awaiting]")
    expect(awaiting).to_contain_text(code.display[:-2])
    with qa.page.expect_navigation():
        awaiting.get_by_role("link", name=code.display[:-2]).click()
    qa.snap("card-to-release")
    qa.page.get_by_role("button", name="Release…").click()
    dialog = qa.page.locator("dialog[open]")
    expect(dialog.locator("[data-role=printed-name]")).to_have_text("Quinn Assurance")
    expect(dialog.locator("[data-role=meaning]")).to_have_text("approved")
    expect(dialog.locator("time[data-utc-now]")).to_contain_text("Z")
    dialog.get_by_label("Your password").fill("correct-horse-battery")
    qa.snap("release-dialog")
    qa.submit(dialog.get_by_role("button", name="Sign: approved"), "released")
    expect(qa.page.locator("[data-role=status]")).to_have_text("released")
    expect(qa.page.get_by_text("conditional release — sterility pending")).to_be_visible()

    qa.goto(f"/batches/{din}/record", "record")
    expect(qa.page.locator("[data-role=verification]")).to_contain_text("Chain verified")
    signatures = qa.page.locator("table.signatures")
    expect(signatures).to_contain_text("Quinn Assurance")
    expect(signatures).to_contain_text("approved")
    expect(signatures).to_contain_text("Tara Second")

    # --- the clinic sees it ready; the technician dispatches; the clinic receives and administers -----
    clinic.goto("/clinic", "board-ready")
    expect(page.locator(f"[data-din='{din}'] [data-role=ready]")).to_contain_text("Ready")

    tech.goto(f"/batches/{din}", "card-to-dispatch")
    dispatch = tech.form("handoff")
    dispatch.get_by_label("Scan the DIN").fill(din)
    dispatch.get_by_label("Hand to").select_option("clinic")
    dispatch.get_by_label("Seal id applied").fill("SEAL-2")
    tech.submit(dispatch.get_by_role("button", name="Record hand-off"), "dispatched")
    expect(tp.locator("[data-role=status]")).to_have_text("dispatched")

    clinic.goto(f"/batches/{din}", "card-to-receive")
    arrival = clinic.form("receipt")
    arrival.get_by_label("Scan the DIN").fill(din)
    arrival.get_by_label("Seal id on the container").fill("SEAL-2")
    arrival.get_by_label("Temperature on arrival").fill("8")
    clinic.submit(arrival.get_by_role("button", name="Record receipt"), "delivered")
    expect(page.locator("[data-role=status]")).to_have_text("delivered")

    bedside = clinic.form("step:administration")
    bedside.get_by_label("1. Scan the product's DIN").focus()
    clinic.scan(code.barcode_data)
    expect(bedside.get_by_label("2. Patient MRN")).to_be_focused()
    clinic.scan("MRN-1")
    bedside.get_by_label("Patient birth date").fill("1980-05-17")
    bedside.get_by_label("Volume").fill("6")
    bedside.get_by_label("Injection sites").fill("frontal scalp, vertex")
    bedside.get_by_label("Physician").fill("Dr. Ines Marlow")
    clinic.submit(bedside.get_by_role("button", name="Record administration"), "administered")
    expect(page.locator("[data-role=status]")).to_have_text("administered")
    assert lab.sql("SELECT count(*) FROM batch_events WHERE type = 'identity_mismatch'")[0][0] == 0


def _scan_pick(person: Person, form: Locator, scan_label: str, code: str, picker: Locator) -> None:
    """A lot number or equipment code scanned beside its picker picks its option (the code and Enter)."""
    form.get_by_label(scan_label).focus()
    person.scan(code)
    expect(picker.locator("option:checked")).to_contain_text(code)
