"""Keyset pages on every list that grows (R-SCL-4): ``?limit=`` and ``?after=``, answers ``{items, next}``."""

from __future__ import annotations

from tests.api.test_contract import assert_problem


def test_r_scl_4_lists_page_by_keyset_newest_first_with_an_opaque_cursor(lab):
    dins = [lab.batch(mrn=f"MRN-{n}") for n in range(3)]
    first = lab.ok(lab.get("tech", "/batches", limit=2), 200)
    assert [b["din"] for b in first["items"]] == [dins[2], dins[1]]
    assert first["next"]
    second = lab.ok(lab.get("tech", "/batches", limit=2, after=first["next"]), 200)
    assert [b["din"] for b in second["items"]] == [dins[0]]
    assert second["next"] is None
    patients = lab.ok(lab.get("clinic", "/patients", limit=1), 200)
    assert len(patients["items"]) == 1
    rest = lab.ok(lab.get("clinic", "/patients", limit=5, after=patients["next"]), 200)
    assert [p["mrn"] for p in rest["items"]] == ["MRN-1", "MRN-0"]


def test_r_scl_4_qc_results_page_like_every_other_list(lab):
    din = lab.processed()
    entered = [lab.ok(lab.qc(din, test, value))["id"] for test, value in (("viability_pct", 88), ("cd34_pct", 3.1))]
    first = lab.ok(lab.get("qa", "/qc-results", limit=1), 200)
    assert [r["id"] for r in first["items"]] == [entered[1]]
    assert isinstance(first["next"], str)  # the same opaque cursor as the other lists, not a row id
    second = lab.ok(lab.get("qa", "/qc-results", limit=1, after=first["next"]), 200)
    assert ([r["id"] for r in second["items"]], second["next"]) == ([entered[0]], None)
    problem = assert_problem(lab.get("qa", "/qc-results", after=str(entered[1])), 422, "validation_error")
    assert set(problem["errors"]) == {"after"}


def test_r_scl_4_limit_bounds_and_a_forged_cursor_are_422(lab):
    lab.batch()
    assert_problem(lab.get("tech", "/batches", limit=201), 422, "validation_error")
    assert_problem(lab.get("tech", "/batches", limit=0), 422, "validation_error")
    problem = assert_problem(lab.get("tech", "/batches", after="not-a-cursor"), 422, "validation_error")
    assert set(problem["errors"]) == {"after"}
    assert_problem(lab.get("qa", "/deviations", after="eyJhZnRlciI6IC0xfQ"), 422, "validation_error")
    assert len(lab.ok(lab.get("tech", "/batches"), 200)["items"]) == 1  # default limit 50


def test_r_scl_4_batches_filter_by_patient_and_by_who_they_wait_for(lab):
    handed = lab.batch(mrn="MRN-77")
    lab.ok(lab.harvest(handed, patient_mrn="MRN-77"))
    lab.ok(lab.handoff(handed))
    other = lab.batch(mrn="OTHER-1")
    by_name = lab.ok(lab.get("tech", "/batches", patient="doe"), 200)["items"]
    assert {b["din"] for b in by_name} == {handed, other}  # part of the family name, any case
    assert [b["din"] for b in lab.ok(lab.get("tech", "/batches", patient="MRN-7"), 200)["items"]] == [handed]
    by_birth = lab.ok(lab.get("tech", "/batches", patient="1980-05-17"), 200)["items"]
    assert len(by_birth) == 2
    assert [b["din"] for b in lab.ok(lab.get("tech", "/batches", waiting_for_me="true"), 200)["items"]] == [handed]
    assert lab.ok(lab.get("tech2", "/batches", waiting_for_me="true"), 200)["items"] == []
    found = lab.ok(lab.get("clinic", "/patients", q="ther-"), 200)["items"]
    assert [p["mrn"] for p in found] == ["OTHER-1"]
