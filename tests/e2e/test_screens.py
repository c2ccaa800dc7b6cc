"""The four screenshots docs/web.md shows: the bench card (1440 px), the QA queue (1024 px), the clinic board
on a phone (390 px) and page 1 of the batch record PDF.

Every run saves them under test-artifacts/screenshots/docs/; to refresh the copies in the repository:

    LABTRACK_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/e2e/test_screens.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import HEIGHTS, SCREENSHOTS
from tests.helpers import PROCESS_ORDER

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 300_000


def _save(png: bytes, name: str) -> Path:
    """``png`` as a palette PNG (small enough for the repository) under test-artifacts, and under
    ``$LABTRACK_SCREENSHOTS`` when set."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(buffer, "PNG", optimize=True)
    folders = [SCREENSHOTS / "docs"] + (
        [ROOT / os.environ["LABTRACK_SCREENSHOTS"]] if "LABTRACK_SCREENSHOTS" in os.environ else []
    )
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(buffer.getvalue())
    assert len(buffer.getvalue()) < MAX_BYTES, (name, len(buffer.getvalue()))
    return folders[-1] / name


def _at(person, width: int) -> bytes:
    person.page.set_viewport_size({"width": width, "height": HEIGHTS[width]})
    return person.page.screenshot(full_page=False)


def test_screens_of_docs_web_bench_card_qa_queue_clinic_board_and_record_pdf(people, lab):
    released = lab.released()  # Jane Doe, MRN-1: ready on the clinic board; its record as PDF
    processed = lab.batch(mrn="PT-2")  # another patient's batch, processed, two QC results entered
    lab.ok(lab.harvest(processed, patient_mrn="PT-2"))
    lab.ok(lab.handoff(processed))
    lab.ok(lab.receive(processed))
    for step in PROCESS_ORDER["adipose"]:
        lab.ok(lab.step(processed, step))
    entered = [{"test": "viability_pct", "value": 88}, {"test": "tnc_total", "value": 4.2e7}]
    lab.ok(lab.post("tech", f"/batches/{processed}/qc/panel", {"scanned_din": processed, "results": entered}))

    tech = people("tech")
    tech.goto(f"/batches/{processed}", "card")
    expect(tech.page.locator("[data-role=qc-panel]")).to_be_visible()
    _save(_at(tech, 1440), "bench-card-1440.png")

    qa = people("qa")
    expect(qa.page.locator("main")).to_contain_text("Results to verify")
    _save(_at(qa, 1024), "qa-queue-1024.png")

    clinic = people("clinic")
    expect(clinic.page.locator(f"[data-din='{released}'] [data-role=ready]")).to_contain_text("Ready")
    _save(_at(clinic, 390), "clinic-board-390.png")

    pdf = qa.page.request.get(f"/batches/{released}/record.pdf")
    assert pdf.ok
    page = pdfium.PdfDocument(pdf.body())[0]
    buffer = io.BytesIO()
    page.render(scale=1.5).to_pil().save(buffer, "PNG")
    _save(buffer.getvalue(), "record-pdf-page-1.png")
