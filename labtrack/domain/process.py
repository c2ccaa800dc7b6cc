"""Process definitions per tissue source, as data (requirements §2 "Process definitions").

Each step names who performs it (clinic or lab), the data it records with plausible
ranges, and the reagent and equipment kinds it needs (R-MAT-3). Step order comes
from the order of ``ProcessDefinition.steps`` (R-SEQ-1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from labtrack.domain.errors import ValidationFailed


class TissueSource(StrEnum):
    ADIPOSE = "adipose"
    BONE_MARROW = "bone_marrow"


class Performer(StrEnum):
    CLINIC = "clinic"
    LAB = "lab"


class FieldKind(StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    TEXT = "text"
    DATE = "date"
    DATETIME = "datetime"
    TEXT_LIST = "text_list"


@dataclass(frozen=True)
class DataField:
    name: str
    kind: FieldKind
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    unit: str | None = None
    choices: tuple[str, ...] | None = None
    max_length: int = 200


@dataclass(frozen=True)
class StepDefinition:
    name: str
    performer: Performer
    fields: tuple[DataField, ...]
    reagent_kinds: tuple[str, ...] = ()
    equipment_kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcessDefinition:
    tissue_source: TissueSource
    product: str
    harvest_volume_ml: tuple[float, float]
    steps: tuple[StepDefinition, ...] = field(default=())

    @property
    def lab_steps(self) -> tuple[StepDefinition, ...]:
        return tuple(s for s in self.steps if s.performer == Performer.LAB)

    def step(self, name: str) -> StepDefinition | None:
        return next((s for s in self.steps if s.name == name), None)


DURATION = DataField("duration_min", FieldKind.NUMBER, minimum=1, maximum=1440, unit="min")
SITE_CHOICES_ADIPOSE = ("abdomen", "flank", "thigh", "buttock", "other")
SITE_CHOICES_MARROW = ("posterior_iliac_crest", "anterior_iliac_crest", "sternum", "other")


def _harvest(volume: tuple[float, float], sites: tuple[str, ...], *, anticoagulant: bool) -> StepDefinition:
    fields = [
        DataField("patient_mrn", FieldKind.TEXT, max_length=64),
        DataField("patient_birth_date", FieldKind.DATE),
        DataField("weight_kg", FieldKind.NUMBER, minimum=20, maximum=300, unit="kg"),
        DataField("volume_ml", FieldKind.NUMBER, minimum=volume[0], maximum=volume[1], unit="mL"),
        DataField("site", FieldKind.TEXT, choices=sites),
        DataField("started_at", FieldKind.DATETIME),
        DataField("ended_at", FieldKind.DATETIME),
    ]
    if anticoagulant:
        fields.append(DataField("anticoagulant", FieldKind.TEXT, choices=("heparin", "acd_a", "citrate")))
    return StepDefinition("harvest", Performer.CLINIC, tuple(fields))


CONCENTRATION = StepDefinition(
    "concentration",
    Performer.LAB,
    (DataField("final_volume_ml", FieldKind.NUMBER, minimum=0.5, maximum=300, unit="mL"),),
    equipment_kinds=("centrifuge",),
)
ADMINISTRATION = StepDefinition(
    "administration",
    Performer.CLINIC,
    (
        DataField("patient_mrn", FieldKind.TEXT, max_length=64),
        DataField("patient_birth_date", FieldKind.DATE),
        DataField("volume_ml", FieldKind.NUMBER, minimum=0.1, maximum=300, unit="mL"),
        DataField("injection_sites", FieldKind.TEXT_LIST),
        DataField("physician", FieldKind.TEXT),
    ),
)

PROCESSES: dict[TissueSource, ProcessDefinition] = {
    TissueSource.ADIPOSE: ProcessDefinition(
        TissueSource.ADIPOSE,
        "SVF",
        (10, 1000),
        (
            _harvest((10, 1000), SITE_CHOICES_ADIPOSE, anticoagulant=False),
            StepDefinition(
                "digestion",
                Performer.LAB,
                (DURATION, DataField("temperature_c", FieldKind.NUMBER, minimum=30, maximum=42, unit="°C")),
                reagent_kinds=("collagenase",),
                equipment_kinds=("incubator",),
            ),
            StepDefinition(
                "isolation",
                Performer.LAB,
                (DataField("g_force", FieldKind.NUMBER, minimum=50, maximum=5000, unit="× g"), DURATION),
                equipment_kinds=("centrifuge",),
            ),
            CONCENTRATION,
            ADMINISTRATION,
        ),
    ),
    TissueSource.BONE_MARROW: ProcessDefinition(
        TissueSource.BONE_MARROW,
        "BMAC",
        (10, 300),
        (
            _harvest((10, 300), SITE_CHOICES_MARROW, anticoagulant=True),
            StepDefinition(
                "separation",
                Performer.LAB,
                (DURATION,),
                reagent_kinds=("separation_kit",),
                equipment_kinds=("centrifuge",),
            ),
            CONCENTRATION,
            ADMINISTRATION,
        ),
    ),
}

ALL_STEP_NAMES = tuple(dict.fromkeys(s.name for p in PROCESSES.values() for s in p.steps))


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise ValueError("not a date-time")
    if moment.tzinfo is None:
        raise ValueError("needs a timezone offset, e.g. 2026-11-25T09:30:00+01:00")
    return moment


def _coerce(spec: DataField, value: Any) -> Any:
    match spec.kind:
        case FieldKind.NUMBER | FieldKind.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("must be a number")
            if not math.isfinite(value):
                raise ValueError("must be a finite number")
            if spec.kind == FieldKind.INTEGER and int(value) != value:
                raise ValueError("must be a whole number")
            if spec.minimum is not None and value < spec.minimum:
                raise ValueError(f"must be at least {spec.minimum:g}{' ' + spec.unit if spec.unit else ''}")
            if spec.maximum is not None and value > spec.maximum:
                raise ValueError(f"must be at most {spec.maximum:g}{' ' + spec.unit if spec.unit else ''}")
            return value
        case FieldKind.TEXT:
            if not isinstance(value, str) or not value.strip():
                raise ValueError("must be non-empty text")
            if len(value) > spec.max_length:
                raise ValueError(f"must be at most {spec.max_length} characters")
            if spec.choices and value.strip() not in spec.choices:
                raise ValueError(f"must be one of: {', '.join(spec.choices)}")
            return value.strip()
        case FieldKind.TEXT_LIST:
            if not isinstance(value, list) or not value:
                raise ValueError("must be a non-empty list of text")
            if not all(isinstance(v, str) and v.strip() and len(v) <= spec.max_length for v in value):
                raise ValueError("every entry must be non-empty text")
            return [v.strip() for v in value]
        case FieldKind.DATE:
            if not isinstance(value, str):
                raise ValueError("must be a date (YYYY-MM-DD)")
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValueError("must be a date (YYYY-MM-DD)") from None
        case FieldKind.DATETIME:
            try:
                return _parse_datetime(value)
            except ValueError as exc:
                raise ValueError(f"must be an ISO 8601 date-time with offset ({exc})") from None
    raise AssertionError(spec.kind)


def validate_step_data(step: StepDefinition, data: Any) -> dict[str, Any]:
    """Check a step's data against its definition; unknown fields are refused."""
    if not isinstance(data, dict):
        raise ValidationFailed({"data": ["must be an object"]})
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    known = {f.name for f in step.fields}
    for name in data:
        if name not in known:
            errors[f"data.{name}"] = [f"is not a field of the {step.name} step"]
    for spec in step.fields:
        if spec.name not in data or data[spec.name] is None:
            if spec.required:
                errors[f"data.{spec.name}"] = ["is required"]
            continue
        try:
            clean[spec.name] = _coerce(spec, data[spec.name])
        except ValueError as exc:
            errors[f"data.{spec.name}"] = [str(exc)]
    if errors:
        raise ValidationFailed(errors)
    return clean
