"""Follow-up plans and visits (R-OUT-1, R-OUT-2): when each visit is due and what a visit records.

A plan is data, versioned per tissue source like a specification: a baseline at or
before harvest and visits a number of months after administration, each with a
window in days either side of the date it is due. Administration schedules the
visits of the plan in force; a measurement outside its visit's window needs a
reason (a late entry), and a visit not recorded when its window closes is missed.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from labtrack.domain.errors import ValidationFailed

BASELINE = "baseline"
REMINDER_DAYS = 7  # R-OUT-4: the clinic is reminded this long before a visit is due
MAX_PHOTOS = 10


class VisitStatus(StrEnum):
    DUE = "due"
    DONE = "done"
    MISSED = "missed"


class PlanStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"


def default_plan() -> dict[str, Any]:
    """R-OUT-1's default: a baseline at or before harvest, then 3, 6 and 12 months, each ± 14 days."""
    return {
        "baseline_window_days": 14,
        "visits": [{"visit": f"m{months}", "months": months, "window_days": 14} for months in (3, 6, 12)],
    }


def validate_plan(body: Any) -> dict[str, Any]:
    """A plan's body as stored: visit names ``m<months>``, months rising, windows of 0 to 60 days."""
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        raise ValidationFailed({"body": ["must be an object"]})
    baseline = body.get("baseline_window_days")
    if not _whole(baseline, 0, 90):
        errors["baseline_window_days"] = ["must be a whole number of days from 0 to 90"]
    visits = body.get("visits")
    clean: list[dict[str, Any]] = []
    if not isinstance(visits, list) or not 1 <= len(visits) <= 12:
        errors["visits"] = ["must list 1 to 12 visits"]
        visits = []
    previous = 0
    for index, visit in enumerate(visits):
        months = visit.get("months") if isinstance(visit, dict) else None
        window = visit.get("window_days") if isinstance(visit, dict) else None
        if not _whole(months, 1, 120) or months <= previous:
            errors[f"visits.{index}.months"] = ["must be a whole number of months (1 to 120), rising"]
            continue
        if not _whole(window, 0, 60):
            errors[f"visits.{index}.window_days"] = ["must be a whole number of days from 0 to 60"]
            continue
        previous = months
        clean.append({"visit": f"m{months}", "months": months, "window_days": window})
    unknown = set(body) - {"baseline_window_days", "visits"}
    if unknown:
        errors["body"] = [f"unknown fields: {', '.join(sorted(unknown))}"]
    if errors:
        raise ValidationFailed(errors)
    return {"baseline_window_days": baseline, "visits": clean}


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or the month's last day when it has fewer (31 Jan + 1 → 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class ScheduledVisit:
    visit: str
    due_on: date
    window_from: date
    window_to: date
    closes_on: date  # after this day an unrecorded visit is missed


def schedule(plan: dict[str, Any], *, harvested_on: date, administered_on: date) -> list[ScheduledVisit]:
    """The visits administration schedules (R-OUT-2).

    The baseline is measured at or before harvest (its window ends on the harvest day);
    since it can only be entered once the visits exist, it is missed only when the first
    window of days after administration has passed with nothing recorded.
    """
    before = timedelta(days=plan["baseline_window_days"])
    grace = timedelta(days=plan["visits"][0]["window_days"] if plan["visits"] else 14)
    visits = [
        ScheduledVisit(
            BASELINE, harvested_on, harvested_on - before, harvested_on, max(harvested_on, administered_on) + grace
        )
    ]
    for entry in plan["visits"]:
        due = add_months(administered_on, entry["months"])
        window = timedelta(days=entry["window_days"])
        visits.append(ScheduledVisit(entry["visit"], due, due - window, due + window, due + window))
    return visits


@dataclass(frozen=True)
class Measurement:
    """What a clinic records at a visit (R-OUT-2), checked for range; times and identity come from the server."""

    measured_on: date
    hair_density_per_cm2: float
    patient_global_assessment: int
    investigator_global_assessment: int
    adverse_reaction: bool
    hair_shaft_diameter_um: float | None = None
    note: str | None = None

    def as_data(self) -> dict[str, Any]:
        return {
            "measured_on": self.measured_on.isoformat(),
            "hair_density_per_cm2": self.hair_density_per_cm2,
            "hair_shaft_diameter_um": self.hair_shaft_diameter_um,
            "patient_global_assessment": self.patient_global_assessment,
            "investigator_global_assessment": self.investigator_global_assessment,
            "adverse_reaction": self.adverse_reaction,
            "note": self.note,
        }


def check_measurement(m: Measurement) -> None:
    """Physical and scale ranges: density 0–500 /cm², shaft 10–150 µm, global assessments −3…3."""
    errors: dict[str, list[str]] = {}
    if not _number_in(m.hair_density_per_cm2, 0, 500):
        errors["hair_density_per_cm2"] = ["must be a number from 0 to 500 hairs per cm²"]
    if m.hair_shaft_diameter_um is not None and not _number_in(m.hair_shaft_diameter_um, 10, 150):
        errors["hair_shaft_diameter_um"] = ["must be a number from 10 to 150 µm"]
    for name in ("patient_global_assessment", "investigator_global_assessment"):
        if not _whole(getattr(m, name), -3, 3):
            errors[name] = ["must be a whole number from −3 (much worse) to 3 (much better)"]
    if errors:
        raise ValidationFailed(errors)


def _number_in(value: Any, low: float, high: float) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high
    )


def check_timing(
    visit: ScheduledVisit, measured_on: date, *, today: date, administered_on: date, late_reason: str | None
) -> bool:
    """Whether the entry is late (outside the window, so it needs ``late_reason``); refuses impossible dates."""
    if measured_on > today:
        raise ValidationFailed({"measured_on": ["must not be in the future"]})
    if visit.visit != BASELINE and measured_on < administered_on:
        raise ValidationFailed({"measured_on": ["a follow-up visit cannot be measured before the administration"]})
    late = not visit.window_from <= measured_on <= visit.window_to
    if late and not (late_reason or "").strip():
        raise ValidationFailed(
            {
                "late_reason": [
                    f"the visit's window is {visit.window_from.isoformat()} to {visit.window_to.isoformat()}: "
                    "a measurement outside it needs a reason"
                ]
            }
        )
    return late


def reminder_due(visit: ScheduledVisit, today: date) -> bool:
    """R-OUT-4: from 7 days before the due date until the window closes."""
    return visit.visit != BASELINE and visit.due_on - timedelta(days=REMINDER_DAYS) <= today <= visit.window_to


def missed(visit: ScheduledVisit, today: date) -> bool:
    return today > visit.closes_on
