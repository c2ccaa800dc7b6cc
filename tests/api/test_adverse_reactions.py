"""Adverse reactions (R-ADV-1..4): reported on an administered batch, assessed, closed with a signature."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from tests.helpers import Lab, iso, now, signature
from tests.investigation_support import INFECTION, REACTION, Batches, reaction


@pytest.fixture
def made(lab) -> Batches:
    return Batches(lab)


def report(lab: Lab, din: str, body: dict | None = None, *, by: str = "clinic"):
    return lab.post(by, f"/batches/{din}/adverse-reactions", body or reaction())


def rows(lab: Lab, table: str) -> int:
    return lab.sql(f"SELECT count(*) FROM {table}")[0][0]


def test_r_adv_1_the_clinic_reports_a_reaction_on_its_administered_batch_as_an_event(lab, made):
    din = made.administered()
    body = lab.ok(report(lab, din))
    assert body["din"] == din
    assert body["status"] == "open"
    assert body["reported_by"]["username"] == "clinic"
    assert (body["serious"], body["reportable"], body["report_due_on"], body["lookback_id"]) == (
        False,
        False,
        None,
        None,
    )
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert events[-1]["type"] == "adverse_reaction_reported"
    assert events[-1]["data"]["description"] == REACTION["description"]
    assert body["reported_seq"] == events[-1]["seq"]
    assert lab.ok(lab.get("qa", f"/adverse-reactions/{body['id']}"), 200)["id"] == body["id"]


def test_r_adv_1_qa_reports_too_and_other_roles_may_not(lab, made):
    din = made.administered()
    assert lab.ok(report(lab, din, by="qa"))["reported_by"]["username"] == "qa"
    for user in ("tech", "admin"):
        assert report(lab, din, by=user).status_code == 403


def test_r_adv_1_a_batch_not_administered_is_409_not_administered_and_nothing_is_written(lab, made):
    din = made.registered()
    before = (rows(lab, "batch_events"), rows(lab, "adverse_reactions"))
    response = report(lab, din)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "not_administered"
    assert (rows(lab, "batch_events"), rows(lab, "adverse_reactions")) == before


def test_r_adv_1_another_clinics_batch_is_404_like_a_missing_one(lab, made):
    din = made.administered()
    theirs = report(lab, din, by="other")
    missing = report(lab, din[:7] + "999999", by="other")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == missing.get_json()
    assert rows(lab, "adverse_reactions") == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": "rash"}, "category"),
        ({"outcome": "better"}, "outcome"),
        ({"outcome": "fatal"}, "fatal"),  # a fatal outcome with fatal false
        ({"onset_at": iso(now() + timedelta(days=1))}, "onset_at"),
        ({"onset_at": iso(now() - timedelta(days=30))}, "onset_at"),  # before the administration
        ({"description": "  "}, "description"),
    ],
)
def test_r_adv_1_bad_facts_are_422_naming_the_field_and_write_nothing(lab, made, change, field):
    din = made.administered()
    before = rows(lab, "batch_events")
    response = report(lab, din, reaction(**change))
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "validation_error"
    assert field in response.get_json()["errors"]
    assert rows(lab, "batch_events") == before


def test_r_adv_2_seriousness_reportability_and_due_day_follow_21_cfr_1271_350(lab, made):
    din = made.administered()
    serious = lab.ok(report(lab, din, reaction(intervention_required=True)))
    assert (serious["serious"], serious["reportable"], serious["report_due_on"]) == (True, False, None)
    reportable = lab.ok(report(lab, din, reaction(life_threatening=True, communicable_disease_suspected=True)))
    assert (reportable["serious"], reportable["reportable"]) == (True, True)
    received = date.fromisoformat(reportable["received_on"])
    assert date.fromisoformat(reportable["report_due_on"]) == received + timedelta(days=15)


def test_r_adv_3_qa_closes_with_a_signed_conclusion_bound_to_the_report(lab, made):
    din = made.administered()
    opened = lab.ok(report(lab, din))
    body = {
        "conclusion": "Local reaction, self-limiting.",
        "related_to_product": "yes",
        "signature": signature("reviewed"),
    }
    closed = lab.ok(lab.post("qa", f"/adverse-reactions/{opened['id']}/close", body), 200)
    assert closed["status"] == "closed"
    assert closed["closed_by"]["username"] == "qa"
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    reported = next(e for e in events if e["type"] == "adverse_reaction_reported")
    assert events[-1]["type"] == "adverse_reaction_closed"
    assert events[-1]["signature"]["meaning"] == "reviewed"
    assert events[-1]["signature"]["record_hash"] == reported["hash"]
    again = lab.post("qa", f"/adverse-reactions/{opened['id']}/close", body)
    assert again.status_code == 409


def test_r_adv_3_a_reportable_reaction_closes_only_with_the_day_it_was_reported(lab, made):
    din = made.administered()
    opened = lab.ok(report(lab, din, reaction(fatal=False, life_threatening=True, communicable_disease_suspected=True)))
    body = {"conclusion": "Reported.", "related_to_product": "unknown", "signature": signature("reviewed")}
    before = rows(lab, "batch_events")
    refused = lab.post("qa", f"/adverse-reactions/{opened['id']}/close", body)
    assert refused.status_code == 422
    assert "reported_to_authority_on" in refused.get_json()["errors"]
    assert rows(lab, "batch_events") == before
    future = body | {"reported_to_authority_on": (date.today() + timedelta(days=2)).isoformat()}
    assert lab.post("qa", f"/adverse-reactions/{opened['id']}/close", future).status_code == 422
    done = body | {"reported_to_authority_on": date.today().isoformat()}
    closed = lab.ok(lab.post("qa", f"/adverse-reactions/{opened['id']}/close", done), 200)
    assert closed["reported_to_authority_on"] == date.today().isoformat()


def test_r_adv_3_closing_refusals(lab, made):
    din = made.administered()
    opened = lab.ok(report(lab, din))
    path = f"/adverse-reactions/{opened['id']}/close"
    body = {"conclusion": "ok", "related_to_product": "no", "signature": signature("reviewed")}
    assert lab.post("clinic", path, body).status_code == 403
    assert lab.post("qa", path, body | {"related_to_product": "maybe"}).status_code == 422
    assert lab.post("qa", path, body | {"signature": signature("approved")}).status_code == 422
    wrong = lab.post("qa", path, body | {"signature": signature("reviewed", "wrong-password")})
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == "signature_invalid"
    assert lab.post("qa", "/adverse-reactions/987654/close", body).status_code == 404
    assert lab.ok(lab.get("qa", f"/adverse-reactions/{opened['id']}"), 200)["status"] == "open"


def test_r_adv_3_lists_are_scoped_to_the_clinic(lab, made):
    din = made.administered()
    made = lab.ok(report(lab, din))
    assert [r["id"] for r in lab.ok(lab.get("clinic", "/adverse-reactions"), 200)] == [made["id"]]
    assert lab.ok(lab.get("other", "/adverse-reactions"), 200) == []
    assert lab.get("other", f"/adverse-reactions/{made['id']}").status_code == 404
    assert lab.ok(lab.get("qa", "/adverse-reactions", status="open", din=din), 200)[0]["id"] == made["id"]
    assert lab.ok(lab.get("qa", "/adverse-reactions", status="closed"), 200) == []
    assert lab.get("tech", "/adverse-reactions").status_code == 403


def test_r_adv_3_the_worksheet_has_the_facts_a_medwatch_3500a_needs(lab, made):
    din = made.administered()
    made = lab.ok(report(lab, din, reaction(intervention_required=True)))
    response = lab.get("clinic", f"/adverse-reactions/{made['id']}/report.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    for fact in ("MedWatch 3500A", made["din_display"], "Required intervention", "YES", "SVF",
                 "Redness and swelling", "Date of use", "CG-1", "INC-1"):  # fmt: skip
        assert fact in text, fact
    assert lab.get("other", f"/adverse-reactions/{made['id']}/report.pdf").status_code == 404


def test_r_adv_4_an_infection_opens_a_lookback_on_its_batch_by_itself(lab, made):
    din = made.administered()
    sibling = made.at_lab()  # the same collagenase lot and incubator, today: affected
    lab.ok(lab.step(sibling, "digestion"))
    made = lab.ok(report(lab, din, reaction(**INFECTION)))
    assert made["reportable"] is True
    assert made["lookback_id"] is not None
    lookback = lab.ok(lab.get("qa", f"/lookbacks/{made['lookback_id']}"), 200)
    assert lookback["seed"] == {"kind": "batch", "value": din}
    assert lookback["trigger"] == "adverse_reaction"
    assert lookback["requested_by"] == "clinic"
    assert [(a["din"], a["action"]) for a in lookback["affected"]] == [(sibling, "held")]
    assert lab.ok(lab.get("qa", f"/batches/{sibling}"), 200)["held"] is True


def test_r_adv_4_a_suspected_communicable_disease_opens_one_too_and_other_reactions_do_not(lab, made):
    din = made.administered()
    assert lab.ok(report(lab, din))["lookback_id"] is None
    assert lab.ok(report(lab, din, reaction(communicable_disease_suspected=True)))["lookback_id"] is not None
