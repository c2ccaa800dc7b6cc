"""The three everyday journeys with the keyboard and a scanner alone, counting page loads and keystrokes.

A keystroke is a key pressed: every character typed or scanned, every Tab to reach a
field or a button, every Enter. Focus starts where the page puts it on load; nothing
is clicked. The counts are written to test-artifacts/journeys.json and quoted in
docs/web.md (before and after the pages' rework). Sign-in is not counted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from labtrack.domain.din import Din
from labtrack.glossary import words
from tests.e2e.conftest import Person
from tests.helpers import PASSWORD

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MAX_TABS = 120
QC_TYPED = {  # the adipose panel as a technician types it (GOOD_RESULTS)
    "viability_pct": "88",
    "tnc_total": "42000000",
    "gram_stain": "no",  # typed into the closed select: "no organisms seen"
    "endotoxin_eu_per_ml": "0.5",
    "sterility_culture": "",  # one choice, already selected
    "cd34_pct": "3.1",
}


@dataclass
class Keyboard:
    """One person's keys and page loads."""

    person: Person
    keys: int = 0
    loads: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("load", lambda _page: self._loaded())

    def _loaded(self) -> None:
        self.loads += 1

    @property
    def page(self) -> Page:
        return self.person.page

    def press(self, key: str) -> None:
        self.keys += 1
        self.page.keyboard.press(key)

    def type(self, text: str) -> None:
        self.keys += len(text)
        self.page.keyboard.type(text)

    def focused(self, target: Locator) -> bool:
        return target.evaluate("el => el === document.activeElement")

    def tab_to(self, target: Locator) -> None:
        """Tab until ``target`` has the focus (as a person does), counting each Tab."""
        target.wait_for(state="visible")
        for _ in range(MAX_TABS):
            if self.focused(target):
                return
            self.press("Tab")
        raise AssertionError(f"{MAX_TABS} Tabs did not reach {target}")

    def enter_and_wait(self) -> None:
        with self.page.expect_navigation():
            self.press("Enter")

    def fill(self, fields: list[tuple[Locator, str]]) -> None:
        """Each field reached (Tab, unless the page already moved the focus there) and typed into."""
        for target, text in fields:
            self.tab_to(target)
            self.type(text)

    def submit(self, button: Locator, label: str) -> None:
        """Enter on the form's button (Tab to it first, if the focus is not there)."""
        self.tab_to(button)
        self.enter_and_wait()
        self.person.snap(label)

    def scan(self, target: Locator, text: str) -> None:
        """A scanner: the code and Enter, into the field that has the focus (Tab to it first if needed)."""
        self.tab_to(target)
        self.type(text)
        self.press("Enter")

    def figures(self) -> dict[str, int]:
        return {"page_loads": self.loads, "keystrokes": self.keys}


def _record(name: str, *people: Keyboard) -> dict[str, int]:
    total = {"page_loads": sum(p.loads for p in people), "keystrokes": sum(p.keys for p in people)}
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "journeys.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    known[name] = total
    path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    return total


def test_keyboard_journeys_receipt_to_release_to_administration(people, lab):
    din = lab.batch("adipose")
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    code = Din(din)

    # --- technician: scan at the bench, receive, three steps, six QC results; a second one verifies -------
    tech = Keyboard(people("tech"))
    tech.loads = 0
    tp = tech.page
    tech.type(code.barcode_data)
    tech.enter_and_wait()
    receipt = tech.person.form("receipt")
    tech.scan(receipt.get_by_label("Scan the DIN"), din)
    tech.fill(
        [
            (receipt.get_by_label("Seal id on the container"), "SEAL-1"),
            (receipt.get_by_label("Temperature on arrival"), "6"),
        ]
    )
    tech.submit(receipt.get_by_role("button", name="Record receipt"), "received")
    expect(tp.locator(".batch-head")).to_have_attribute("data-status", "received")

    steps = {
        "digestion": [("Duration", "45"), ("Temperature", "37")],
        "isolation": [("Centrifugal force", "400"), ("Duration", "10")],
        "concentration": [("Final volume", "8")],
    }
    for name, fields in steps.items():
        form = tech.person.form(f"step:{name}")
        tech.scan(form.get_by_label("Scan the DIN"), din)
        tech.fill([(form.get_by_label(label), text) for label, text in fields])
        tech.submit(form.get_by_role("button", name=f"Record {name}"), name)
    expect(tp.locator(".batch-head")).to_have_attribute("data-status", "processed")

    _enter_qc(tech, din)
    expect(tp.locator("main > .alert").first).to_have_attribute("data-tone", "success")

    tech2 = Keyboard(people("tech2"))
    tech2.loads = 0
    tech2.type(code.barcode_data)
    tech2.enter_and_wait()
    _verify_all(tech2)
    expect(tech2.page.locator(".batch-head")).to_have_attribute("data-status", "awaiting_release")
    technicians = _record("technician: receipt to awaiting release", tech, tech2)

    # --- QA: from the queue to the release, signed ----------------------------------------------------
    qa = Keyboard(people("qa"))
    qa.loads = 0
    qa.submit(qa.page.locator("[data-queue=awaiting]").get_by_role("link").first, "qa-card")
    qa.tab_to(qa.page.get_by_role("button", name="Release…"))
    qa.press("Enter")
    qa.type(PASSWORD)
    qa.enter_and_wait()
    expect(qa.page.locator(".batch-head")).to_have_attribute("data-status", "released")
    quality = _record("QA: release from the queue", qa)

    # --- the lab dispatches (API); the clinic follows it on its board, receives it, administers ---------
    lab.ok(lab.handoff(din, by="tech", to="clinic", seal="SEAL-2"))
    clinic = Keyboard(people("clinic"))
    clinic.loads = 0
    clinic.submit(clinic.page.locator(f"[data-din='{din}'] a").first, "clinic-card")
    arrival = clinic.person.form("receipt")
    clinic.scan(arrival.get_by_label("Scan the DIN"), din)
    clinic.fill(
        [
            (arrival.get_by_label("Seal id on the container"), "SEAL-2"),
            (arrival.get_by_label("Temperature on arrival"), "8"),
        ]
    )
    clinic.submit(arrival.get_by_role("button", name="Record receipt"), "clinic-received")
    bedside = clinic.person.form("step:administration")
    clinic.scan(bedside.get_by_label("1. Scan the product's DIN"), code.barcode_data)
    clinic.scan(bedside.get_by_label("2. Patient MRN"), "MRN-1")
    clinic.fill(
        [
            (bedside.get_by_label("Patient birth date"), "05171980"),
            (bedside.get_by_label("Volume"), "6"),
            (bedside.get_by_label("Injection sites"), "frontal scalp"),
            (bedside.get_by_label("Physician"), "Dr. Ines Marlow"),
        ]
    )
    clinic.submit(bedside.get_by_role("button", name="Record administration"), "administered")
    expect(clinic.page.locator(".batch-head")).to_have_attribute("data-status", "administered")
    clinics = _record("clinic: dispatched to administered", clinic)
    # Budgets measured on this code (docs/web.md): a page that costs more loads or keys fails here.
    assert technicians["page_loads"] <= 8
    assert technicians["keystrokes"] <= 220
    assert quality["page_loads"] <= 2
    assert quality["keystrokes"] <= 40
    assert clinics["page_loads"] <= 3
    assert clinics["keystrokes"] <= 110


def _enter_qc(tech: Keyboard, din: str) -> None:
    """The adipose QC panel: one scan, then each result, then Enter on its button."""
    panel = tech.person.form("qc_panel")
    tech.scan(panel.get_by_label("Scan the sample's DIN"), din)
    fields = [(panel.get_by_label(re.compile("^" + re.escape(words(test)))), typed) for test, typed in QC_TYPED.items()]
    tech.fill([(field, typed) for field, typed in fields if typed])
    tech.submit(panel.get_by_role("button", name="Record the results"), "qc-panel")


def _verify_all(tech2: Keyboard) -> None:
    """Every result verified by a second technician with one signature."""
    tech2.tab_to(tech2.page.get_by_role("button", name=re.compile(r"^Verify \d+ result")))
    tech2.press("Enter")
    tech2.type(PASSWORD)
    tech2.enter_and_wait()
