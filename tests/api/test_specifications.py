"""Versioned specifications through the HTTP API (R-QC-1): the defaults, admin edits making new
versions, and each batch judged by the version in force at its registration."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.api.test_identity import assert_refused
from tests.api.test_qc import complete_qc, deviations, enter, process, processed_with, view
from tests.helpers import GOOD_RESULTS

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


def put(lab, body: Any, tissue_source: str = "adipose", by: str = "admin"):
    return lab.client.put(f"/api/v1/specifications/{tissue_source}", json=body, headers=lab.headers(by))


def publish(lab, body: Any, tissue_source: str = "adipose") -> dict:
    return lab.ok(put(lab, body, tissue_source), 200)


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


def test_r_qc_1_an_admin_edit_makes_a_new_version(lab):
    body = edited(lab, viability_pct={"min": 90})
    spec = publish(lab, body)
    assert (spec["tissue_source"], spec["version"], spec["created_by"]) == ("adipose", 2, "admin")
    assert spec["body"]["tests"]["viability_pct"]["min"] == 90
    specs = specifications(lab)
    assert (specs["adipose"]["version"], specs["bone_marrow"]["version"]) == (2, 1)
    assert specs["adipose"]["body"] == body
    assert publish(lab, edited(lab, viability_pct={"min": 80}))["version"] == 3
    assert versions(lab) == [("adipose", 1), ("adipose", 2), ("adipose", 3), ("bone_marrow", 1)]
    audit = lab.sql("SELECT actor FROM admin_events WHERE type = 'specification_published'")
    assert audit == [("admin",), ("admin",)]
    assert lab.ok(lab.get("admin", "/audit/verify"), 200)["ok"] is True


@pytest.mark.parametrize("who", ["tech", "qa", "clinic"])
def test_r_qc_1_only_admins_publish(lab, who):
    body = edited(lab, viability_pct={"min": 90})
    assert_refused(lab, lambda: put(lab, body, by=who), 403, "forbidden")
    assert versions(lab) == [("adipose", 1), ("bone_marrow", 1)]


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
    assert field in problem["errors"]
    assert versions(lab) == [("adipose", 1), ("bone_marrow", 1)]


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
