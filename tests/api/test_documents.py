"""Issue 6: labels and the batch record, read back with a real barcode decoder and a PDF text extractor."""

import io

import pypdfium2 as pdfium
import zxingcpp
from pypdf import PdfReader

from labtrack.glossary import codes_in


def _symbols(pdf: bytes) -> dict[str, str]:
    document = pdfium.PdfDocument(pdf)
    try:
        image = document[0].render(scale=600 / 72).to_pil()
    finally:
        document.close()
    return {result.format.name: result.text for result in zxingcpp.read_barcodes(image)}


def _text(pdf: bytes) -> str:
    """The PDF's text with line breaks folded, as a reader would see it."""
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def test_label_barcodes_decode_to_isbt_din_data_structure(lab):
    din = lab.released("adipose")
    response = lab.get("tech", f"/batches/{din}/label.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    symbols = _symbols(response.data)
    assert symbols.get("Code128") == f"={din}00"
    assert symbols.get("DataMatrix") == f"={din}00"
    text = _text(response.data)
    for line in ("FOR AUTOLOGOUS USE ONLY", "SVF", "DOE, Jane", "1980-05-17", "EXP", "2–25 °C", "A9999"):
        assert line in text
    assert "CONDITIONAL RELEASE — STERILITY PENDING" in text  # R-REL-2: sterility still pending


def test_label_print_is_recorded_as_an_event(lab):
    din = lab.released("bone_marrow")
    lab.get("qa", f"/batches/{din}/label.pdf")
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    printed = [e for e in events if e["type"] == "label_printed"]
    assert len(printed) == 1
    assert printed[0]["actor"]["username"] == "qa"
    assert printed[0]["data"] == {"kind": "product"}


def test_product_label_for_unreleased_batch_is_refused_and_writes_nothing(lab):
    din = lab.processed("adipose")
    before = len(lab.ok(lab.get("tech", f"/batches/{din}/events"), 200))
    response = lab.get("tech", f"/batches/{din}/label.pdf")
    assert response.status_code == 409
    assert response.get_json()["code"] == "invalid_transition"
    assert len(lab.ok(lab.get("tech", f"/batches/{din}/events"), 200)) == before


def test_collection_label_at_registration_has_no_product_data(lab):
    din = lab.batch("adipose")
    response = lab.get("clinic", f"/batches/{din}/label.pdf", kind="collection")
    assert response.status_code == 200
    text = _text(response.data)
    assert "COLLECTION" in text
    assert "FOR AUTOLOGOUS USE ONLY" in text
    assert "SVF" not in text
    assert "EXP" not in text
    assert _symbols(response.data).get("Code128") == f"={din}00"


def test_label_of_another_clinics_batch_is_not_found(lab):
    din = lab.batch("adipose")
    assert lab.get("other", f"/batches/{din}/label.pdf", kind="collection").status_code == 404


def test_r_sig_2_r_cor_1_batch_record_shows_signatures_corrections_and_verification(lab):
    din = lab.processed("adipose")
    events = lab.ok(lab.get("tech", f"/batches/{din}/events"), 200)
    digestion = next(e for e in events if e["type"] == "digestion")
    lab.ok(
        lab.post(
            "tech",
            f"/batches/{din}/corrections",
            {"event_seq": digestion["seq"], "reason": "transcription error", "data": {"temperature_c": 36.5}},
        )
    )
    for test, value in (
        ("viability_pct", 88),
        ("tnc_total", 4.2e7),
        ("gram_stain", "no_organisms_seen"),
        ("endotoxin_eu_per_ml", 0.5),
        ("sterility_culture", "pending"),
        ("cd34_pct", 3.1),
    ):
        entered = lab.ok(lab.qc(din, test, value))
        lab.ok(lab.verify(din, entered["id"]), 200)
    lab.ok(lab.release(din), 200)
    response = lab.get("qa", f"/batches/{din}/record.pdf")
    assert response.status_code == 200
    text = _text(response.data)
    assert f"DIN {din[:5]} {din[5:7]} {din[7:]}" in text
    assert "signed by Tara Second (tech2)" in text
    assert "meaning: verified" in text
    assert "signed by Quinn Assurance (qa)" in text
    assert "meaning: approved" in text
    assert "Corrected by entry" in text
    assert "Temperature was 37 °C, now 36.5 °C" in text
    assert "Reviewer sign-off" in text
    assert "Released by" in text
    assert codes_in(text) == []  # every field, status and result in words
    assert "Chain verified" in text
    assert "page 1 of" in text


def test_batch_record_is_for_lab_staff_and_own_clinic_only(lab):
    din = lab.processed("adipose")
    assert lab.get("qa", f"/batches/{din}/record.pdf").status_code == 200
    assert lab.get("clinic", f"/batches/{din}/record.pdf").status_code == 200
    assert lab.get("other", f"/batches/{din}/record.pdf").status_code == 404
    assert lab.get("tech", f"/batches/{din}/record.pdf").status_code == 200  # lab staff read any batch's record


def test_long_record_paginates_with_din_on_every_page(lab):
    din = lab.processed("adipose")
    for index in range(60):
        lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"description": f"observation {index}"}))
    pdf = lab.get("qa", f"/batches/{din}/record.pdf").data
    pages = PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) > 2
    for number, page in enumerate(pages, start=1):
        text = page.extract_text()
        assert f"page {number} of {len(pages)}" in text
        assert f"Batch record {din[:5]} {din[5:7]} {din[7:]}" in text
