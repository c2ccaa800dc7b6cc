"""Every everyday page at 390, 1024 and 1440 px: no sideways scrolling, no code where people read (requirements §7)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.helpers import PROCESS_ORDER


def make_processed(lab, mrn: str) -> str:
    """An adipose batch of another patient, processed at the lab."""
    din = lab.batch(mrn=mrn)
    lab.ok(lab.harvest(din, patient_mrn=mrn))
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    for name in PROCESS_ORDER["adipose"]:
        lab.ok(lab.step(din, name))
    return din


def test_everyday_pages_fit_a_phone_a_tablet_and_a_desktop_and_speak_words(people, lab):
    released = lab.released()
    processed = make_processed(lab, "MRN-2")
    lab.ok(lab.qc(processed, "viability_pct", 55))  # out of spec: a deviation, the batch on hold
    pages = {
        "tech": ["/bench", f"/batches/{processed}", f"/batches/{released}", "/bench?status=released", "/notifications"],
        "qa": ["/qa", f"/batches/{processed}", f"/batches/{released}/record"],
        "clinic": ["/clinic", "/clinic/patients", f"/batches/{released}", f"/batches/{released}/record"],
    }
    for username, paths in pages.items():
        person = people(username)
        for path in paths:
            response = person.page.goto(path)
            assert response.status == 200, path
            person.check(path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-"))
    expect(person.page.locator("[data-role=stepper]")).to_be_visible()
