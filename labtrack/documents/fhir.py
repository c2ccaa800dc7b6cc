"""LabTrack's batches as FHIR R5 resources (R-FHIR-1): plain dicts from plain views.

Code values come from the FHIR R5 value sets named beside them; ``fhir.resources``
checks a resource's structure but not that a code belongs to its value set, so the
allowed codes are listed here and the tests hold the resources to them. The ISBT 128
product code tables are licensed and not shipped: the product code is text only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labtrack.domain.hashing import iso_utc

FHIR_VERSION = "5.0.0"
FHIR_JSON = "application/fhir+json"
DIN_SYSTEM = "https://www.isbt128.org/uri/DonationIdentificationNumber"
FIN_SYSTEM = "https://www.isbt128.org/uri/FacilityIdentificationNumber"
UCUM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://hl7.org/fhir/product-category"  # ValueSet biologicallyderived-productcategory
STATUS_SYSTEM = "http://hl7.org/fhir/biologicallyderived-product-status"
STATUSES = ("available", "unavailable")
DISPENSE_STATUSES = (
    "preparation", "in-progress", "allocated", "issued", "unfulfilled", "returned", "entered-in-error", "unknown",
)  # fmt: skip
ORIGIN_SYSTEM = "http://hl7.org/fhir/biologicallyderivedproductdispense-origin-relationship"
ISSUE_SEVERITIES = ("fatal", "error", "warning", "information")
ISSUE_TYPES = (  # the codes of ValueSet issue-type used here
    "invalid", "structure", "required", "value", "security", "login", "forbidden", "not-found", "not-supported",
    "conflict", "too-long", "throttled", "transient", "exception", "processing",
)  # fmt: skip
PROPERTY_SYSTEM = "https://labtrack.example/fhir/CodeSystem/product-property"
PERFORMER_SYSTEM = "https://labtrack.example/fhir/CodeSystem/dispense-performer"
USER_SYSTEM = "https://labtrack.example/fhir/sid/username"
PROBLEM_SYSTEM = "https://labtrack.example/problems"


def mrn_system(facility: str, clinic: str) -> str:
    """The naming system of one clinic's medical record numbers, as LabTrack knows them."""
    return f"https://labtrack.example/fhir/sid/{facility}/clinic/{clinic}/mrn"


@dataclass(frozen=True)
class Person:
    username: str
    full_name: str


@dataclass(frozen=True)
class ProductView:
    din: str
    facility: str
    clinic: str
    clinic_name: str
    mrn: str
    product: str
    product_words: str
    available: bool
    status: str
    last_updated: datetime
    expires_at: datetime | None
    collector: Person | None
    collected_start: datetime | None
    collected_end: datetime | None
    storage_low_c: float
    storage_high_c: float
    viability_pct: float | None = None
    tnc_total: float | None = None
    conditional_release: bool = False


@dataclass(frozen=True)
class DispenseView:
    id: str
    din: str
    facility: str
    clinic: str
    clinic_name: str
    mrn: str
    in_transit: bool
    released_at: datetime | None
    dispatched_at: datetime
    last_updated: datetime
    dispatcher: Person
    receiver: Person | None
    received_at: datetime | None
    administered: dict[str, Any] | None = None  # performer, time, volume, sites, physician
    performers: list[tuple[str, Person]] = field(default_factory=list)


def _moment(value: datetime | None) -> str | None:
    return iso_utc(value) if value else None


def _drop_empty(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if value not in (None, [], {})}


def _person(person: Person) -> dict[str, Any]:
    return {
        "type": "Practitioner",
        "identifier": {"system": USER_SYSTEM, "value": person.username},
        "display": person.full_name,
    }


def _patient(facility: str, clinic: str, mrn: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": mrn_system(facility, clinic), "value": mrn}}


def _celsius(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "°C", "system": UCUM, "code": "Cel"}


def _property(code: str, words: str, **value: Any) -> dict[str, Any]:
    return {"type": {"coding": [{"system": PROPERTY_SYSTEM, "code": code, "display": words}], "text": words}} | value


def product(view: ProductView) -> dict[str, Any]:
    """One batch as a BiologicallyDerivedProduct."""
    din = {"system": DIN_SYSTEM, "value": view.din}
    properties = [
        _property(
            "conditional-release", "Conditional release (sterility pending)", valueBoolean=view.conditional_release
        )
    ]
    if view.viability_pct is not None:
        quantity = {"value": view.viability_pct, "unit": "%", "system": UCUM, "code": "%"}
        properties.insert(0, _property("viability", "Viability", valueQuantity=quantity))
    if view.tnc_total is not None:
        quantity = {"value": view.tnc_total, "unit": "cells", "system": UCUM, "code": "{cells}"}
        properties.insert(len(properties) - 1, _property("tnc", "Total nucleated cells", valueQuantity=quantity))
    collection = _drop_empty(
        {
            "collector": _person(view.collector) if view.collector else None,
            "source": _patient(view.facility, view.clinic, view.mrn),
            "collectedPeriod": _drop_empty(
                {"start": _moment(view.collected_start), "end": _moment(view.collected_end)}
            ),
        }
    )
    code = "available" if view.available else "unavailable"
    return _drop_empty(
        {
            "resourceType": "BiologicallyDerivedProduct",
            "id": view.din,
            "meta": {"lastUpdated": iso_utc(view.last_updated)},
            "productCategory": {"system": CATEGORY_SYSTEM, "code": "cells", "display": "Cells"},
            "productCode": {"text": view.product_words},
            "identifier": [din],
            "biologicalSourceEvent": din,
            "processingFacility": [
                {
                    "type": "Organization",
                    "identifier": {"system": FIN_SYSTEM, "value": view.facility},
                    "display": f"FIN {view.facility}",
                }
            ],
            "collection": collection,
            "productStatus": {
                "system": STATUS_SYSTEM,
                "code": code,
                "display": f"{code.capitalize()} ({view.status.replace('_', ' ')})",
            },
            "expirationDate": _moment(view.expires_at),
            "storageTempRequirements": {"low": _celsius(view.storage_low_c), "high": _celsius(view.storage_high_c)},
            "property": properties,
        }
    )


def dispense(view: DispenseView) -> dict[str, Any]:
    """One dispatch of a product to its clinic, with its receipt and administration."""
    status = "in-progress" if view.in_transit else "issued"
    notes = []
    if view.received_at and view.receiver:
        notes.append(f"Received at {view.clinic} by {view.receiver.full_name} at {iso_utc(view.received_at)}.")
    if view.administered:
        given = view.administered
        notes.append(
            f"Administered at {given['at']} by {given['by']}, physician {given.get('physician') or '—'}: "
            f"{given.get('volume_ml')} mL at {', '.join(given.get('injection_sites') or []) or '—'}."
        )
    return _drop_empty(
        {
            "resourceType": "BiologicallyDerivedProductDispense",
            "id": view.id,
            "meta": {"lastUpdated": iso_utc(view.last_updated)},
            "status": status,
            "originRelationshipType": {
                "coding": [{"system": ORIGIN_SYSTEM, "code": "autologous", "display": "Autologous"}],
                "text": "Autologous: the patient's own cells",
            },
            "product": {
                "reference": f"BiologicallyDerivedProduct/{view.din}",
                "identifier": {"system": DIN_SYSTEM, "value": view.din},
            },
            "patient": _patient(view.facility, view.clinic, view.mrn),
            "matchStatus": {
                "text": "Autologous: identity checked by scan of the DIN and the patient's MRN and birth date"
            },
            "performer": [
                {
                    "function": {"coding": [{"system": PERFORMER_SYSTEM, "code": code, "display": code}], "text": code},
                    "actor": _person(person),
                }
                for code, person in view.performers
            ],
            "destination": {"type": "Location", "display": f"{view.clinic} {view.clinic_name}"},
            "preparedDate": _moment(view.released_at),
            "whenHandedOver": iso_utc(view.dispatched_at),
            "note": [{"text": text} for text in notes],
        }
    )


def searchset(
    base: str, self_url: str, resources: list[dict[str, Any]], total: int | None, next_url: str | None
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}] + ([{"relation": "next", "url": next_url}] if next_url else [])
    return _drop_empty(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": [
                {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in resources
            ],
        }
    )


def operation_outcome(problem: dict[str, Any]) -> dict[str, Any]:
    """A refusal (problem+json body) as an OperationOutcome: one issue, or one per refused field."""
    issue_type = {
        400: "structure", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 406: "not-supported",
        409: "conflict", 413: "too-long", 415: "not-supported", 422: "invalid", 423: "security", 429: "throttled",
        503: "transient",
    }.get(problem.get("status", 500), "exception")  # fmt: skip
    details = {
        "coding": [
            {"system": PROBLEM_SYSTEM, "code": problem.get("code", "error"), "display": problem.get("title", "Error")}
        ],
        "text": problem.get("title", "Error"),
    }
    fields = problem.get("errors") or {}
    issues = [
        {
            "severity": "error",
            "code": "invalid",
            "details": details,
            "diagnostics": " ".join(messages),
            "expression": [name],
        }
        for name, messages in fields.items()
    ] or [
        {
            "severity": "error",
            "code": issue_type,
            "details": details,
            "diagnostics": problem.get("detail") or details["text"],
        }
    ]
    return {"resourceType": "OperationOutcome", "issue": issues}


SEARCH_PARAMETERS = {
    "BiologicallyDerivedProduct": [
        ("patient.identifier", "token", "The patient's MRN, as system|value or value (the clinic's own patients)"),
        ("identifier", "token", "The DIN (any printed form), as system|value or value"),
        ("biological-source-event", "token", "The DIN, as for identifier"),
        ("product-status", "token", "available | unavailable"),
    ],
    "BiologicallyDerivedProductDispense": [
        ("product", "reference", "BiologicallyDerivedProduct/{DIN}, or the DIN"),
    ],
}


def capability_statement(base: str, software_version: str, date: datetime) -> dict[str, Any]:
    """What this server does: read and search of the two resources, JSON only, bearer tokens."""
    resources = [
        {
            "type": name,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": name_, "type": kind, "documentation": words} for name_, kind, words in params]
            + [{"name": "_count", "type": "number", "documentation": "Page size, 1 to 200 (default 50)"}],
        }
        for name, params in SEARCH_PARAMETERS.items()
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": iso_utc(date),
        "publisher": "LabTrack",
        "kind": "instance",
        "software": {"name": "LabTrack", "version": software_version},
        "implementation": {"description": "LabTrack FHIR read API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Read-only. Send 'Authorization: Bearer <token>' (POST /api/v1/auth/token); "
                "a clinic's token sees only its own clinic's products.",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ],
                            "text": "Bearer token",
                        }
                    ],
                    "description": "The LabTrack API's bearer tokens, with the same access rules.",
                },
                "resource": resources,
            }
        ],
    }
