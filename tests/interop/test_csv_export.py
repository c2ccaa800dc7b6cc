"""R-EXP-1: lists as CSV (`format=csv`), every matching row, filters applied, formulas neutralised."""

from __future__ import annotations

import csv
import io

import pytest

from labtrack.documents.spreadsheet import cell
from labtrack.services import exports
from tests.helpers import GOOD_RESULTS, Lab
from tests.investigation_support import Batches, reaction


def rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    assert "\r\n" in text
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain text", "plain text"),
        (-0.5, -0.5),
        (42, 42),
        (True, "yes"),
        (None, ""),
    ],
)
def test_r_exp_1_values_a_spreadsheet_would_execute_are_neutralised(value, written):
    assert cell(value) == written


@pytest.fixture(scope="module")
def world(shared_lab: Lab) -> dict[str, str]:
    lab = shared_lab
    awaiting = lab.awaiting_release("adipose")
    patient = lab.ok(lab.get("clinic", f"/batches/{awaiting}"), 200)["patient"]["id"]
    registered = lab.ok(lab.post("clinic", "/batches", {"patient_id": patient, "tissue_source": "bone_marrow"}))["din"]
    lab.ok(lab.post("tech", f"/batches/{registered}/deviations", {"description": "=cmd|' /C calc'!A0 smudged label"}))
    theirs = lab.patient("MRN-O", by="other")
    elsewhere = lab.ok(lab.post("other", "/batches", {"patient_id": theirs["id"], "tissue_source": "adipose"}))["din"]
    return {"awaiting": awaiting, "registered": registered, "elsewhere": elsewhere}


def test_r_exp_1_batches_as_csv_with_the_filters_applied_and_the_clinics_own(shared_lab, world):
    everything = rows(shared_lab.get("qa", "/batches", format="csv"))
    assert {r["DIN"] for r in everything} == set(world.values())
    assert list(everything[0]) == [c.header for c in exports.BATCH_COLUMNS]
    only_registered = rows(shared_lab.get("qa", "/batches", format="csv", status="registered"))
    assert {r["DIN"] for r in only_registered} == {world["registered"], world["elsewhere"]}
    held = rows(shared_lab.get("qa", "/batches", format="csv", held="true"))
    assert [r["DIN"] for r in held] == [world["registered"]]
    assert held[0]["Held"] == "yes"
    own = rows(shared_lab.get("clinic", "/batches", format="csv"))
    assert world["elsewhere"] not in {r["DIN"] for r in own}
    theirs = shared_lab.get("other", "/batches", format="csv").get_data(as_text=True)
    assert world["awaiting"] not in theirs
    assert world["registered"] not in theirs


def test_r_exp_1_every_row_streams_by_keyset_not_one_page(shared_lab, world, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK", 1)
    streamed = rows(shared_lab.get("qa", "/batches", format="csv", limit="1"))  # a page size the export ignores
    assert [r["DIN"] for r in streamed] == sorted(world.values(), reverse=True)  # newest first, all three


def test_r_exp_1_deviations_as_csv_neutralise_a_formula_typed_into_a_description(shared_lab, world):
    found = rows(shared_lab.get("tech", "/deviations", format="csv", status="open"))
    (manual,) = [r for r in found if r["DIN"] == world["registered"]]
    assert manual["Description"].startswith("'=cmd")
    assert manual["Kind"] == "manual"
    assert shared_lab.get("clinic", "/deviations", format="csv").status_code == 403


def test_r_exp_1_qc_results_list_and_csv(shared_lab, world):
    din = world["awaiting"]
    page = shared_lab.ok(shared_lab.get("qa", "/qc-results", din=din, limit=2), 200)
    assert len(page["items"]) == 2
    assert page["items"][0]["din"] == din
    rest = shared_lab.ok(shared_lab.get("qa", "/qc-results", din=din, after=page["next"]), 200)
    assert rest["next"] is None
    assert len(page["items"]) + len(rest["items"]) == len(GOOD_RESULTS["adipose"])
    viability = rows(shared_lab.get("tech", "/qc-results", format="csv", test="viability_pct"))
    assert [(r["DIN"], r["Value"], r["Unit"], r["Within specification"]) for r in viability] == [
        (din, "88", "%", "yes")
    ]
    assert rows(shared_lab.get("qa", "/qc-results", format="csv", verified="false")) == []
    assert shared_lab.get("clinic", "/qc-results", format="csv").status_code == 403
    assert shared_lab.get("tech", "/qc-results", format="csv", din=world["awaiting"][:7] + "999999").status_code == 404


def test_r_exp_1_a_bad_format_is_refused(shared_lab):
    response = shared_lab.get("qa", "/batches", format="xlsx")
    assert response.status_code == 422
    assert response.get_json()["errors"]["format"]


def test_r_exp_1_adverse_reactions_as_csv_for_qa_and_the_clinics_own(shared_lab, world):
    lab = shared_lab
    patient = lab.ok(lab.get("clinic", f"/batches/{world['awaiting']}"), 200)["patient"]["id"]
    din = Batches(lab, patient).administered()
    described = "-1 swelling, +2 redness"  # a leading minus: a spreadsheet would compute it
    lab.ok(lab.post("clinic", f"/batches/{din}/adverse-reactions", reaction(description=described)))
    found = rows(lab.get("qa", "/adverse-reactions", format="csv", status="open"))
    (row,) = [r for r in found if r["DIN"] == din]
    assert row["Description"] == "'" + described
    assert (row["Category"], row["Serious"], row["Status"]) == ("injection_site_reaction", "no", "open")
    assert [r["DIN"] for r in rows(lab.get("clinic", "/adverse-reactions", format="csv"))] == [din]
    assert rows(lab.get("other", "/adverse-reactions", format="csv")) == []
    assert lab.get("tech", "/adverse-reactions", format="csv").status_code == 403
