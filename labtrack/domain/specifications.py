"""Product specifications, versioned per tissue source (R-QC-1), and custody limits (R-CUS-4)."""

from __future__ import annotations

from typing import Any

from labtrack.domain.process import TissueSource


def default_specification(tissue_source: TissueSource) -> dict[str, Any]:
    """The defaults of R-QC-1, as stored in version 1 of each tissue source's specification."""
    tnc_minimum = 1.0e7 if tissue_source == TissueSource.ADIPOSE else 1.0e8
    return {
        "stability_hours": 24,
        "transport_temperature_c": {"min": 2, "max": 25},
        "tests": {
            "viability_pct": {"unit": "%", "min": 70},
            "tnc_total": {"unit": "cells", "min": tnc_minimum},
            "gram_stain": {"unit": None, "equals": "no_organisms_seen"},
            "endotoxin_eu_per_ml": {"unit": "EU/mL", "max_eu_per_kg": 5},
            "sterility_culture": {"unit": None, "release": "pending", "final": "no_growth"},
            "cd34_pct": {"unit": "%", "record_only": True},
        },
    }


def transport_range(spec: dict[str, Any]) -> tuple[float, float]:
    limits = spec.get("transport_temperature_c") or {"min": 2, "max": 25}
    return float(limits["min"]), float(limits["max"])


def receipt_deviations(
    *, handoff_seal: str, seal_id: str, condition: str, temperature_c: float, spec: dict[str, Any]
) -> list[tuple[str, str]]:
    """R-CUS-4: the deviations a receipt opens, as (kind, description)."""
    found: list[tuple[str, str]] = []
    if seal_id != handoff_seal:
        found.append(("seal_mismatch", f"Seal {seal_id!r} at receipt differs from {handoff_seal!r} at hand-off."))
    if condition == "damaged":
        found.append(("damaged_container", "Container received damaged."))
    low, high = transport_range(spec)
    if not low <= temperature_c <= high:
        found.append(
            (
                "temperature_excursion",
                f"Received at {temperature_c:g} °C, outside the transport range {low:g}–{high:g} °C.",
            )
        )
    return found
