"""DINs (R-DIN-1..3) and the chain of identity (R-COI-1..2) through the HTTP API.

``assert_refused`` is the shared check for every refusal in the API tests: the
status, a problem+json body with the stable code, and nothing written anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from labtrack.domain.din import check_character

PROBLEM_JSON = "application/problem+json"


def footprint(lab) -> dict[str, list[tuple]]:
    """Everything a batch write could touch, to prove a refused request wrote nothing."""
    queries = {
        "events": "SELECT b.din, e.seq, e.type, e.hash FROM batch_events e JOIN batches b ON b.id = e.batch_id",
        "batches": "SELECT din, seq, head_hash, status, custodian_id, transfer_to_id, held, steps_done,"
        " last_physical_at, expires_at FROM batches",
        "deviations": "SELECT id, batch_id, kind, status FROM deviations",
        "outbox": "SELECT id, topic FROM outbox",
        "din_counters": "SELECT facility, year, last_sequence FROM din_counters",
        "patients": "SELECT id FROM patients",
    }
    return {name: sorted(tuple(map(str, row)) for row in lab.sql(query)) for name, query in queries.items()}


def stream_seq(lab, din: str) -> int:
    return lab.sql("SELECT seq FROM batches WHERE din = :din", din=din)[0][0]


def last_outbox(lab) -> tuple[str, dict[str, Any]]:
    topic, payload = lab.sql("SELECT topic, payload FROM outbox ORDER BY id DESC LIMIT 1")[0]
    return topic, payload if isinstance(payload, dict) else json.loads(payload)


def assert_problem(response, status: int, code: str) -> dict[str, Any]:
    problem = response.get_json()
    assert response.status_code == status, problem
    assert response.mimetype == PROBLEM_JSON
    assert problem["code"] == code
    assert problem["status"] == status
    return problem


def assert_refused(lab, request: Callable[[], Any], status: int, code: str) -> dict[str, Any]:
    """Send ``request``; assert the refusal and that nothing at all was written (requirements §3)."""
    before = footprint(lab)
    problem = assert_problem(request(), status, code)
    assert footprint(lab) == before
    return problem


def assert_mismatch_recorded(lab, din: str, request: Callable[[], Any], *, actor: str) -> dict[str, Any]:
    """R-COI-1: refused with 422, and the only trace is one identity_mismatch event plus its outbox row."""
    before = footprint(lab)
    seq = stream_seq(lab, din)
    assert_problem(request(), 422, "identity_mismatch")
    assert stream_seq(lab, din) == seq + 1
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    recorded = events[-1]
    assert (recorded["seq"], recorded["type"]) == (seq + 1, "identity_mismatch")
    assert recorded["actor"]["username"] == actor
    topic, payload = last_outbox(lab)
    assert (topic, payload["din"], payload["actor"], payload["seq"]) == ("identity.mismatch", din, actor, seq + 1)
    after = footprint(lab)
    assert len(after["outbox"]) == len(before["outbox"]) + 1
    # Nothing of the refused write itself: projections, deviations and other streams are as they were.
    for name in ("deviations", "din_counters", "patients"):
        assert after[name] == before[name]
    assert [row for row in after["events"] if row[0] != din] == [row for row in before["events"] if row[0] != din]
    # only the stream head (seq, head_hash) moves; status, custody, transfer and flags stay
    assert [(row[0], *row[3:]) for row in after["batches"]] == [(row[0], *row[3:]) for row in before["batches"]]
    return recorded


# --- R-DIN-1 / R-DIN-2 ------------------------------------------------------------------------


def test_r_din_1_dins_are_facility_year_sequence_unique_and_increasing(lab):
    year = datetime.now(UTC).year % 100
    dins = [
        lab.batch("adipose", mrn="MRN-1"),
        lab.batch("bone_marrow", mrn="MRN-2"),
        lab.batch("adipose", mrn="MRN-3", by="tech"),
    ]
    other = lab.patient("X", by="other")  # a patient of clinic C2
    dins.append(lab.ok(lab.post("other", "/batches", {"patient_id": other["id"], "tissue_source": "adipose"}))["din"])
    for din in dins:
        assert len(din) == 13
        assert din.startswith(f"A9999{year:02d}")
        assert din[7:].isdigit()
    sequences = [int(din[7:]) for din in dins]
    assert len(set(dins)) == len(dins)
    assert sequences == list(range(sequences[0], sequences[0] + len(dins)))


def test_r_din_1_concurrent_registrations_get_distinct_consecutive_dins(lab):
    patients = [lab.patient(f"MRN-{n}")["id"] for n in range(12)]
    headers = lab.headers("clinic")

    def register(patient_id: int) -> str:
        client = lab.app.test_client()  # one client per thread, as separate web workers would be
        body = {"patient_id": patient_id, "tissue_source": "adipose"}
        return lab.ok(client.post("/api/v1/batches", json=body, headers=headers))["din"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        dins = list(pool.map(register, patients))
    assert sorted(int(din[7:]) for din in dins) == list(range(1, len(patients) + 1))


def test_r_din_1_refused_registration_uses_no_sequence_number(lab):
    first = lab.batch()
    other = lab.patient("X", by="other")  # a patient of clinic C2
    body = {"patient_id": other["id"], "tissue_source": "adipose"}  # another clinic's patient
    problem = assert_refused(lab, lambda: lab.post("clinic", "/batches", body), 422, "validation_error")
    assert "patient_id" in problem["errors"]
    assert int(lab.batch(mrn="MRN-2")[7:]) == int(first[7:]) + 1


def test_r_din_1_facility_comes_from_labtrack_fin(lab):
    lab.app.config["LABTRACK_FIN"] = "B1234"
    din = lab.batch()
    assert din.startswith(f"B1234{datetime.now(UTC).year % 100:02d}")
    assert len(din) == 13


def test_r_din_1_din_carries_no_patient_identifiers(lab):
    patient = lab.patient("987654", family_name="Zed", given_name="Quax")
    batch = lab.ok(lab.post("clinic", "/batches", {"patient_id": patient["id"], "tissue_source": "adipose"}))
    for identifier in ("987654", "ZED", "QUAX"):
        assert identifier not in batch["din"].upper()
        assert identifier not in batch["din_display"].upper()
    assert batch["patient"]["mrn"] == "987654"  # the link to the patient is the record, not the DIN


def test_r_din_2_batch_shows_check_character_and_display_form(lab):
    din = lab.batch()
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert batch["check_character"] == check_character(din)
    assert batch["din_display"] == f"{din[:5]} {din[5:7]} {din[7:]} {batch['check_character']}"
    assert check_character("G123498654321") == "H"  # the standard's own vector, through the same function


# --- R-DIN-3 ------------------------------------------------------------------------------------


def din_forms(din: str) -> dict[str, str]:
    check = check_character(din)
    return {
        "plain": din,
        "spaced": f"{din[:5]} {din[5:7]} {din[7:]}",
        "with_check": din + check,
        "display": f"{din[:5]} {din[5:7]} {din[7:]} {check}",
        "barcode": f"={din}00",
    }


def test_r_din_3_every_form_finds_the_batch_in_the_url(lab):
    din = lab.batch()
    for form in din_forms(din).values():
        assert lab.ok(lab.get("clinic", f"/batches/{form}"), 200)["din"] == din, form


def test_r_din_3_every_form_is_accepted_as_scanned_din(lab):
    din = lab.batch()
    forms = din_forms(din)
    harvest = {"step": "harvest", "scanned_din": forms["display"], "data": lab.harvest_data()}
    lab.ok(lab.post("clinic", f"/batches/{din}/steps", harvest))
    lab.ok(lab.handoff(din, scanned_din=forms["barcode"]))
    lab.ok(lab.receive(din, scanned_din=forms["with_check"]))
    lab.ok(lab.step(din, "digestion", scanned_din=forms["spaced"]))
    event = lab.ok(lab.step(din, "isolation", scanned_din=forms["plain"]))
    assert event["type"] == "isolation"
    assert lab.ok(lab.get("tech", f"/batches/{din}"), 200)["status"] == "processing"


def wrong_check(din: str) -> str:
    right = check_character(din)
    return din + ("A" if right != "A" else "B")


def test_r_din_3_wrong_check_character_in_url_is_invalid_din(lab):
    din = lab.batch()
    problem = assert_refused(lab, lambda: lab.get("clinic", f"/batches/{wrong_check(din)}"), 422, "invalid_din")
    assert "check character" in problem["detail"].lower()


@pytest.mark.parametrize("raw", ["A99992600000", "=A999926000001", "A9999-26-000001", "not-a-din"])
def test_r_din_3_malformed_din_in_url_is_invalid_din(lab, raw):
    assert_refused(lab, lambda: lab.get("tech", f"/batches/{raw}"), 422, "invalid_din")


def test_r_din_3_wrong_check_character_in_scan_is_invalid_din_and_writes_nothing(lab):
    din = lab.batch()
    body = {"step": "harvest", "scanned_din": wrong_check(din), "data": lab.harvest_data()}
    assert_refused(lab, lambda: lab.post("clinic", f"/batches/{din}/steps", body), 422, "invalid_din")
    lab.ok(lab.harvest(din))
    assert_refused(lab, lambda: lab.handoff(din, scanned_din=f"={din}"), 422, "invalid_din")
    assert stream_seq(lab, din) == 2


# --- R-COI-1 ------------------------------------------------------------------------------------


def test_r_coi_1_wrong_container_on_harvest_is_refused_and_recorded(lab):
    din = lab.batch(mrn="MRN-1")
    other = lab.batch(mrn="MRN-2")
    body = {"step": "harvest", "scanned_din": other, "data": lab.harvest_data()}
    recorded = assert_mismatch_recorded(
        lab, din, lambda: lab.post("clinic", f"/batches/{din}/steps", body), actor="clinic"
    )
    assert recorded["data"] == {"action": "harvest", "check": "container", "scanned": other, "expected_din": din}
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert (batch["status"], batch["custodian"], batch["steps_done"]) == ("registered", None, [])
    assert stream_seq(lab, other) == 1  # the scanned batch's stream is untouched
    assert last_outbox(lab)[1]["scanned"] == other


def test_r_coi_1_wrong_container_on_lab_step_is_refused_and_recorded(lab):
    din = lab.at_lab()
    other = lab.batch(mrn="MRN-2")
    recorded = assert_mismatch_recorded(
        lab, din, lambda: lab.step(din, "digestion", scanned_din=f"={other}00"), actor="tech"
    )
    assert (recorded["data"]["action"], recorded["data"]["scanned"]) == ("digestion", f"={other}00")
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert (batch["status"], batch["steps_done"]) == ("received", ["harvest"])
    lab.ok(lab.step(din, "digestion"))  # the right scan still goes through afterwards


def test_r_coi_1_wrong_container_on_handoff_is_refused_and_recorded(lab):
    din = lab.batch(mrn="MRN-1")
    other = lab.batch(mrn="MRN-2")
    lab.ok(lab.harvest(din))
    recorded = assert_mismatch_recorded(lab, din, lambda: lab.handoff(din, scanned_din=other), actor="clinic")
    assert recorded["data"]["action"] == "handoff"
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert (batch["status"], batch["pending_transfer"]) == ("collected", None)
    assert batch["custodian"]["username"] == "clinic"


def test_r_coi_1_wrong_container_on_receipt_is_refused_and_recorded(lab):
    din = lab.batch(mrn="MRN-1")
    other = lab.batch(mrn="MRN-2")
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    recorded = assert_mismatch_recorded(lab, din, lambda: lab.receive(din, scanned_din=other), actor="tech")
    assert recorded["data"]["action"] == "receipt"
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert (batch["status"], batch["custodian"]["username"]) == ("in_transit", "clinic")
    assert batch["pending_transfer"]["to"] == "tech"


def test_r_coi_1_scan_of_a_din_that_is_no_batch_is_a_mismatch(lab):
    din = lab.batch()
    unknown = din[:7] + "999999"
    body = {"step": "harvest", "scanned_din": unknown, "data": lab.harvest_data()}
    assert_mismatch_recorded(lab, din, lambda: lab.post("clinic", f"/batches/{din}/steps", body), actor="clinic")


@pytest.mark.parametrize("scanned", [None, ""])
def test_r_coi_1_missing_scan_is_refused(lab, scanned):
    din = lab.at_lab()
    body = {
        "step": "digestion",
        "data": {"duration_min": 45, "temperature_c": 37},
        "reagent_lots": [lab.lot("collagenase")],
        "equipment": ["INC-1"],
    }
    if scanned is not None:
        body["scanned_din"] = scanned
    problem = assert_refused(lab, lambda: lab.post("tech", f"/batches/{din}/steps", body), 422, "validation_error")
    assert "scanned_din" in problem["errors"]
    handoff = {"to_username": "tech2", "seal_id": "S-9"}
    problem = assert_refused(
        lab, lambda: lab.post("tech", f"/batches/{din}/custody/handoff", handoff), 422, "validation_error"
    )
    assert "scanned_din" in problem["errors"]


# --- R-COI-2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "mismatched"),
    [
        ({"patient_mrn": "MRN-2"}, ["patient_mrn"]),
        ({"patient_birth_date": "1980-05-18"}, ["patient_birth_date"]),
        ({"patient_mrn": "MRN-2", "patient_birth_date": "1981-05-17"}, ["patient_mrn", "patient_birth_date"]),
    ],
)
def test_r_coi_2_harvest_with_wrong_patient_identifiers_is_refused_and_recorded(lab, overrides, mismatched):
    din = lab.batch(mrn="MRN-1")
    lab.patient("MRN-2")  # a real patient of the same clinic: the wrong one
    recorded = assert_mismatch_recorded(lab, din, lambda: lab.harvest(din, **overrides), actor="clinic")
    assert recorded["data"]["check"] == "patient"
    assert recorded["data"]["mismatched"] == mismatched
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert (batch["status"], batch["expires_at"], batch["custodian"]) == ("registered", None, None)
    lab.ok(lab.harvest(din))  # the right patient still goes through
