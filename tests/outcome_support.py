"""Test data for follow-up and trends: released and administered batches for patients of their own.

Times come from the server's clock (``labtrack.clock.utcnow``), so that a test may build
history months back inside ``frozen_at``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from labtrack.clock import utcnow
from tests.helpers import GOOD_RESULTS, PROCESS_ORDER, Lab, harvest_end


def released(lab: Lab, mrn: str, results: dict[str, Any] | None = None, tissue_source: str = "adipose") -> str:
    """A batch for a new patient ``mrn``, harvested now, processed, QC'd, verified and released."""
    din = lab.batch(tissue_source, mrn=mrn)
    ended = harvest_end(utcnow())
    lab.ok(
        lab.harvest(
            din,
            tissue_source,
            patient_mrn=mrn,
            started_at=(ended - timedelta(minutes=40)).isoformat(),
            ended_at=ended.isoformat(),
        )
    )
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    for name in PROCESS_ORDER[tissue_source]:
        lab.ok(lab.step(din, name))
    for test, value in (GOOD_RESULTS[tissue_source] | (results or {})).items():
        lab.ok(lab.verify(din, lab.ok(lab.qc(din, test, value))["id"]), 200)
    lab.ok(lab.release(din), 200)
    return din


def administered(lab: Lab, mrn: str, results: dict[str, Any] | None = None) -> str:
    """Released, delivered to the clinic and administered: its follow-up visits are scheduled."""
    din = released(lab, mrn, results)
    lab.ok(lab.handoff(din, by="tech", to="clinic", seal="SEAL-2"))
    lab.ok(lab.receive(din, by="clinic", seal="SEAL-2"))
    lab.ok(lab.administration(din, patient_mrn=mrn))
    return din
