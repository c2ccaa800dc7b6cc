"""Investigations: adverse reactions (R-ADV-1..4) and lookbacks (R-LBK-1..5), as plain rules.

Seriousness and reportability follow 21 CFR 1271.350(a): a reaction is serious when it
is fatal, life-threatening, results in permanent impairment or damage, or needs medical
or surgical intervention; it must be reported to the FDA within 15 calendar days of
the information's receipt when it is serious and involves a communicable disease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from labtrack.domain.errors import ValidationFailed
from labtrack.domain.lifecycle import Status

REPORT_DAYS = 15  # 21 CFR 1271.350(a)(1): within 15 calendar days of receipt
WARN_DAYS_BEFORE_DUE = 5
SHARED_EQUIPMENT_WINDOW = timedelta(hours=24)  # R-LBK-1, batch seed: the same equipment within 24 h
REMIND_AFTER = timedelta(hours=24)  # R-LBK-3
ESCALATE_AFTER = timedelta(hours=72)


class Category(StrEnum):
    INFECTION = "infection"
    ALLERGIC_REACTION = "allergic_reaction"
    INJECTION_SITE_REACTION = "injection_site_reaction"
    OTHER = "other"


class ReactionOutcome(StrEnum):
    RECOVERED = "recovered"
    RECOVERING = "recovering"
    NOT_RECOVERED = "not_recovered"
    FATAL = "fatal"
    UNKNOWN = "unknown"


class Relatedness(StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class ReactionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # by QA, with a signed conclusion (R-ADV-3)


class LookbackStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # by QA, with a signed conclusion (R-LBK-4)


class SeedKind(StrEnum):
    REAGENT_LOT = "reagent_lot"
    EQUIPMENT = "equipment"
    OPERATOR = "operator"
    BATCH = "batch"


class Trigger(StrEnum):
    """Why a lookback was opened: by QA, by a lot's recall (R-LBK-5), by an infection report (R-ADV-4)."""

    QA = "qa"
    RECALL = "recall"
    ADVERSE_REACTION = "adverse_reaction"


class Activity(StrEnum):
    """What an operator did to a batch (the relational record of use behind R-LBK-1)."""

    STEP = "step"
    QC_ENTRY = "qc_entry"
    QC_VERIFICATION = "qc_verification"


class AffectedAction(StrEnum):
    """What a lookback does about an affected batch (R-LBK-2)."""

    HELD = "held"  # not yet used: a lookback deviation holds it
    FOLLOW_UP = "follow_up"  # administered: the clinic follows the patient up
    NONE = "none"  # rejected, expired or discarded: never reaches a patient


@dataclass(frozen=True)
class Criteria:
    category: Category
    fatal: bool
    life_threatening: bool
    permanent_impairment: bool
    intervention_required: bool
    communicable_disease_suspected: bool


@dataclass(frozen=True)
class Assessment:
    serious: bool
    reportable: bool
    report_due_on: date | None  # only a reportable reaction has a report due
    opens_lookback: bool  # R-ADV-4


def assess(criteria: Criteria, received_on: date) -> Assessment:
    """R-ADV-2: serious = any of the four criteria; reportable = serious and communicable disease involved."""
    serious = (
        criteria.fatal or criteria.life_threatening or criteria.permanent_impairment or criteria.intervention_required
    )
    communicable = criteria.communicable_disease_suspected or criteria.category == Category.INFECTION
    reportable = serious and communicable
    return Assessment(
        serious=serious,
        reportable=reportable,
        report_due_on=received_on + timedelta(days=REPORT_DAYS) if reportable else None,
        opens_lookback=communicable,
    )


def check_report(
    criteria: Criteria, outcome: ReactionOutcome, onset_at: datetime, *, administered_at: datetime | None, now: datetime
) -> None:
    """The facts of a report must agree: the outcome and the fatal flag, an onset after the injection."""
    errors: dict[str, list[str]] = {}
    if (outcome == ReactionOutcome.FATAL) != criteria.fatal:
        errors["fatal"] = ["must be true exactly when the outcome is fatal"]
    if onset_at > now:
        errors["onset_at"] = ["is in the future"]
    elif administered_at is not None and onset_at < administered_at:
        errors["onset_at"] = [f"is before the product was administered ({administered_at.isoformat()})"]
    if errors:
        raise ValidationFailed(errors)


def check_closing(*, reportable: bool, reported_to_authority_on: date | None, today: date) -> None:
    """R-ADV-3: a reportable reaction is closed only with the day it was reported, not a future one."""
    if reportable and reported_to_authority_on is None:
        raise ValidationFailed(
            {"reported_to_authority_on": ["is required: this reaction is reportable (21 CFR 1271.350(a))"]}
        )
    if reported_to_authority_on is not None and reported_to_authority_on > today:
        raise ValidationFailed({"reported_to_authority_on": ["is in the future"]})


class DueNotice(StrEnum):
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"


def due_notice(report_due_on: date, today: date, *, warned: bool, overdue_told: bool) -> DueNotice | None:
    """R-ADV-2: tell QA 5 days before the due day, and once it has passed; each once.

    A watcher that was down past the due day sends only the overdue notice.
    """
    if today > report_due_on:
        return None if overdue_told else DueNotice.OVERDUE
    if today >= report_due_on - timedelta(days=WARN_DAYS_BEFORE_DUE) and not warned:
        return DueNotice.DUE_SOON
    return None


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None


def check_window(kind: SeedKind, start: datetime | None, end: datetime | None) -> Window:
    """R-LBK-1: an optional [from, to]; a batch seed has its own window (24 h around each use)."""
    if kind == SeedKind.BATCH and (start is not None or end is not None):
        raise ValidationFailed({"from": ["a batch seed takes no window: its equipment is searched 24 h either side"]})
    if start is not None and end is not None and start > end:
        raise ValidationFailed({"to": ["is before from"]})
    return Window(start, end)


def affected_action(status: Status) -> AffectedAction:
    """R-LBK-2: hold what may still reach a patient; follow up what already has."""
    if status == Status.ADMINISTERED:
        return AffectedAction.FOLLOW_UP
    if status in (Status.REJECTED, Status.EXPIRED, Status.DISCARDED):
        return AffectedAction.NONE
    return AffectedAction.HELD


class ClinicNotice(StrEnum):
    REMINDER = "reminder"
    ESCALATION = "escalation"


def clinic_notices(
    notified_at: datetime, now: datetime, *, acknowledged: bool, reminded: bool, escalated: bool
) -> list[ClinicNotice]:
    """R-LBK-3: unacknowledged after 24 h, a reminder to the clinic; after 72 h, QA is told; each once."""
    if acknowledged:
        return []
    waited = now - notified_at
    due = []
    if waited >= REMIND_AFTER and not reminded:
        due.append(ClinicNotice.REMINDER)
    if waited >= ESCALATE_AFTER and not escalated:
        due.append(ClinicNotice.ESCALATION)
    return due
