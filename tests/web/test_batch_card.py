"""The batch card: scanning, next actions as forms, refusals beside their fields, signatures (requirements §7)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from labtrack.domain.din import Din
from labtrack.domain.qc import ALL_TESTS
from tests.helpers import LAB_STEPS, now
from tests.web.support import error_beside


def _options(page: str, form_id: str, name: str) -> dict[str, str | None]:
    """A picker's options: value -> None when it may be chosen, or the reason it is disabled."""
    ident = f"{form_id}-{name}".replace(":", "-").replace(".", "-")
    select = re.search(rf'<select id="{re.escape(ident)}".*?</select>', page, re.S)
    assert select, f"no {name} picker in {form_id}"
    options = re.findall(r'<option value="([^"]+)"([^>]*)>', select.group(0))
    return {v: (re.search(r'data-reason="([^"]*)"', a).group(1) if "disabled" in a else None) for v, a in options}


def test_r_din_3_scan_box_opens_the_batch_for_every_din_form(lab, sign_in):
    din = lab.batch()
    code = Din(din)
    tech = sign_in("tech")
    for scanned in (din, code.display, din + code.check, code.barcode_data, din.lower()):
        response = tech.get("/bench", query_string={"din": scanned})
        assert response.status_code == 302, scanned
        assert response.headers["Location"] == f"/batches/{din}"


def test_r_din_3_wrong_check_character_is_refused_beside_the_scan_box(lab, sign_in):
    din = lab.batch()
    wrong = "A" if Din(din).check != "A" else "B"
    response = sign_in("tech").get("/bench", query_string={"din": din + wrong})
    assert response.status_code == 422
    assert "Check character" in html.unescape(error_beside(response.text, "scan", "din"))
    assert "autofocus" in response.text


def test_bench_scan_of_an_unknown_batch_says_so_beside_the_scan_box(lab, sign_in):
    response = sign_in("tech").get("/bench", query_string={"din": "A999926999999"})
    assert response.status_code == 404
    assert error_beside(response.text, "scan", "din") == "No such batch."


def test_r_mat_1_r_mat_2_pickers_offer_usable_lots_and_equipment_and_show_the_others_disabled(lab, sign_in):
    din = lab.at_lab()
    tech = sign_in("tech")
    page = html.unescape(tech.get(f"/batches/{din}").text)
    lots = _options(page, "step:digestion", "reagent_lots-collagenase")
    assert [v for v, why in lots.items() if why is None] == [str(lab.lot("collagenase"))]
    yesterday = (now().date() - timedelta(days=1)).isoformat()
    assert sorted(why for why in lots.values() if why) == [
        "Reagent lot CG-Q is quarantined, not released",
        f"Reagent lot CG-X expired on {yesterday}",
    ]
    assert _options(page, "step:digestion", "equipment-incubator") == {"INC-1": None}
    lab.ok(lab.step(din, "digestion"))
    page = html.unescape(tech.get(f"/batches/{din}").text)
    centrifuges = _options(page, "step:isolation", "equipment-centrifuge")
    assert centrifuges["CEN-1"] is None
    assert centrifuges["CEN-OUT"] == "Equipment CEN-OUT is out of service"
    assert centrifuges["CEN-DUE"].startswith("Equipment CEN-DUE calibration was due on ")


def test_a_lab_step_is_recorded_from_its_form(lab, sign_in):
    din = lab.at_lab()
    form = {
        "action": "step",
        "step": "digestion",
        "scanned_din": Din(din).display,
        "data.duration_min": "45",
        "data.temperature_c": "37",
        "reagent_lots": str(lab.lot("collagenase")),
        "equipment": "INC-1",
    }
    response = sign_in("tech").submit(f"/batches/{din}", form, follow_redirects=True)
    assert "Digestion recorded" in response.text
    event = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)[-1]
    assert event["type"] == "digestion"
    assert event["data"]["values"] == {"duration_min": 45, "temperature_c": 37}


def test_step_data_out_of_range_is_refused_with_the_rule_message_beside_the_field(lab, sign_in):
    din = lab.at_lab()
    form = {
        "action": "step",
        "form_id": "step:digestion",
        "step": "digestion",
        "scanned_din": din,
        "data.duration_min": "45",
        "data.temperature_c": "50",
        "reagent_lots": str(lab.lot("collagenase")),
        "equipment": "INC-1",
    }
    response = sign_in("tech").submit(f"/batches/{din}", form)
    assert response.status_code == 422
    assert html.unescape(error_beside(response.text, "step:digestion", "data.temperature_c")) == "Must be at most 42 °C"
    assert 'value="50"' in response.text  # what was typed is shown again
    assert lab.sql("SELECT status FROM batches")[0][0] == "received"


def test_r_mat_1_unusable_lot_is_refused_beside_the_lot_picker(lab, sign_in):
    din = lab.at_lab()
    form = {"action": "step", "form_id": "step:digestion", "step": "digestion", "scanned_din": din}
    form |= {"data.duration_min": "45", "data.temperature_c": "37", "equipment": "INC-1"}
    response = sign_in("tech").submit(f"/batches/{din}", form | {"reagent_lots": str(lab.lot("quarantined"))})
    assert response.status_code == 422
    assert "quarantined" in error_beside(response.text, "step:digestion", "reagent_lots")


def test_r_coi_1_wrong_container_scan_is_refused_beside_the_field_and_recorded(lab, sign_in):
    din = lab.at_lab()
    other = lab.batch(mrn="MRN-2")
    form = {"action": "step", "form_id": "step:digestion", "step": "digestion", "scanned_din": other}
    form |= {"data.duration_min": "45", "data.temperature_c": "37", "reagent_lots": "1", "equipment": "INC-1"}
    response = sign_in("tech").submit(f"/batches/{din}", form)
    assert response.status_code == 422
    assert f"is not batch {din}" in error_beside(response.text, "step:digestion", "scanned_din")
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert events[-1]["type"] == "identity_mismatch"
    assert events[-1]["data"]["scanned"] == other


def test_r_coi_1_every_in_hand_form_asks_for_the_scanned_din(lab, sign_in):
    din = lab.processed()
    page = sign_in("tech").get(f"/batches/{din}").text
    for form_id in ("handoff", "qc_panel"):
        assert f'id="{form_id}-scanned_din"' in page, form_id
    response = sign_in("tech").submit(
        f"/batches/{din}", {"action": "qc_panel", "form_id": "qc_panel", "value.viability_pct": "88"}
    )
    assert response.status_code == 422
    assert error_beside(response.text, "qc_panel", "scanned_din") == "This is required."


def test_qc_panel_and_release_blockers_follow_the_worksheet_order_on_every_database(lab, sign_in):
    # A specification's body is stored as JSON; PostgreSQL's jsonb keeps its keys ordered by length, so a page
    # that followed the stored order showed CD34 first there and cost the keyboard extra Tabs.
    din = lab.processed()
    page = sign_in("tech").get(f"/batches/{din}").text
    fields = re.findall(r'id="qc_panel-value-([a-z0-9_]+)"', page)
    assert fields == list(ALL_TESTS)
    blockers = re.findall(r'data-code="qc_missing:([a-z0-9_]+)"', sign_in("qa").get(f"/batches/{din}").text)
    assert blockers == list(ALL_TESTS)


def test_r_sig_1_wrong_password_in_the_signature_dialog_is_refused_and_recorded(lab, sign_in):
    din = lab.processed()
    entered = lab.ok(lab.qc(din, "viability_pct", 88))
    form_id = "verify"
    form = {"action": "verify", "form_id": form_id, "qc_id": str(entered["id"])}
    form |= {"signature.password": "wrong-password", "signature.meaning": "verified"}
    response = sign_in("tech2").submit(f"/batches/{din}", form)
    assert response.status_code == 401
    assert "password does not match" in error_beside(response.text, form_id, "signature.password")
    assert re.search(r"<dialog id=\"verify-dialog\"[^>]*data-open", response.text)  # the dialog comes back open
    assert lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)[-1]["type"] == "signature_failed"
    assert 'value="wrong-password"' not in response.text  # a password is never sent back


def test_r_qc_3_verification_dialog_shows_the_manifestation_and_is_not_offered_to_the_enterer(lab, sign_in):
    din = lab.processed()
    entered = lab.ok(lab.qc(din, "viability_pct", 88))
    assert "Verify…" not in sign_in("tech").get(f"/batches/{din}").text
    page = sign_in("tech2").get(f"/batches/{din}").text
    dialog = re.search(r'<dialog id="verify-dialog".*?</dialog>', page, re.S).group(0)
    assert 'data-role="printed-name">Tara Second<' in dialog
    assert 'data-role="username">tech2<' in dialog
    assert "<strong>verified</strong>" in dialog
    assert "Date and time (UTC)" in dialog
    form = {"action": "verify", "qc_id": str(entered["id"]), "signature.meaning": "verified"}
    response = sign_in("tech2").submit(f"/batches/{din}", form | {"signature.password": "correct-horse-battery"})
    assert response.status_code == 303
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["qc"][0]["verified_by"]["username"] == "tech2"


def test_r_rel_1_refused_release_lists_every_blocker(lab, sign_in):
    din = lab.processed()
    form = {"action": "release", "signature.password": "correct-horse-battery", "signature.meaning": "approved"}
    response = sign_in("qa").submit(f"/batches/{din}", form)
    assert response.status_code == 409
    assert "not_ready:processed" in response.text
    assert "qc_missing:viability_pct" in response.text
    assert lab.sql("SELECT status FROM batches")[0][0] == "processed"


def test_r_rel_1_release_through_the_signature_dialog(lab, sign_in):
    din = lab.awaiting_release()
    qa = sign_in("qa")
    page = qa.get(f"/batches/{din}").text
    assert "Every release check passes." in page
    form = {"action": "release", "signature.password": "correct-horse-battery", "signature.meaning": "approved"}
    response = qa.submit(f"/batches/{din}", form, follow_redirects=True)
    assert "Released (conditional release: sterility pending)." in response.text
    released = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)[-1]
    assert released["signature"]["meaning"] == "approved"
    assert released["signature"]["printed_name"] == "Quinn Assurance"


def test_r_dev_2_deviation_opened_on_the_card_and_closed_by_qa_with_a_signature(lab, sign_in):
    din = lab.processed()
    tech = sign_in("tech")
    tech.submit(f"/batches/{din}", {"action": "deviation", "description": "Tube cap found loose"})
    assert lab.sql("SELECT held FROM batches")[0][0] in (True, 1)
    (deviation_id,) = lab.sql("SELECT id FROM deviations")[0]
    qa = sign_in("qa")
    form = {"action": "dispose", "deviation_id": str(deviation_id), "decision": "accept"}
    form |= {"justification": "Sterile barrier intact", "signature.password": "correct-horse-battery"}
    form |= {"signature.meaning": "approved"}
    response = qa.submit(f"/batches/{din}", form, follow_redirects=True)
    assert f"Deviation {deviation_id} closed: accept." in response.text
    assert lab.sql("SELECT status FROM deviations")[0][0] == "closed"
    assert lab.sql("SELECT held FROM batches")[0][0] in (False, 0)


def test_r_rel_3_rejection_needs_a_reason_and_a_signature(lab, sign_in):
    din = lab.processed()
    qa = sign_in("qa")
    signed = {"action": "reject", "signature.password": "correct-horse-battery", "signature.meaning": "rejected"}
    refused = qa.submit(f"/batches/{din}", signed | {"form_id": "reject"})
    assert refused.status_code == 422
    assert error_beside(refused.text, "reject", "reason")
    assert qa.submit(f"/batches/{din}", signed | {"reason": "Wrong tube type"}).status_code == 303
    assert lab.sql("SELECT status FROM batches")[0][0] == "rejected"


def test_r_acc_1_another_clinics_batch_answers_a_404_page(lab, sign_in):
    din = lab.batch()
    other = sign_in("other")
    for path in (f"/batches/{din}", f"/batches/{din}/record", f"/batches/{din}/record.pdf"):
        response = other.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "text/html"
        assert "No such batch." in response.text
        assert "Doe" not in response.text


def test_r_acc_2_admin_sees_no_batch_action_and_is_refused_one(lab, sign_in):
    din = lab.at_lab()
    admin = sign_in("admin")
    page = admin.get(f"/batches/{din}").text
    assert 'name="action" value="step"' not in page
    assert 'name="action" value="handoff"' not in page
    assert "<strong>digestion</strong> — This is done by a technician." in page
    form = {"action": "step", "step": "digestion", "scanned_din": din} | {
        f"data.{k}": str(v) for k, v in LAB_STEPS["digestion"]["data"].items()
    }
    response = admin.submit(f"/batches/{din}", form)
    assert response.status_code == 403
    assert "The administrator role may not record lab steps." in response.text


@pytest.mark.parametrize(
    "form",
    [
        {"action": "nonsense"},
        {"action": "verify", "qc_id": "not-a-number"},
        {"action": "label", "kind": "poster"},
    ],
)
def test_malformed_forms_get_a_page_never_a_stack_trace(lab, sign_in, form):
    din = lab.processed()
    response = sign_in("qa").submit(f"/batches/{din}", form)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Traceback" not in response.text


def test_documents_from_the_card(lab, sign_in):
    din = lab.released()
    tech = sign_in("tech")
    label = tech.submit(f"/batches/{din}", {"action": "label", "kind": "product"})
    assert label.mimetype == "application/pdf"
    assert label.data.startswith(b"%PDF")
    assert lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)[-1]["type"] == "label_printed"
    qa = sign_in("qa")
    assert qa.get(f"/batches/{din}/record.pdf").data.startswith(b"%PDF")
    lab.ok(lab.post("qa", "/audit/checkpoints"))  # an export signs nothing: the batch is in a checkpoint first
    lines = qa.get(f"/batches/{din}/audit-export").text.splitlines()
    assert '"record":"header"' in lines[0]
    assert '"record":"inclusion_proof"' in lines[-1]
    assert tech.get(f"/batches/{din}/record").status_code == 200  # lab staff read the record of any batch
