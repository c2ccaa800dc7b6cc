"""Who may correct what (R-COR-1), as the domain decides it: no database, no requests."""

from __future__ import annotations

import pytest

from labtrack.domain.actors import Actor, Role
from labtrack.domain.corrections import (
    check_correction,
    check_corrector,
    check_value_changes,
    correctable_fields,
    is_correctable,
    may_correct,
    needs_review,
    step_changes,
)
from labtrack.domain.errors import Forbidden, ValidationFailed
from labtrack.domain.lifecycle import Status
from labtrack.domain.process import PROCESSES, TissueSource

TECH = Actor(10, "tech", "Tomas Bench", Role.TECHNICIAN, None)
TECH2 = Actor(11, "tech2", "Tara Second", Role.TECHNICIAN, None)
QA = Actor(20, "qa", "Quinn Assurance", Role.QA, None)
CLINIC = Actor(30, "clinic", "Clara Clinic", Role.CLINIC, 1)
ADIPOSE = PROCESSES[TissueSource.ADIPOSE]


def refusal(check) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as refused:
        check()
    return refused.value.errors


def test_r_cor_1_the_recorder_or_qa_corrects():
    check_corrector(TECH, TECH.id)
    check_corrector(QA, TECH.id)
    with pytest.raises(Forbidden):
        check_corrector(TECH2, TECH.id)


def test_r_cor_1_only_a_step_of_the_batchs_process_or_a_qc_result_is_corrected():
    assert [is_correctable(ADIPOSE, t) for t in ("qc_recorded", "harvest", "digestion", "administration")] == [True] * 4
    for event_type in ("separation", "handoff", "receipt", "qc_verified", "released", "correction"):
        assert not is_correctable(ADIPOSE, event_type), event_type
        assert refusal(lambda t=event_type: check_correction(QA, ADIPOSE, t, QA.id, "typo", {})) == {
            "event_seq": [f"a {event_type} event cannot be corrected"]
        }


def test_r_cor_1_a_correction_needs_a_reason_and_someone_allowed_first():
    with pytest.raises(Forbidden):  # who comes first: a stranger learns nothing about the entry
        check_correction(TECH2, ADIPOSE, "handoff", TECH.id, "", {})
    assert refusal(lambda: check_correction(TECH, ADIPOSE, "digestion", TECH.id, "  ", {"x": 1})) == {
        "reason": ["is required"]
    }
    check_correction(TECH, ADIPOSE, "digestion", TECH.id, "misread the timer", {"duration_min": 40})


def test_r_cor_1_patient_identifiers_and_anything_but_a_qc_value_are_refused():
    for name in ("patient_mrn", "patient_birth_date"):
        assert refusal(lambda n=name: check_correction(CLINIC, ADIPOSE, "harvest", CLINIC.id, "typo", {n: "x"})) == {
            "data": ["patient identifiers cannot be corrected; open a deviation"]
        }
    for data in ({}, {"value": 1, "unit": "%"}, {"within_spec": True}):
        assert refusal(lambda d=data: check_correction(TECH, ADIPOSE, "qc_recorded", TECH.id, "typo", d)) == {
            "data": ['a QC correction gives the new value: {"value": ...}']
        }
    check_correction(QA, ADIPOSE, "qc_recorded", TECH.id, "transcription", {"value": 91.5})


def test_r_cor_1_a_correction_changes_something():
    current = {"weight_kg": 70.0, "volume_ml": 120.0}
    assert step_changes(current, {"weight_kg": 72.0, "volume_ml": 120.0}, ["weight_kg", "volume_ml"]) == {
        "weight_kg": {"old": 70.0, "new": 72.0}
    }
    assert refusal(lambda: step_changes(current, dict(current), ["weight_kg"])) == {"data": ["changes nothing"]}
    check_value_changes(88.0, 91.5)
    assert refusal(lambda: check_value_changes("no_growth", "no_growth")) == {"data.value": ["changes nothing"]}


def test_r_cor_1_after_release_a_correction_of_what_release_judged_goes_to_qa():
    for status in (Status.RELEASED, Status.DISPATCHED, Status.DELIVERED, Status.ADMINISTERED):
        for event_type in ("qc_recorded", "harvest", "concentration"):
            assert needs_review(status, event_type), (status, event_type)
        assert not needs_review(status, "digestion")
    for status in (Status.PROCESSED, Status.AWAITING_RELEASE, Status.COLLECTED):
        assert not needs_review(status, "qc_recorded")


def test_r_cor_1_the_form_is_offered_to_the_recorder_or_qa_without_the_patients_identifiers():
    assert may_correct(TECH, ADIPOSE, "digestion", TECH.id)
    assert may_correct(QA, ADIPOSE, "digestion", TECH.id)
    assert not may_correct(TECH2, ADIPOSE, "digestion", TECH.id)
    assert not may_correct(QA, ADIPOSE, "handoff", QA.id)
    harvest = ADIPOSE.step("harvest")
    assert harvest is not None
    offered = {f.name for f in correctable_fields(harvest)}
    assert offered == {f.name for f in harvest.fields} - {"patient_mrn", "patient_birth_date"}
    (sterility,) = correctable_fields(None, "sterility_culture")
    assert (sterility.name, sterility.choices) == ("value", ("pending", "no_growth", "growth"))
    (viability,) = correctable_fields(None, "viability_pct")
    assert (viability.name, viability.choices) == ("value", None)
