"""Versioned specifications through the HTTP API (R-QC-1): the defaults, changes making new versions
under change control (R-QC-6: proposal with a reason, physical ranges, approval by another QA user with a
signature, withdrawal), and each batch judged by the version in force at its registration."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from labtrack.models import Specification
from tests.api.test_identity import assert_refused
from tests.api.test_qc import complete_qc, deviations, enter, process, processed_with, view
from tests.helpers import GOOD_RESULTS, PASSWORD, signature

DEFAULT_TESTS = {
    "viability_pct": {"unit": "%", "min": 70},
    "gram_stain": {"unit": None, "equals": "no_organisms_seen"},
    "endotoxin_eu_per_ml": {"unit": "EU/mL", "max_eu_per_kg": 5},
    "sterility_culture": {"unit": None, "release": "pending", "final": "no_growth"},
    "cd34_pct": {"unit": "%", "record_only": True},
}


def specifications(lab, by: str = "tech") -> dict[str, dict]:
    return {spec["tissue_source"]: spec for spec in lab.ok(lab.get(by, "/specifications"), 200)}


def edited(lab, tissue_source: str = "adipose", **tests: dict[str, Any]) -> dict[str, Any]:
    """The body in force for ``tissue_source`` with some tests' rules changed (merged)."""
    body = copy.deepcopy(specifications(lab)[tissue_source]["body"])
    for name, rule in tests.items():
        body["tests"][name] |= rule
    return body


def put(lab, body: Any, tissue_source: str = "adipose", by: str = "admin", reason: str = "annual review"):
    """Propose ``body`` as the next version (R-QC-6)."""
    return lab.post(by, f"/specifications/{tissue_source}/proposals", {"body": body, "reason": reason})


def approve(lab, proposal_id: int, by: str = "qa", password: str = PASSWORD):
    return lab.post(
        by, f"/specification-proposals/{proposal_id}/approve", {"signature": signature("approved", password)}
    )


def publish(lab, body: Any, tissue_source: str = "adipose") -> dict:
    """Proposed by an admin, approved by QA: the version now in force."""
    proposal = lab.ok(put(lab, body, tissue_source))
    approved = lab.ok(approve(lab, proposal["id"]), 200)
    return next(
        spec
        for spec in lab.ok(lab.get("qa", f"/specifications/{tissue_source}/versions"), 200)
        if spec["version"] == approved["version"]
    )


def versions(lab) -> list[tuple]:
    return lab.sql("SELECT tissue_source, version FROM specifications ORDER BY tissue_source, version")


# --- defaults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["tech", "qa", "clinic", "other", "admin"])
def test_r_qc_1_defaults_are_version_1_for_each_tissue_source(lab, reader):
    specs = specifications(lab, by=reader)
    assert set(specs) == {"adipose", "bone_marrow"}
    for source, tnc_minimum in (("adipose", 1.0e7), ("bone_marrow", 1.0e8)):
        spec = specs[source]
        assert spec["version"] == 1
        body = spec["body"]
        assert body["stability_hours"] == 24
        assert body["transport_temperature_c"] == {"min": 2, "max": 25}
        assert body["tests"] == DEFAULT_TESTS | {"tnc_total": {"unit": "cells", "min": tnc_minimum}}


def test_r_qc_1_reading_specifications_needs_sign_in(lab):
    response = lab.client.get("/api/v1/specifications")
    assert (response.status_code, response.get_json()["code"]) == (401, "unauthenticated")


# --- new versions ---------------------------------------------------------------------------------


def test_r_qc_6_a_proposal_takes_force_only_when_another_qa_user_approves_it(lab):
    body = edited(lab, viability_pct={"min": 90})
    proposal = lab.ok(put(lab, body, reason="tighter viability after the 2026 review"))
    assert (proposal["status"], proposal["base_version"], proposal["version"]) == ("proposed", 1, None)
    assert proposal["proposed_by"]["username"] == "admin"
    assert specifications(lab)["adipose"]["version"] == 1  # proposed is not in force
    approved = lab.ok(approve(lab, proposal["id"]), 200)
    assert (approved["status"], approved["version"]) == ("approved", 2)
    signed = approved["signature"]
    assert (signed["meaning"], signed["username"], signed["printed_name"]) == ("approved", "qa", "Quinn Assurance")
    assert signed["record_hash"] == proposal["record_hash"]  # bound to the proposal (R-SIG-3)
    specs = specifications(lab)
    assert (specs["adipose"]["version"], specs["bone_marrow"]["version"]) == (2, 1)
    assert specs["adipose"]["body"] == body
    assert publish(lab, edited(lab, viability_pct={"min": 80}))["version"] == 3
    assert versions(lab) == [("adipose", 1), ("adipose", 2), ("adipose", 3), ("bone_marrow", 1)]
    audit = lab.sql("SELECT type, actor FROM admin_events WHERE type LIKE 'specification_%' ORDER BY seq")
    assert audit == [
        ("specification_proposed", "admin"),
        ("specification_approved", "qa"),
        ("specification_proposed", "admin"),
        ("specification_approved", "qa"),
    ]
    assert lab.ok(lab.get("admin", "/audit/verify"), 200)["ok"] is True


def test_r_qc_6_the_proposer_cannot_approve_their_own_proposal(lab):
    proposal = lab.ok(put(lab, edited(lab, viability_pct={"min": 90}), by="qa"))
    problem = assert_refused(lab, lambda: approve(lab, proposal["id"], by="qa"), 403, "forbidden")
    assert "Another QA user must approve" in problem["detail"]
    assert lab.ok(approve(lab, proposal["id"], by="qa2"), 200)["version"] == 2


@pytest.mark.parametrize("who", ["admin", "tech", "clinic"])
def test_r_qc_6_only_qa_approves(lab, who):
    proposal = lab.ok(put(lab, edited(lab, viability_pct={"min": 90}), by="qa"))
    assert_refused(lab, lambda: approve(lab, proposal["id"], by=who), 403, "forbidden")
    assert versions(lab) == [("adipose", 1), ("bone_marrow", 1)]


@pytest.mark.parametrize("who", ["tech", "clinic"])
def test_r_qc_6_only_admins_and_qa_propose(lab, who):
    body = edited(lab, viability_pct={"min": 90})
    assert_refused(lab, lambda: put(lab, body, by=who), 403, "forbidden")
    assert lab.sql("SELECT count(*) FROM specification_proposals") == [(0,)]


def test_r_qc_6_a_proposal_needs_a_reason(lab):
    body = edited(lab, viability_pct={"min": 90})
    problem = assert_refused(lab, lambda: put(lab, body, reason=" "), 422, "validation_error")
    assert "reason" in problem["errors"]


def test_r_qc_6_r_sig_1_a_wrong_password_approves_nothing_and_is_recorded(lab):
    proposal = lab.ok(put(lab, edited(lab, viability_pct={"min": 90})))
    assert_refused(lab, lambda: approve(lab, proposal["id"], password="wrong-password"), 401, "signature_invalid")
    assert versions(lab) == [("adipose", 1), ("bone_marrow", 1)]
    assert lab.sql("SELECT meaning, batch_id FROM signature_failures") == [("approved", None)]
    assert lab.ok(lab.get("qa", f"/specification-proposals/{proposal['id']}"), 200)["status"] == "proposed"


def test_r_qc_6_one_open_proposal_per_tissue_source(lab):
    first = lab.ok(put(lab, edited(lab, viability_pct={"min": 90})))
    problem = assert_refused(lab, lambda: put(lab, edited(lab, viability_pct={"min": 95}), by="qa"), 409, "conflict")
    assert f"Proposal {first['id']}" in problem["detail"]
    lab.ok(put(lab, edited(lab, "bone_marrow", viability_pct={"min": 90}), "bone_marrow", by="qa"))


def test_r_qc_6_a_withdrawn_proposal_never_takes_force(lab):
    proposal = lab.ok(put(lab, edited(lab, viability_pct={"min": 90})))
    withdraw = f"/specification-proposals/{proposal['id']}/withdraw"
    assert_refused(lab, lambda: lab.post("admin", withdraw, {"reason": " "}), 422, "validation_error")
    withdrawn = lab.ok(lab.post("admin", withdraw, {"reason": "wrong limit"}), 200)
    assert (withdrawn["status"], withdrawn["withdrawal_reason"]) == ("withdrawn", "wrong limit")
    assert_refused(lab, lambda: approve(lab, proposal["id"]), 409, "conflict")
    assert versions(lab) == [("adipose", 1), ("bone_marrow", 1)]
    assert lab.sql("SELECT type FROM admin_events WHERE type = 'specification_withdrawn'") == [
        ("specification_withdrawn",)
    ]
    lab.ok(put(lab, edited(lab, viability_pct={"min": 85})))  # the tissue source is open for a new proposal


def test_r_qc_6_another_qa_user_may_withdraw_but_not_a_technician(lab):
    proposal = lab.ok(put(lab, edited(lab, viability_pct={"min": 90})))
    withdraw = f"/specification-proposals/{proposal['id']}/withdraw"
    assert_refused(lab, lambda: lab.post("tech", withdraw, {"reason": "no"}), 403, "forbidden")
    assert lab.ok(lab.post("qa", withdraw, {"reason": "limit not justified"}), 200)["status"] == "withdrawn"


def test_r_qc_6_a_proposal_on_a_superseded_version_is_not_approved(lab):
    stale = lab.ok(put(lab, edited(lab, viability_pct={"min": 90})))

    def supersede(session) -> None:  # a version approved while the proposal waited, as a race would leave it
        session.add(Specification(tissue_source="adipose", version=2, body=stale["body"], created_by="qa2"))

    lab.db.write(supersede)
    problem = assert_refused(lab, lambda: approve(lab, stale["id"]), 409, "conflict")
    assert "version 2 is now in force" in problem["detail"]


def test_r_qc_6_the_history_lists_every_version_newest_first(lab):
    publish(lab, edited(lab, viability_pct={"min": 90}))
    history = lab.ok(lab.get("clinic", "/specifications/adipose/versions"), 200)
    assert [spec["version"] for spec in history] == [2, 1]
    assert lab.ok(lab.get("qa", "/specification-proposals", status="approved"), 200)[0]["version"] == 2


def _without(body: dict, test: str) -> dict:
    body = copy.deepcopy(body)
    del body["tests"][test]
    return body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: _without(b, "cd34_pct"), "tests"),
        (lambda b: b | {"tests": b["tests"] | {"platelets": {"min": 1}}}, "tests"),
        (lambda b: b | {"tests": []}, "tests"),
        (lambda b: {k: v for k, v in b.items() if k != "tests"}, "tests"),
        (
            lambda b: b | {"tests": b["tests"] | {"viability_pct": {"unit": "%", "min": "high"}}},
            "tests.viability_pct.min",
        ),
        (lambda b: b | {"tests": b["tests"] | {"viability_pct": "≥ 70"}}, "tests.viability_pct"),
        (lambda b: b | {"tests": b["tests"] | {"cd34_pct": {"required": "no"}}}, "tests.cd34_pct.required"),
        (
            lambda b: b | {"tests": b["tests"] | {"sterility_culture": {"required": False}}},
            "tests.sterility_culture.required",
        ),
        (lambda b: b | {"stability_hours": 0}, "stability_hours"),
        (lambda b: b | {"stability_hours": 24 * 15}, "stability_hours"),
        (lambda b: {k: v for k, v in b.items() if k != "stability_hours"}, "stability_hours"),
        (lambda b: b | {"transport_temperature_c": {"min": 25, "max": 2}}, "transport_temperature_c"),
        (lambda b: b | {"transport_temperature_c": {"min": 2}}, "transport_temperature_c"),
    ],
)
def test_r_qc_1_an_invalid_specification_is_refused(lab, change, field):
    body = change(specifications(lab)["adipose"]["body"])
    problem = assert_refused(lab, lambda: put(lab, body), 422, "validation_error")
    assert f"body.{field}" in problem["errors"]
    assert versions(lab) == [("adipose", 1), ("bone_marrow", 1)]


@pytest.mark.parametrize(
    ("test", "rule", "field"),
    [
        ("viability_pct", {"min": 150}, "min"),
        ("viability_pct", {"min": -1}, "min"),
        ("cd34_pct", {"max": 101}, "max"),
        ("tnc_total", {"min": 0}, "min"),
        ("tnc_total", {"min": -1e7}, "min"),
        ("endotoxin_eu_per_ml", {"max_eu_per_kg": 0}, "max_eu_per_kg"),
        ("viability_pct", {"min": 80, "max": 70}, "min"),
    ],
)
def test_r_qc_6_limits_outside_their_physical_range_are_refused(lab, test, rule, field):
    body = edited(lab, **{test: rule})
    problem = assert_refused(lab, lambda: put(lab, body), 422, "validation_error")
    assert f"body.tests.{test}.{field}" in problem["errors"]
    assert lab.sql("SELECT count(*) FROM specification_proposals") == [(0,)]


@pytest.mark.parametrize("body", [[], "spec", None])
def test_r_qc_1_a_body_that_is_no_object_is_refused(lab, body):
    assert_refused(lab, lambda: put(lab, body), 422, "validation_error")
    assert versions(lab) == [("adipose", 1), ("bone_marrow", 1)]


def test_r_qc_1_an_unknown_tissue_source_is_not_found(lab):
    body = specifications(lab)["adipose"]["body"]
    assert_refused(lab, lambda: put(lab, body, tissue_source="cord_blood"), 404, "not_found")


# --- each batch keeps the version in force at its registration -------------------------------------


def test_r_qc_1_a_batch_is_judged_by_the_version_at_its_registration(lab):
    old = lab.batch(mrn="MRN-1")  # registered under version 1 (viability ≥ 70) ...
    publish(lab, edited(lab, viability_pct={"min": 90}))
    process(lab, old, mrn="MRN-1")  # ... and processed after version 2 (≥ 90) came into force
    new = processed_with(lab, mrn="MRN-2")
    assert (view(lab, old)["specification_version"], view(lab, new)["specification_version"]) == (1, 2)
    kept = enter(lab, old, "viability_pct", 85)
    judged = enter(lab, new, "viability_pct", 85)
    assert (kept["within_spec"], judged["within_spec"]) == (True, False)
    assert "70" in kept["spec"]
    assert "90" in judged["spec"]
    assert deviations(lab, old) == []
    assert [d["kind"] for d in deviations(lab, new)] == ["qc_out_of_spec"]


def test_r_qc_1_another_tissue_sources_version_does_not_apply(lab):
    publish(lab, edited(lab, "bone_marrow", tnc_total={"min": 1e10}), "bone_marrow")
    din = lab.processed("adipose")
    assert view(lab, din)["specification_version"] == 1
    assert enter(lab, din, "tnc_total", 4.2e7)["within_spec"] is True


def test_r_qc_1_a_test_made_optional_is_not_required_for_release(lab):
    publish(lab, edited(lab, cd34_pct={"required": False}))
    din = lab.processed()
    complete_qc(lab, din, omit=("cd34_pct",))
    assert view(lab, din)["status"] == "awaiting_release"
    assert lab.ok(lab.release(din), 200)["status"] == "released"


def test_r_qc_1_stability_window_and_transport_range_come_from_the_batch_version(lab):
    old = lab.batch(mrn="MRN-1")
    body = specifications(lab)["adipose"]["body"] | {
        "stability_hours": 12,
        "transport_temperature_c": {"min": 2, "max": 8},
    }
    publish(lab, body)
    new = lab.batch(mrn="MRN-2")
    for din, mrn in ((old, "MRN-1"), (new, "MRN-2")):
        lab.ok(lab.harvest(din, patient_mrn=mrn))
        lab.ok(lab.handoff(din))
        lab.ok(lab.receive(din, temperature_c=10))
    hours = {}
    for din in (old, new):
        harvest = next(e for e in lab.ok(lab.get("qa", f"/batches/{din}/events"), 200) if e["type"] == "harvest")
        ended = datetime.fromisoformat(harvest["data"]["values"]["ended_at"])
        hours[din] = (datetime.fromisoformat(view(lab, din)["expires_at"]) - ended) / timedelta(hours=1)
    assert hours == {old: 24, new: 12}
    assert deviations(lab, old) == []  # 10 °C is within 2-25 °C
    assert [d["kind"] for d in deviations(lab, new)] == ["temperature_excursion"]  # but not within 2-8 °C


def test_r_qc_1_good_results_pass_the_defaults_for_both_tissue_sources(lab):
    for tissue_source, mrn in (("adipose", "MRN-1"), ("bone_marrow", "MRN-2")):
        din = processed_with(lab, tissue_source, mrn=mrn)
        for test, value in GOOD_RESULTS[tissue_source].items():
            assert enter(lab, din, test, value)["within_spec"] is True, (tissue_source, test)
