"""Corrections through the HTTP API (R-COR-1): a new event naming the corrected one, with a reason;
the original stays readable and is marked; corrected QC values are evaluated and verified again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.api.test_identity import assert_refused
from tests.api.test_qc import complete_qc, deviations, processed_with, stream, view
from tests.helpers import iso, now

REASON = "Transcription error: value read off the wrong display."


def correct(lab, din: str, event_seq: int, data: dict[str, Any], *, by: str = "tech", reason: str = REASON):
    return lab.post(by, f"/batches/{din}/corrections", {"event_seq": event_seq, "reason": reason, "data": data})


def seq_of(lab, din: str, type: str, **data: Any) -> int:
    return next(
        e["seq"] for e in stream(lab, din, type) if all(e["data"].get(key) == value for key, value in data.items())
    )


def qc_result(lab, din: str, test: str) -> dict:
    return next(q for q in view(lab, din)["qc"] if q["test"] == test)


# --- steps --------------------------------------------------------------------------------------------


def test_r_cor_1_the_recorder_corrects_a_step_value_and_the_original_stays(lab):
    din = lab.processed()
    seq = seq_of(lab, din, "digestion")
    original = stream(lab, din, "digestion")[0]
    correction = lab.ok(correct(lab, din, seq, {"temperature_c": 36.5}))  # no scanned_din: a desk review
    assert (correction["type"], correction["actor"]["username"]) == ("correction", "tech")
    assert correction["data"] == {
        "corrects_seq": seq,
        "corrected_type": "digestion",
        "reason": REASON,
        "changes": {"temperature_c": {"old": 37, "new": 36.5}},
    }
    after = stream(lab, din, "digestion")[0]
    assert after["corrected_by"] == [correction["seq"]]
    assert {k: v for k, v in after.items() if k != "corrected_by"} == {
        k: v for k, v in original.items() if k != "corrected_by"
    }  # same data, hash and canonical text
    again = lab.ok(correct(lab, din, seq, {"temperature_c": 36.8, "duration_min": 50}))
    assert again["data"]["changes"] == {
        "temperature_c": {"old": 36.5, "new": 36.8},  # old is the value standing after the first correction
        "duration_min": {"old": 45, "new": 50},
    }
    assert stream(lab, din, "digestion")[0]["corrected_by"] == [correction["seq"], again["seq"]]
    assert all(e["corrected_by"] == [] for e in stream(lab, din) if e["seq"] != seq)
    assert lab.ok(lab.get("qa", "/audit/verify", din=din), 200)["ok"] is True


def test_r_cor_1_only_the_recorder_or_qa_corrects(lab):
    din = lab.processed()
    seq = seq_of(lab, din, "digestion")
    for who in ("tech2", "clinic"):
        problem = assert_refused(
            lab, lambda w=who: correct(lab, din, seq, {"temperature_c": 36}, by=w), 403, "forbidden"
        )
        assert "QA" in problem["detail"]
    assert_refused(lab, lambda: correct(lab, din, seq, {"temperature_c": 36}, by="admin"), 403, "forbidden")
    assert_refused(lab, lambda: correct(lab, din, seq, {"temperature_c": 36}, by="other"), 404, "not_found")
    by_qa = lab.ok(correct(lab, din, seq, {"temperature_c": 36}, by="qa"))
    assert (by_qa["actor"]["username"], by_qa["data"]["changes"]["temperature_c"]["new"]) == ("qa", 36)


@pytest.mark.parametrize("who", ["clinic", "qa"])
@pytest.mark.parametrize("field", [{"patient_mrn": "MRN-9"}, {"patient_birth_date": "1980-05-18"}])
def test_r_cor_1_patient_identifiers_cannot_be_corrected(lab, who, field):
    din = lab.at_lab()
    seq = seq_of(lab, din, "harvest")
    problem = assert_refused(lab, lambda: correct(lab, din, seq, field, by=who), 422, "validation_error")
    assert "deviation" in problem["errors"]["data"][0]


@pytest.mark.parametrize(
    ("event", "data", "reason", "field"),
    [
        ("digestion", {"temperature_c": 50}, REASON, "data.temperature_c"),  # out of the plausible range
        ("digestion", {"speed_rpm": 5}, REASON, "data.speed_rpm"),
        ("digestion", {"temperature_c": 37}, REASON, "data"),  # changes nothing
        ("digestion", {"temperature_c": 36}, "   ", "reason"),
        ("digestion", {"temperature_c": 36}, "", "reason"),
        ("handoff", {"seal_id": "SEAL-9"}, REASON, "event_seq"),  # custody is not a step value
        ("registered", {"tissue_source": "bone_marrow"}, REASON, "event_seq"),
    ],
)
def test_r_cor_1_a_correction_is_validated_like_the_original(lab, event, data, reason, field):
    din = lab.processed()
    seq = seq_of(lab, din, event)
    by = "clinic" if event in ("handoff", "registered") else "tech"
    problem = assert_refused(lab, lambda: correct(lab, din, seq, data, by=by, reason=reason), 422, "validation_error")
    assert field in problem["errors"]


def test_r_cor_1_an_unknown_event_is_not_found(lab):
    din = lab.processed()
    assert_refused(lab, lambda: correct(lab, din, 999, {"temperature_c": 36}), 404, "not_found")


def test_r_cor_1_correcting_the_harvest_end_moves_the_expiry(lab):
    din = lab.at_lab()
    seq = seq_of(lab, din, "harvest")
    ended = now() - timedelta(minutes=30)
    lab.ok(correct(lab, din, seq, {"ended_at": iso(ended)}, by="clinic"))
    expires = datetime.fromisoformat(view(lab, din)["expires_at"])
    assert abs(expires - (ended + timedelta(hours=24))) < timedelta(seconds=1)


# --- QC values ----------------------------------------------------------------------------------------


def test_r_cor_1_a_corrected_qc_value_is_reevaluated_and_verified_again(lab):
    din = lab.awaiting_release()
    seq = seq_of(lab, din, "qc_recorded", test="viability_pct")
    correction = lab.ok(correct(lab, din, seq, {"value": 85}))
    assert correction["data"]["changes"] == {"value": {"old": 88, "new": 85}}
    result = qc_result(lab, din, "viability_pct")
    assert (result["value"], result["original_value"], result["corrected"]) == (85, 88, True)
    assert (result["within_spec"], result["verified"], result["verified_by"]) == (True, False, None)
    assert view(lab, din)["status"] == "processed"  # back from awaiting_release until verified again
    assert stream(lab, din, "qc_recorded")[0]["data"]["value"] == 88  # the original stays readable
    assert_refused(lab, lambda: lab.verify(din, result["id"], by="tech"), 403, "forbidden")  # tech now entered 85
    lab.ok(lab.verify(din, result["id"], by="tech2"), 200)
    assert view(lab, din)["status"] == "awaiting_release"
    verification = stream(lab, din, "qc_verified")[-1]
    assert verification["signature"]["record_hash"] == correction["hash"]  # it signs the corrected record (R-SIG-3)


def test_r_cor_1_correcting_into_out_of_spec_opens_a_deviation(lab):
    din = lab.awaiting_release()
    seq = seq_of(lab, din, "qc_recorded", test="viability_pct")
    correction = lab.ok(correct(lab, din, seq, {"value": 60}, by="qa"))
    assert correction["data"]["changes"] == {
        "value": {"old": 88, "new": 60},
        "within_spec": {"old": True, "new": False},
    }
    [deviation] = deviations(lab, din)
    assert (deviation["kind"], deviation["status"]) == ("qc_out_of_spec", "open")
    result = qc_result(lab, din, "viability_pct")
    assert (result["within_spec"], result["verified"]) == (False, False)
    assert stream(lab, din, "deviation_opened")[0]["data"]["qc_result_id"] == result["id"]
    batch = view(lab, din)
    assert (batch["status"], batch["held"]) == ("processed", True)


@pytest.mark.parametrize(("value", "field"), [(-3, "value"), ("85", "value"), (88, "data.value")])
def test_r_cor_1_a_qc_correction_is_validated(lab, value, field):
    din = lab.awaiting_release()
    seq = seq_of(lab, din, "qc_recorded", test="viability_pct")
    problem = assert_refused(lab, lambda: correct(lab, din, seq, {"value": value}), 422, "validation_error")
    assert field in problem["errors"]
    problem = assert_refused(lab, lambda: correct(lab, din, seq, {"value": 85, "unit": "%"}), 422, "validation_error")
    assert "data" in problem["errors"]


@pytest.mark.parametrize(
    ("step", "by", "change", "within", "limit"),
    [
        ("harvest", "clinic", {"weight_kg": 60}, False, "300 EU"),  # 40 EU/mL × 8 mL = 320 EU > 5 × 60
        ("harvest", "clinic", {"weight_kg": 64}, True, "320 EU"),
        ("concentration", "tech", {"final_volume_ml": 10.5}, False, "400 EU"),  # 420 EU > 400 EU
    ],
)
def test_r_cor_1_correcting_weight_or_volume_reevaluates_endotoxin(lab, step, by, change, within, limit):
    din = processed_with(lab)
    complete_qc(lab, din, results={"endotoxin_eu_per_ml": 40})
    assert view(lab, din)["status"] == "awaiting_release"
    lab.ok(correct(lab, din, seq_of(lab, din, step), change, by=by))
    result = qc_result(lab, din, "endotoxin_eu_per_ml")
    assert result["within_spec"] is within
    assert limit in result["spec"]
    kinds = [d["kind"] for d in deviations(lab, din)]
    assert kinds == ([] if within else ["qc_out_of_spec"])
    # the limit the verifier saw has changed: the result is verified again, whatever the verdict
    assert result["verified"] is False
    assert view(lab, din)["status"] == "processed"
    lab.ok(lab.verify(din, result["id"]), 200)
    assert qc_result(lab, din, "endotoxin_eu_per_ml")["verified"] is True


def test_r_cor_1_correction_after_release_opens_a_deviation_and_holds_the_batch(lab):
    din = lab.released("adipose")
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    viability = next(e for e in events if e["type"] == "qc_recorded" and e["data"]["test"] == "viability_pct")
    lab.ok(
        lab.post(
            "tech",
            f"/batches/{din}/corrections",
            {"event_seq": viability["seq"], "reason": "wrong cell count", "data": {"value": 86}},
        )
    )
    batch = lab.ok(lab.get("qa", f"/batches/{din}"), 200)
    assert batch["held"] is True
    assert any(d["kind"] == "manual" and "after release" in d["description"] for d in batch["deviations"])
    refused = lab.handoff(din, by="tech", to="clinic", seal="SEAL-2")
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "batch_held"
