"""QC rules the services apply after an entry or a verification (R-QC-2, R-QC-4, R-QC-5, R-REL-1, R-REL-2)."""

from __future__ import annotations

from labtrack.domain.lifecycle import Status
from labtrack.domain.qc import out_of_spec
from labtrack.domain.release import QcView, qc_blockers, status_after_qc, sterility_cleared

REQUIRED = ["viability_pct", "sterility_culture"]


def view(test: str, value: float | str, *, within_spec: bool = True, verified: bool = True, id_: int = 1) -> QcView:
    return QcView(id_, test, value, within_spec, verified)


def test_r_qc_4_processed_awaits_release_once_every_required_test_is_verified_and_goes_back():
    complete = [view("viability_pct", 91.0), view("sterility_culture", "pending", id_=2)]
    unverified = [view("viability_pct", 91.0), view("sterility_culture", "pending", verified=False, id_=2)]
    assert status_after_qc(Status.PROCESSED, REQUIRED, complete) == Status.AWAITING_RELEASE
    assert status_after_qc(Status.PROCESSED, REQUIRED, unverified) == Status.PROCESSED
    assert status_after_qc(Status.PROCESSED, REQUIRED, complete[:1]) == Status.PROCESSED  # a test missing
    assert status_after_qc(Status.AWAITING_RELEASE, REQUIRED, unverified) == Status.PROCESSED
    assert status_after_qc(Status.AWAITING_RELEASE, REQUIRED, complete) == Status.AWAITING_RELEASE
    out = [view("viability_pct", 40.0, within_spec=False), complete[1]]  # out of spec still completes QC
    assert status_after_qc(Status.PROCESSED, REQUIRED, out) == Status.AWAITING_RELEASE
    for status in (Status.RELEASED, Status.DELIVERED, Status.ADMINISTERED):  # after release nothing moves back
        assert status_after_qc(status, REQUIRED, unverified) == status


def test_r_qc_2_r_qc_5_an_out_of_spec_result_opens_its_deviation_and_a_positive_culture_is_urgent():
    viability = out_of_spec("viability_pct", 40.0, ">= 70")
    assert (viability.kind, viability.urgent) == ("qc_out_of_spec", False)
    assert viability.description == "viability_pct = 40.0 is out of spec (>= 70)."
    culture = out_of_spec("sterility_culture", "growth", "no_growth")
    assert (culture.kind, culture.urgent) == ("sterility_positive", True)
    assert culture.description.startswith("Sterility culture: growth.")


def test_r_rel_2_a_release_is_conditional_until_a_negative_final_culture_is_verified():
    assert not sterility_cleared([view("sterility_culture", "pending")])
    assert not sterility_cleared([view("sterility_culture", "no_growth", verified=False)])
    assert not sterility_cleared([view("sterility_culture", "growth", within_spec=False)])
    assert not sterility_cleared([view("viability_pct", 91.0)])
    assert sterility_cleared([view("sterility_culture", "pending"), view("sterility_culture", "no_growth", id_=2)])


def test_r_rel_1_an_out_of_spec_blocker_names_the_value_with_its_unit_and_the_limit_it_misses():
    results = [
        QcView(1, "tnc_total", 1.2e6, False, True, unit="cells", limit="≥ 2e+06"),
        QcView(2, "viability_pct", 62.0, False, True, unit="%", limit="≥ 70 and ≤ 100"),
        QcView(
            3, "endotoxin_eu_per_ml", 0.9, False, True, unit="EU/mL", limit="total dose 9 EU ≤ 5 EU/kg × 1 kg = 5 EU"
        ),
        QcView(4, "sterility_culture", "growth", False, True, limit="final result no_growth"),
        QcView(5, "cd34_pct", 0.5, False, True, unit="%"),  # no limit stored: the value still has its unit
    ]
    required = ["tnc_total", "viability_pct", "endotoxin_eu_per_ml", "sterility_culture", "cd34_pct"]
    assert [b.detail for b in qc_blockers(required, results)] == [
        "The tnc_total result 1.2 × 10⁶ cells is out of spec (limit ≥ 2 × 10⁶ cells).",
        "The viability_pct result 62 % is out of spec (limit ≥ 70 % and ≤ 100 %).",
        "The endotoxin_eu_per_ml result 0.9 EU/mL is out of spec (limit total dose 9 EU ≤ 5 EU/kg × 1 kg = 5 EU).",
        "The sterility_culture result growth is out of spec (limit final result no_growth).",
        "The cd34_pct result 0.5 % is out of spec.",
    ]
    covered = QcView(1, "tnc_total", 1.2e6, False, True, True, "cells", "≥ 2e+06")  # an accepted deviation
    assert qc_blockers(["tnc_total"], [covered]) == []
