"""Investigation pages (R-ADV-1, R-ADV-3, R-LBK-1..4): the same services as the API, in words."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.helpers import PASSWORD
from tests.investigation_support import INFECTION, Batches, reaction, reaction_form
from tests.web.support import error_beside


@pytest.fixture
def made(lab) -> Batches:
    return Batches(lab)


def test_r_adv_1_the_clinic_reports_a_reaction_from_the_batch_card(lab, made, sign_in):
    din = made.administered()
    clinic = sign_in("clinic")
    card = clinic.get(f"/batches/{din}").text
    assert "Report an adverse reaction" in card
    done = clinic.submit(f"/batches/{din}/adverse-reaction", reaction_form(**INFECTION), follow_redirects=True)
    assert done.status_code == 200
    assert "reported (reportable to the FDA)" in done.text
    assert "Lookback 1 was opened" in done.text
    assert "Adverse reaction 1" in done.text  # the card now shows it
    assert lab.ok(lab.get("qa", "/adverse-reactions"), 200)[0]["category"] == "infection"


def test_r_adv_1_a_refused_report_shows_the_rule_beside_the_field(lab, made, sign_in):
    din = made.administered()
    clinic = sign_in("clinic")
    refused = clinic.submit(f"/batches/{din}/adverse-reaction", reaction_form(outcome="fatal"))
    assert refused.status_code == 422
    assert "must be true exactly when the outcome is fatal" in error_beside(refused.text, "report", "fatal").lower()
    not_yet = made.processed()
    assert "Report an adverse reaction" not in clinic.get(f"/batches/{not_yet}").text
    assert clinic.submit(f"/batches/{not_yet}/adverse-reaction", reaction_form()).status_code == 409
    assert sign_in("other").get(f"/batches/{din}/adverse-reaction").status_code == 404
    assert lab.ok(lab.get("qa", "/adverse-reactions"), 200) == []


def test_r_lbk_1_r_lbk_4_qa_opens_reads_and_closes_a_lookback_on_the_investigations_page(lab, made, sign_in):
    held = made.processed()
    qa = sign_in("qa")
    form = {"action": "open_lookback", "form_id": "open_lookback", "seed.kind": "equipment", "seed.value": "CEN-1",
            "reason": "Centrifuge failed its calibration"}  # fmt: skip
    opened = qa.submit("/investigations", form, follow_redirects=True)
    assert "Lookback 1 opened: 1 batch(es) named, 1 held." in opened.text
    assert "held by a lookback deviation" in opened.text
    assert "not acknowledged" in opened.text
    missing = qa.submit("/investigations", form | {"seed.value": "CEN-9"})
    assert missing.status_code == 422
    assert "no equipment with code" in error_beside(missing.text, "open_lookback", "seed.value").lower()
    close = {"action": "close_lookback", "form_id": "close_lookback:1", "lookback_id": "1",
             "conclusion": "Recalibrated; batches reviewed one by one.", "signature.meaning": "reviewed",
             "signature.password": PASSWORD}  # fmt: skip
    closed = qa.submit("/investigations", close, follow_redirects=True)
    assert "Lookback 1 closed and signed" in closed.text
    assert lab.ok(lab.get("qa", f"/batches/{held}"), 200)["held"] is True


def test_r_adv_3_qa_sees_due_days_and_closes_a_reportable_reaction_with_its_report_date(lab, made, sign_in):
    din = made.administered()
    lab.ok(lab.post("clinic", f"/batches/{din}/adverse-reactions", reaction(**INFECTION)))
    qa = sign_in("qa")
    page = qa.get("/investigations").text
    assert "reportable" in page
    assert "15 days left" in page
    close = {
        "action": "close_reaction",
        "form_id": "close_reaction:1",
        "reaction_id": "1",
        "conclusion": "Reported.",
        "related_to_product": "unknown",
        "signature.meaning": "reviewed",
        "signature.password": PASSWORD,
    }
    refused = qa.submit("/investigations", close)
    assert refused.status_code == 422
    assert "is required" in error_beside(refused.text, "close_reaction:1", "reported_to_authority_on").lower()
    done = qa.submit("/investigations", close | {"reported_to_authority_on": datetime.now().date().isoformat()},
                     follow_redirects=True)  # fmt: skip
    assert "Adverse reaction 1 closed and signed" in done.text


def test_r_lbk_3_the_clinic_sees_a_banner_and_acknowledges_from_it(lab, made, sign_in):
    din = made.processed()
    lab.ok(
        lab.post(
            "qa", "/lookbacks", {"reason": "Lot recalled by supplier", "seed": {"kind": "reagent_lot", "value": "1"}}
        )
    )
    clinic = sign_in("clinic")
    board = clinic.get("/clinic").text
    assert 'data-role="lookback-banner"' in board
    assert "Lot recalled by supplier" in board
    assert din in board or din[:7] in board
    page = clinic.get(f"/batches/{din}")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    done = clinic.client.post("/lookbacks/1/acknowledge", data={"csrf_token": token, "next": f"/batches/{din}"})
    assert done.status_code == 303
    assert done.headers["Location"] == f"/batches/{din}"
    after = clinic.get(f"/batches/{din}").text
    assert "Lookback 1 acknowledged" in after
    assert 'data-role="lookback-banner"' not in after
    assert 'data-role="lookback-banner"' not in sign_in("other").get("/clinic").text
