"""R-ZPL-1: labels in ZPL II, read back by parsing the ZPL, beside the PDF label whose symbols are decoded."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from labtrack.documents.labels import LabelView
from labtrack.documents.zpl import code128_data, datamatrix_data, field_hex, render_zpl
from tests.helpers import Lab
from tests.interop import zpl

VIEW = LabelView(
    kind="product", din="A999926000123", din_body="A9999 26 000123", check_character="P",
    barcode_data="=A99992600012300", patient_name="O'NEIL, Zoë", birth_date="1980-05-17", facility="A9999",
    clinic="C1", tissue="Adipose lipoaspirate", product="SVF", expires="2026-12-03 10:00 UTC", storage="2–25 °C",
    conditional=True,
)  # fmt: skip


def _pdf_text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def test_r_zpl_1_field_data_escapes_carets_tildes_and_the_symbols_own_characters():
    assert field_hex("a^b~c_d") == "a_5Eb_7Ec_5Fd"
    assert field_hex("°") == "_C2_B0"
    assert code128_data("=A>B") == ">:=A><B"
    assert datamatrix_data("a_b~") == "a__b~"
    hostile = VIEW.__class__(**(VIEW.__dict__ | {"patient_name": "X^XZ~JA>_<", "barcode_data": "=>~^_"}))
    label = zpl.parse(render_zpl(hostile))
    assert "Patient: X^XZ~JA>_<   DOB 1980-05-17" in label.texts()
    code128 = label.symbol("BC")
    assert code128.data == "=>~^_"
    assert "><" in zpl._unhex(code128.raw, "_")  # the literal > travels as ><
    assert label.symbol("BX").data == "=>~^_"


def test_r_zpl_1_label_is_4_by_2_inches_at_203_dpi_with_code128_and_datamatrix_200():
    label = zpl.parse(render_zpl(VIEW))
    assert label.settings["PW"] == "812"
    assert label.settings["LL"] == "406"
    assert label.settings["CI"] == "28"
    code128 = label.symbol("BC")
    assert code128.commands["BC"].startswith("N,80,N")
    assert code128.data == "=A99992600012300"
    matrix = label.symbol("BX")
    orientation, module, quality, *_ = matrix.commands["BX"].split(",")
    assert (orientation, quality) == ("N", "200")
    assert int(module) > 0
    assert matrix.data == "=A99992600012300"
    for field in label.fields:
        x, y = map(int, field.commands["FO"].split(","))
        assert 0 <= x < 812
        assert 0 <= y < 406
    texts = label.texts()
    for line in ("FIN A9999 · C1", "SVF", "A9999 26 000123", "P", "Patient: O'NEIL, Zoë   DOB 1980-05-17",
                 "EXP 2026-12-03 10:00 UTC   Store 2–25 °C", "FOR AUTOLOGOUS USE ONLY",
                 "CONDITIONAL RELEASE — STERILITY PENDING"):  # fmt: skip
        assert line in texts


def test_r_zpl_1_the_api_serves_the_same_label_as_the_pdf(lab: Lab):
    din = lab.released("adipose")
    response = lab.get("tech", f"/batches/{din}/label.zpl")
    assert response.status_code == 200
    assert response.mimetype == "application/zpl"
    label = zpl.parse(response.get_data(as_text=True))
    assert label.symbol("BC").data == label.symbol("BX").data == f"={din}00"
    pdf = _pdf_text(lab.get("tech", f"/batches/{din}/label.pdf").data)
    for text in label.texts():
        assert " ".join(text.split()) in pdf
    events = lab.ok(lab.get("tech", f"/batches/{din}/events"), 200)
    assert [e["data"] for e in events if e["type"] == "label_printed"] == [
        {"kind": "product", "format": "zpl"},
        {"kind": "product"},
    ]


def test_r_zpl_1_collection_label_in_zpl_has_no_product_data(lab: Lab):
    din = lab.batch("adipose", mrn="MRN-ZPL")
    label = zpl.parse(lab.get("clinic", f"/batches/{din}/label.zpl", kind="collection").get_data(as_text=True))
    texts = " ".join(label.texts())
    assert "COLLECTION" in texts
    assert "FOR AUTOLOGOUS USE ONLY" in texts
    assert "EXP" not in texts
    assert label.symbol("BC").data == f"={din}00"


@pytest.mark.parametrize("path", ["/label.zpl", "/label/print"])
def test_r_zpl_1_same_rules_as_the_pdf_label(lab: Lab, path: str):
    din = lab.processed("adipose")
    before = len(lab.ok(lab.get("tech", f"/batches/{din}/events"), 200))
    send = lab.get if path.endswith(".zpl") else lab.post
    refused = send("tech", f"/batches/{din}{path}")
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "invalid_transition"
    assert send("other", f"/batches/{din}{path}").status_code == 404
    assert len(lab.ok(lab.get("tech", f"/batches/{din}/events"), 200)) == before


def test_r_zpl_1_printing_without_a_configured_printer_is_refused(lab: Lab):
    din = lab.batch("adipose", mrn="MRN-NOPRINTER")
    response = lab.post("clinic", f"/batches/{din}/label/print", {"kind": "collection"})
    assert response.status_code == 409
    assert response.get_json()["code"] == "printer_not_configured"
    assert lab.sql("SELECT count(*) FROM label_prints")[0][0] == 0
