"""Manual deviations holding a batch (R-DEV-1) and clinic readiness (R-RDY-1), through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

import pytest

from labtrack.domain.din import check_character
from tests.api.test_identity import assert_refused, last_outbox
from tests.helpers import iso, now


def open_deviation(lab, din: str, *, by: str = "tech", description: str = "Bag label smudged at receipt"):
    return lab.post(by, f"/batches/{din}/deviations", {"kind": "manual", "description": description})


def blocker_codes(lab, din: str, by: str = "clinic") -> list[str]:
    readiness = lab.ok(lab.get(by, f"/batches/{din}/readiness"), 200)
    assert readiness["ready"] is False
    return [b["code"] for b in readiness["blockers"]]


# --- R-DEV-1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["tech", "qa", "clinic"])
def test_r_dev_1_manual_deviation_holds_the_batch(lab, by):
    din = lab.at_lab()
    deviation = lab.ok(open_deviation(lab, din, by=by, description="  Cold pack missing  "))
    assert (deviation["kind"], deviation["status"], deviation["din"]) == ("manual", "open", din)
    assert (deviation["description"], deviation["opened_by"]["username"]) == ("Cold pack missing", by)
    assert deviation["closed_at"] is None
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert batch["held"] is True
    assert [d["id"] for d in batch["deviations"]] == [deviation["id"]]
    event = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)[-1]
    assert (event["type"], event["data"]["kind"], event["actor"]["username"]) == ("deviation_opened", "manual", by)
    topic, payload = last_outbox(lab)
    assert (topic, payload["deviation_id"], payload["din"]) == ("deviation.opened", deviation["id"], din)
    assert len(lab.ok(lab.get("tech", "/batches", held="true"), 200)["items"]) == 1


def test_r_dev_1_only_permitted_users_open_deviations(lab):
    din = lab.at_lab()
    assert_refused(lab, lambda: open_deviation(lab, din, by="other"), 404, "not_found")  # R-ACC-1
    assert_refused(lab, lambda: open_deviation(lab, din, by="admin"), 403, "forbidden")  # R-ACC-2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "seal_mismatch", "description": "by hand"}, "kind"),
        ({"kind": "manual", "description": "   "}, "description"),
        ({"kind": "manual"}, "description"),
        ({"kind": "manual", "description": "x" * 4001}, "description"),
    ],
)
def test_r_dev_1_manual_deviation_needs_a_description_and_only_kind_manual(lab, body, field):
    din = lab.at_lab()
    problem = assert_refused(lab, lambda: lab.post("tech", f"/batches/{din}/deviations", body), 422, "validation_error")
    assert field in problem["errors"]
    assert lab.ok(lab.get("tech", f"/batches/{din}"), 200)["held"] is False


def test_r_dev_1_processing_goes_on_while_held(lab):
    din = lab.at_lab()
    lab.ok(open_deviation(lab, din))
    for name in ("digestion", "isolation", "concentration"):
        lab.ok(lab.step(din, name))
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert (batch["status"], batch["held"]) == ("processed", True)


def test_r_dev_1_deviation_before_harvest_holds_and_harvest_still_proceeds(lab):
    din = lab.batch()
    lab.ok(open_deviation(lab, din, by="clinic", description="Consent form unsigned at registration"))
    lab.ok(lab.harvest(din))
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert (batch["status"], batch["held"]) == ("collected", True)


def test_r_dev_1_deviations_list_filters_by_status_and_din(lab):
    first = lab.at_lab()
    second = lab.batch(mrn="MRN-2")
    a = lab.ok(open_deviation(lab, first, description="first"))
    b = lab.ok(open_deviation(lab, second, by="clinic", description="second"))
    c = lab.ok(open_deviation(lab, first, by="qa", description="third"))
    for by in ("tech", "qa"):
        everything = lab.ok(lab.get(by, "/deviations"), 200)["items"]
        assert [d["id"] for d in everything] == [c["id"], b["id"], a["id"]]  # newest first
    assert [d["id"] for d in lab.ok(lab.get("qa", "/deviations", din=first), 200)["items"]] == [c["id"], a["id"]]
    spaced = f"{second[:5]} {second[5:7]} {second[7:]} {check_character(second)}"
    assert [d["id"] for d in lab.ok(lab.get("qa", "/deviations", din=spaced), 200)["items"]] == [b["id"]]
    assert len(lab.ok(lab.get("qa", "/deviations", status="open"), 200)["items"]) == 3
    assert lab.ok(lab.get("qa", "/deviations", status="closed"), 200)["items"] == []
    assert lab.ok(lab.get("qa", "/deviations", status="closed", din=first), 200)["items"] == []


def test_r_dev_1_deviations_list_refusals(lab):
    din = lab.batch()
    assert_refused(lab, lambda: lab.get("clinic", "/deviations"), 403, "forbidden")
    assert_refused(lab, lambda: lab.get("admin", "/deviations"), 403, "forbidden")
    problem = assert_refused(lab, lambda: lab.get("qa", "/deviations", status="pending"), 422, "validation_error")
    assert "status" in problem["errors"]
    assert_refused(lab, lambda: lab.get("qa", "/deviations", din=din + "?"), 422, "invalid_din")


# --- R-RDY-1 ------------------------------------------------------------------------------------


def test_r_rdy_1_unprocessed_batch_is_not_ready_and_says_why(lab):
    din = lab.batch()
    readiness = lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)
    assert (readiness["din"], readiness["status"], readiness["ready"]) == (din, "registered", False)
    assert readiness["custodian"] is None
    assert "not_ready:registered" in [b["code"] for b in readiness["blockers"]]
    assert all(b["detail"] for b in readiness["blockers"])


def test_r_rdy_1_batch_in_processing_is_not_ready(lab):
    din = lab.at_lab()
    lab.ok(lab.step(din, "digestion"))
    assert "not_ready:processing" in blocker_codes(lab, din)


def test_r_rdy_1_open_deviations_are_blockers(lab):
    din = lab.at_lab()
    first = lab.ok(open_deviation(lab, din))
    second = lab.ok(open_deviation(lab, din, by="clinic", description="Patient reported fever"))
    readiness = lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)
    codes = [b["code"] for b in readiness["blockers"]]
    assert {"not_ready:received", f"open_deviation:{first['id']}", f"open_deviation:{second['id']}"} <= set(codes)
    assert (readiness["ready"], readiness["held"]) == (False, True)
    assert readiness["custodian"]["username"] == "tech"


def test_r_rdy_1_expired_product_is_a_blocker(lab):
    din = lab.batch()
    ended = now() - timedelta(hours=25)
    data = lab.harvest_data(started_at=iso(ended - timedelta(minutes=30)), ended_at=iso(ended))
    body = {"step": "harvest", "scanned_din": din, "data": data, "late_entry_reason": "record from the weekend"}
    lab.ok(lab.post("clinic", f"/batches/{din}/steps", body))
    assert {"not_ready:collected", "expired"} <= set(blocker_codes(lab, din))


def test_r_rdy_1_readiness_is_scoped_to_the_clinic(lab):
    din = lab.batch()
    assert_refused(lab, lambda: lab.get("other", f"/batches/{din}/readiness"), 404, "not_found")
    for by in ("clinic_b", "tech", "qa"):
        assert "not_ready:registered" in blocker_codes(lab, din, by=by)
