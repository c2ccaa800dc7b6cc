"""QC tests, their evaluation against the specification, and release readiness of results
(R-QC-1..5).

A specification's ``tests`` map names each test with its unit and limit; a batch is
judged by the version in force at its registration. Evaluation is pure: it needs
the value and, for endotoxin, the final volume and the patient's weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from labtrack.domain.errors import ValidationFailed

GRAM_STAIN_VALUES = ("no_organisms_seen", "organisms_seen")
STERILITY_PENDING = "pending"
STERILITY_VALUES = (STERILITY_PENDING, "no_growth", "growth")
STERILITY = "sterility_culture"
ENDOTOXIN = "endotoxin_eu_per_ml"
PERCENT_TESTS = ("viability_pct", "cd34_pct")
NUMERIC_TESTS = (*PERCENT_TESTS, "tnc_total", ENDOTOXIN)
TEXT_TESTS = {"gram_stain": GRAM_STAIN_VALUES, STERILITY: STERILITY_VALUES}
# The tests in the order of the lab's worksheet: the QC panel, the record and every list show them so.
ALL_TESTS = ("viability_pct", "tnc_total", "gram_stain", ENDOTOXIN, STERILITY, "cd34_pct")


@dataclass(frozen=True)
class Evaluation:
    within_spec: bool
    limit: str  # the limit applied, in words, for display and the record
    unit: str | None


@dataclass(frozen=True)
class OutOfSpec:
    """The deviation an out-of-spec result opens (R-QC-2); a positive culture's is urgent (R-QC-5)."""

    kind: str
    description: str
    urgent: bool


def out_of_spec(test: str, value: float | str, limit: str | None) -> OutOfSpec:
    """The deviation for a result outside its specification."""
    if test == STERILITY:
        return OutOfSpec(
            "sterility_positive", f"Sterility culture: {value}. Follow up with the clinic and the patient.", True
        )
    return OutOfSpec("qc_out_of_spec", f"{test} = {value} is out of spec ({limit}).", False)


def parse_value(test: str, value: Any) -> float | str:
    """Check a result's type and physical range; refuse nonsense with 422."""
    if test in TEXT_TESTS:
        if value not in TEXT_TESTS[test]:
            raise ValidationFailed({"value": [f"must be one of: {', '.join(TEXT_TESTS[test])}"]})
        return value
    if test not in NUMERIC_TESTS:
        raise ValidationFailed({"test": [f"must be one of: {', '.join(ALL_TESTS)}"]})
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationFailed({"value": ["must be a finite number"]})
    if value < 0 or (test in PERCENT_TESTS and value > 100):
        raise ValidationFailed({"value": ["must be between 0 and 100" if test in PERCENT_TESTS else "must be ≥ 0"]})
    return value


def spec_tests(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The specification's tests with their rules, in the worksheet's order (``ALL_TESTS``), whatever order
    its stored body keeps its keys in (PostgreSQL's jsonb orders them by length); a specification defines
    exactly these tests (``validate_specification``)."""
    tests = spec["tests"]
    return [(name, tests[name]) for name in ALL_TESTS if name in tests]


def required_tests(spec: dict[str, Any]) -> list[str]:
    """Every test of the specification must have a verified result before release (R-QC-4)."""
    return [name for name, rule in spec_tests(spec) if rule.get("required", True)]


def evaluate(
    test: str, value: float | str, spec: dict[str, Any], *, final_volume_ml: float | None, weight_kg: float | None
) -> Evaluation:
    """R-QC-2: is the result within the batch's specification?"""
    rule = spec["tests"].get(test)
    if rule is None:
        raise ValidationFailed({"test": [f"{test} is not part of this batch's specification"]})
    unit = rule.get("unit")
    if test == ENDOTOXIN:
        if final_volume_ml is None or weight_kg is None:
            raise ValidationFailed({"test": ["endotoxin needs the concentration's final volume and harvest weight"]})
        per_kg = float(rule.get("max_eu_per_kg", 5))
        dose, limit = float(value) * final_volume_ml, per_kg * weight_kg
        return Evaluation(
            dose <= limit, f"total dose {dose:g} EU ≤ {per_kg:g} EU/kg × {weight_kg:g} kg = {limit:g} EU", unit
        )
    if rule.get("record_only"):
        return Evaluation(True, "recorded, no limit", unit)
    if test == STERILITY:
        if value == STERILITY_PENDING:
            return Evaluation(True, "sample taken before release; final result must be no_growth", unit)
        return Evaluation(
            value == rule.get("final", "no_growth"), f"final result {rule.get('final', 'no_growth')}", unit
        )
    if "equals" in rule:
        return Evaluation(value == rule["equals"], f"= {rule['equals']}", unit)
    low, high = rule.get("min"), rule.get("max")
    within = (low is None or float(value) >= low) and (high is None or float(value) <= high)
    words = " and ".join(
        w for w in (f"≥ {low:g}" if low is not None else "", f"≤ {high:g}" if high is not None else "") if w
    )
    return Evaluation(within, words or "no limit", unit)


def validate_specification(body: Any) -> dict[str, Any]:
    """A new specification version must keep every known test and have sane limits (R-QC-1)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        raise ValidationFailed({"body": ["must be an object"]})
    hours = body.get("stability_hours")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 1 <= hours <= 24 * 14:
        errors["stability_hours"] = ["must be a number of hours between 1 and 336"]
    transport = body.get("transport_temperature_c")
    if not (
        isinstance(transport, dict)
        and all(
            isinstance(transport.get(k), int | float) and not isinstance(transport.get(k), bool) for k in ("min", "max")
        )
        and -200 <= transport["min"] < transport["max"] <= 60
    ):
        errors["transport_temperature_c"] = ["must be {min, max} in °C with min < max"]
    tests = body.get("tests")
    if not isinstance(tests, dict) or set(tests) != set(ALL_TESTS):
        errors["tests"] = [f"must define exactly: {', '.join(ALL_TESTS)}"]
    else:
        for name, rule in tests.items():
            if not isinstance(rule, dict):
                errors[f"tests.{name}"] = ["must be an object"]
                continue
            for key in ("min", "max", "max_eu_per_kg"):
                if key in rule and (isinstance(rule[key], bool) or not isinstance(rule[key], int | float)):
                    errors[f"tests.{name}.{key}"] = ["must be a number"]
            if "required" in rule and not isinstance(rule["required"], bool):
                errors[f"tests.{name}.required"] = ["must be true or false"]
            errors.update(limit_errors(name, rule))
        if isinstance(tests.get(STERILITY), dict) and tests[STERILITY].get("required") is False:
            errors[f"tests.{STERILITY}.required"] = ["a sterility sample is always required before release"]
    if errors:
        raise ValidationFailed(errors)
    return body


# R-QC-6: the physical range of each test's limits, as (lowest allowed, whether the lowest is excluded, highest).
PHYSICAL_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "viability_pct": (0, False, 100),
    "cd34_pct": (0, False, 100),
    "tnc_total": (0, True, None),
}
RANGE_WORDS = {
    "viability_pct": "a percentage, from 0 to 100",
    "cd34_pct": "a percentage, from 0 to 100",
    "tnc_total": "a cell count, above 0",
}


def limit_errors(name: str, rule: dict[str, Any]) -> dict[str, list[str]]:
    """R-QC-6: a test's limits within physical ranges (a percentage within 0–100, counts and volumes above 0),
    the lower limit not above the upper one."""
    errors: dict[str, list[str]] = {}
    numbers = {k: v for k, v in rule.items() if k in ("min", "max", "max_eu_per_kg") and _is_number(v)}
    low, excluded, high = PHYSICAL_RANGES.get(name, (0, True, None))
    for key, value in numbers.items():
        if key == "max_eu_per_kg":
            if value <= 0:
                errors[f"tests.{name}.{key}"] = ["must be above 0 EU/kg"]
            continue
        if (
            not math.isfinite(value)
            or value < low
            or (excluded and value == low)
            or (high is not None and value > high)
        ):
            errors[f"tests.{name}.{key}"] = [f"must be {RANGE_WORDS.get(name, 'above 0')}"]
    if "min" in numbers and "max" in numbers and numbers["min"] > numbers["max"]:
        errors.setdefault(f"tests.{name}.min", []).append("must not be above the upper limit")
    return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
