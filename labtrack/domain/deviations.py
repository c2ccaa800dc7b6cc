"""Deviations (R-DEV-1..3): what kinds there are, whether one is open, and QA's disposition of it."""

from __future__ import annotations

from enum import StrEnum


class DeviationKind(StrEnum):
    QC_OUT_OF_SPEC = "qc_out_of_spec"
    TEMPERATURE_EXCURSION = "temperature_excursion"
    SEAL_MISMATCH = "seal_mismatch"
    DAMAGED_CONTAINER = "damaged_container"
    CUSTODY_OVERDUE = "custody_overdue"
    STERILITY_POSITIVE = "sterility_positive"
    MANUAL = "manual"  # the only kind opened by hand; the others open themselves
    LOOKBACK = "lookback"


class DeviationStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Disposition(StrEnum):
    """QA's signed decision on a deviation (R-DEV-2)."""

    ACCEPT = "accept"  # use as is
    REJECT = "reject"  # the batch is rejected
