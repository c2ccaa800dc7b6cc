"""The glossary: codes in words, numbers with units, messages as sentences (pages, PDFs, e-mails)."""

from __future__ import annotations

from labtrack.domain.actors import Action, Role
from labtrack.domain.errors import DomainError
from labtrack.domain.followup import PlanStatus, VisitStatus, default_plan
from labtrack.domain.lifecycle import Status
from labtrack.domain.process import ALL_STEP_NAMES, PROCESSES
from labtrack.domain.qc import ALL_TESTS, TEXT_TESTS
from labtrack.domain.signatures import Meaning
from labtrack.domain.spc import Metric, Rule
from labtrack.glossary import (
    ACTIONS,
    WORDS,
    assessment,
    codes_in,
    din_parts,
    is_code,
    limit,
    quantity,
    sentence,
    visit_words,
    words,
)
from labtrack.services.notifications import describe


def _codes_of_errors() -> set[str]:
    found, todo = set(), [DomainError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return found


def test_every_code_of_the_domain_has_words():
    fields = {f.name for p in PROCESSES.values() for s in p.steps for f in s.fields}
    choices = {c for p in PROCESSES.values() for s in p.steps for f in s.fields for c in f.choices or ()}
    values = {v for options in TEXT_TESTS.values() for v in options}
    codes = (
        {s.value for s in Status}
        | {r.value for r in Role}
        | {m.value for m in Meaning}
        | set(ALL_STEP_NAMES)
        | set(ALL_TESTS)
        | fields
        | choices
        | values
        | _codes_of_errors()
        # follow-up and trends: statuses, metrics, Nelson rules, events, notices, fields, the report's columns
        | {s.value for s in VisitStatus}
        | {s.value for s in PlanStatus}
        | {m.value for m in Metric}
        | {r.value for r in Rule}
        | {"follow_up_recorded", "follow_up_missed", "follow_up_plan_proposed", "follow_up_plan_approved"}
        | {"photo_attached", "trend_baseline_reset", "follow_up.due", "follow_up.missed", "trend.flag"}
        | {"hair_density_per_cm2", "hair_shaft_diameter_um", "patient_global_assessment"}
        | {"investigator_global_assessment", "adverse_reaction", "late_reason", "photo_ids", "measured_on"}
        | {"baseline_per_cm2", "change_per_cm2", "change_pct", "viable_cells", "centre", "ucl", "lcl", "mr_ucl"}
    )
    assert sorted(codes - set(WORDS)) == []
    assert sorted({a.value for a in Action} - set(ACTIONS)) == []


def test_codes_read_as_words_and_compound_codes_too():
    assert words("awaiting_release") == "awaiting release"
    assert words("viability_pct") == "Viability"
    assert words("qc_missing:tnc_total") == "QC result missing: Total nucleated cells"
    assert words("no_organisms_seen") == "no organisms seen"
    assert is_code("qc_out_of_spec")
    assert not is_code("released")


def test_numbers_carry_units_and_sensible_precision():
    assert quantity(36000000.0, "cells") == "3.6 × 10⁷ cells"
    assert quantity(4.2e7, "cells") == "4.2 × 10⁷ cells"
    assert quantity(88.0, "%") == "88 %"
    assert quantity(0.5, "EU/mL") == "0.5 EU/mL"
    assert quantity("no_growth") == "no growth"
    assert limit("≥ 1e+07", "cells") == "≥ 1 × 10⁷ cells"
    assert limit("final result no_growth") == "final result no growth"
    # a number that says its own unit keeps it: the endotoxin limit is a dose, not a concentration
    assert limit("total dose 4 EU ≤ 5 EU/kg × 80 kg = 400 EU", "EU/mL") == "total dose 4 EU ≤ 5 EU/kg × 80 kg = 400 EU"
    assert limit("≥ 70 and ≤ 100", "%") == "≥ 70 % and ≤ 100 %"


def test_messages_become_sentences():
    assert sentence("Missing data for required field.") == "This is required."
    assert sentence("The technician role may not read record.") == (
        "The technician role may not read batch records. Ask someone whose role allows it."
    )
    assert sentence("must be one of: no_growth, growth") == "Choose one of: no growth, growth."
    assert sentence("The viability_pct result 55 is out of spec.") == "The Viability result 55 is out of spec."


def test_a_din_is_shown_spaced_with_its_check_character_apart():
    body, check = din_parts("A999926000001")
    assert body == "A9999 26 000001"
    assert len(check) == 1
    assert din_parts("not a din") == ("not a din", "")


def test_follow_up_and_trend_codes_read_as_words_in_pages_and_notices():
    assert [visit_words(v) for v in ("baseline", *(v["visit"] for v in default_plan()["visits"]))] == [
        "Baseline (before the harvest)", "3-month visit", "6-month visit", "12-month visit",
    ]  # fmt: skip
    assert [assessment(v) for v in (3, 0, -2)] == ["+3 much better", "0 no change", "−2 worse"]
    assert words("nelson_1") == "Nelson rule 1: a point beyond 3 σ"
    assert words("tnc_per_ml_harvested") == "Total nucleated cells per mL harvested"
    din = {"din": "A999926000001"}
    notices = [
        describe("follow_up.due", din | {"visit": "m6", "due_on": "2027-06-01", "window_from": "2027-05-18",
                                          "window_to": "2027-06-15"}),
        describe("follow_up.missed", din | {"visit": "m12"}),
        describe("trend.flag", din | {"metric": "viability_pct", "value": 71.0, "unit": "%",
                                       "rules": ["nelson_1", "nelson_2"]}),
    ]  # fmt: skip
    assert [codes_in(text) for text in notices] == [[], [], []], notices
    assert "6-month visit" in notices[0]
    assert "Nelson rule 1: a point beyond 3 σ; Nelson rule 2" in notices[2]
