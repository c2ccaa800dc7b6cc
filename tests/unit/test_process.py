"""Process definitions and step data (requirements §2), timing (R-SEQ-2) and expiry (R-SEQ-3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from labtrack.domain.errors import ValidationFailed
from labtrack.domain.process import PROCESSES, TissueSource, validate_step_data
from labtrack.domain.specifications import default_specification
from labtrack.domain.timing import check_harvest_window, check_occurred_at, expiry

ADIPOSE, MARROW = PROCESSES[TissueSource.ADIPOSE], PROCESSES[TissueSource.BONE_MARROW]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def harvest_data(tissue: TissueSource, **changes) -> dict:
    data = {
        "patient_mrn": "MRN-1",
        "patient_birth_date": "1970-05-04",
        "weight_kg": 80,
        "volume_ml": 100,
        "site": "abdomen" if tissue == TissueSource.ADIPOSE else "posterior_iliac_crest",
        "started_at": "2026-03-01T08:00:00+01:00",
        "ended_at": "2026-03-01T08:45:00+01:00",
    }
    if tissue == TissueSource.BONE_MARROW:
        data["anticoagulant"] = "heparin"
    return data | changes


def refusal(step, data) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as refused:
        validate_step_data(step, data)
    assert (refused.value.status, refused.value.code) == (422, "validation_error")
    return refused.value.errors


@pytest.mark.parametrize(
    ("tissue", "steps"),
    [
        (TissueSource.ADIPOSE, ["harvest", "digestion", "isolation", "concentration", "administration"]),
        (TissueSource.BONE_MARROW, ["harvest", "separation", "concentration", "administration"]),
    ],
)
def test_r_seq_1_process_order_per_tissue_source(tissue, steps):
    assert [step.name for step in PROCESSES[tissue].steps] == steps
    assert PROCESSES[tissue].product == {"adipose": "SVF", "bone_marrow": "BMAC"}[tissue]


# requirements §2 "Process definitions", column "data".
SPEC_FIELDS = {
    "harvest": {"patient_mrn", "patient_birth_date", "weight_kg", "volume_ml", "site", "started_at", "ended_at"},
    "digestion": {"duration_min", "temperature_c"},
    "isolation": {"g_force", "duration_min"},
    "separation": {"duration_min"},
    "concentration": {"final_volume_ml"},
    "administration": {"patient_mrn", "patient_birth_date", "volume_ml", "injection_sites", "physician"},
}


@pytest.mark.parametrize("tissue", list(TissueSource))
def test_step_fields_match_the_spec_table(tissue):
    for step in PROCESSES[tissue].steps:
        expected = SPEC_FIELDS[step.name]
        if (tissue, step.name) == (TissueSource.BONE_MARROW, "harvest"):
            expected = expected | {"anticoagulant"}
        assert {f.name for f in step.fields} == expected, step.name


@pytest.mark.parametrize(
    ("tissue", "low", "high"),
    [(TissueSource.ADIPOSE, 10, 1000), (TissueSource.BONE_MARROW, 10, 300)],
)
def test_harvest_volume_range_per_tissue_source(tissue, low, high):
    harvest = PROCESSES[tissue].step("harvest")
    for inside in (low, high, (low + high) / 2):
        assert validate_step_data(harvest, harvest_data(tissue, volume_ml=inside))["volume_ml"] == inside
    for outside in (low - 0.1, high + 0.1, 0, -50):
        assert "data.volume_ml" in refusal(harvest, harvest_data(tissue, volume_ml=outside))


@pytest.mark.parametrize(("weight", "accepted"), [(20, True), (300, True), (19.9, False), (300.1, False)])
def test_harvest_weight_range(weight, accepted):
    harvest = ADIPOSE.step("harvest")
    data = harvest_data(TissueSource.ADIPOSE, weight_kg=weight)
    if accepted:
        assert validate_step_data(harvest, data)["weight_kg"] == weight
    else:
        assert set(refusal(harvest, data)) == {"data.weight_kg"}


@pytest.mark.parametrize(
    ("temperature", "accepted"), [(30, True), (37, True), (42, True), (29.9, False), (42.1, False)]
)
def test_digestion_temperature_range(temperature, accepted):
    digestion = ADIPOSE.step("digestion")
    data = {"duration_min": 60, "temperature_c": temperature}
    if accepted:
        assert validate_step_data(digestion, data) == data
    else:
        assert set(refusal(digestion, data)) == {"data.temperature_c"}


@pytest.mark.parametrize("nonsense", [True, "37", None, float("nan"), float("inf"), [37]])
def test_numbers_must_be_finite_numbers(nonsense):
    errors = refusal(ADIPOSE.step("digestion"), {"duration_min": 60, "temperature_c": nonsense})
    assert set(errors) == {"data.temperature_c"}


def test_unknown_fields_are_refused():
    errors = refusal(ADIPOSE.step("concentration"), {"final_volume_ml": 5, "colour": "red"})
    assert set(errors) == {"data.colour"}


def test_adipose_harvest_takes_no_anticoagulant():
    harvest = ADIPOSE.step("harvest")
    assert set(refusal(harvest, harvest_data(TissueSource.ADIPOSE, anticoagulant="heparin"))) == {"data.anticoagulant"}


def test_required_fields_are_named():
    errors = refusal(MARROW.step("harvest"), {})
    assert set(errors) == {f"data.{name}" for name in SPEC_FIELDS["harvest"] | {"anticoagulant"}}
    assert all(messages == ["is required"] for messages in errors.values())


def test_bone_marrow_harvest_needs_an_anticoagulant():
    harvest = MARROW.step("harvest")
    data = harvest_data(TissueSource.BONE_MARROW)
    del data["anticoagulant"]
    assert refusal(harvest, data) == {"data.anticoagulant": ["is required"]}
    assert set(refusal(harvest, harvest_data(TissueSource.BONE_MARROW, anticoagulant="ketchup"))) == {
        "data.anticoagulant"
    }


def test_valid_harvest_is_cleaned():
    clean = validate_step_data(MARROW.step("harvest"), harvest_data(TissueSource.BONE_MARROW, site=" sternum "))
    assert clean["site"] == "sternum"
    assert clean["patient_birth_date"] == date(1970, 5, 4)
    assert clean["ended_at"] == datetime(2026, 3, 1, 7, 45, tzinfo=UTC)


def test_harvest_site_is_one_of_the_tissue_sources_sites():
    errors = refusal(MARROW.step("harvest"), harvest_data(TissueSource.BONE_MARROW, site="abdomen"))
    assert set(errors) == {"data.site"}


def test_harvest_times_need_an_offset():
    harvest = ADIPOSE.step("harvest")
    errors = refusal(harvest, harvest_data(TissueSource.ADIPOSE, started_at="2026-03-01T08:00:00"))
    assert set(errors) == {"data.started_at"}


def test_administration_needs_injection_sites():
    administration = ADIPOSE.step("administration")
    data = {
        "patient_mrn": "MRN-1",
        "patient_birth_date": "1970-05-04",
        "volume_ml": 4.5,
        "injection_sites": ["left knee"],
        "physician": "Dr. Who",
    }
    assert validate_step_data(administration, data)["injection_sites"] == ["left knee"]
    for bad in ([], ["  "], "left knee"):
        assert set(refusal(administration, data | {"injection_sites": bad})) == {"data.injection_sites"}


def test_data_must_be_an_object():
    assert refusal(ADIPOSE.step("concentration"), ["final_volume_ml", 5]) == {"data": ["must be an object"]}


# R-SEQ-2: when it happened, against the server's clock.


def test_r_seq_2_occurred_at_must_be_timezone_aware():
    with pytest.raises(ValidationFailed) as refused:
        check_occurred_at(datetime(2026, 3, 1, 12, 0), now=NOW, last_physical_at=None, late_entry_reason=None)
    assert set(refused.value.errors) == {"occurred_at"}


def test_r_seq_2_at_most_five_minutes_in_the_future():
    check_occurred_at(NOW + timedelta(minutes=5), now=NOW, last_physical_at=None, late_entry_reason=None)
    with pytest.raises(ValidationFailed) as refused:
        check_occurred_at(
            NOW + timedelta(minutes=5, microseconds=1), now=NOW, last_physical_at=None, late_entry_reason=None
        )
    assert set(refused.value.errors) == {"occurred_at"}


def test_r_seq_2_offsets_compare_as_instants():
    berlin = timezone(timedelta(hours=1))
    # 13:04 in Berlin is 12:04 UTC: within the five minutes, whatever the wall clock says.
    check_occurred_at(
        datetime(2026, 3, 1, 13, 4, tzinfo=berlin), now=NOW, last_physical_at=None, late_entry_reason=None
    )


def test_r_seq_2_not_before_the_previous_physical_event():
    previous = NOW - timedelta(minutes=10)
    check_occurred_at(previous, now=NOW, last_physical_at=previous, late_entry_reason=None)
    with pytest.raises(ValidationFailed) as refused:
        check_occurred_at(previous - timedelta(seconds=1), now=NOW, last_physical_at=previous, late_entry_reason=None)
    assert set(refused.value.errors) == {"occurred_at"}


def test_r_seq_2_more_than_an_hour_late_needs_a_reason():
    check_occurred_at(NOW - timedelta(minutes=60), now=NOW, last_physical_at=None, late_entry_reason=None)
    late = NOW - timedelta(minutes=60, seconds=1)
    for reason in (None, "", "   "):
        with pytest.raises(ValidationFailed) as refused:
            check_occurred_at(late, now=NOW, last_physical_at=None, late_entry_reason=reason)
        assert set(refused.value.errors) == {"late_entry_reason"}
    check_occurred_at(late, now=NOW, last_physical_at=None, late_entry_reason="scanner was down")


def test_r_seq_2_harvest_starts_before_it_ends():
    check_harvest_window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1), now=NOW)
    for started, ended in ((NOW - timedelta(minutes=1), NOW - timedelta(hours=1)), (NOW, NOW)):
        with pytest.raises(ValidationFailed) as refused:
            check_harvest_window(started, ended, now=NOW)
        assert set(refused.value.errors) == {"data.started_at"}


def test_r_seq_2_harvest_times_not_in_the_future():
    with pytest.raises(ValidationFailed) as refused:
        check_harvest_window(NOW - timedelta(minutes=30), NOW + timedelta(minutes=30), now=NOW)
    assert set(refused.value.errors) == {"data.ended_at"}
    with pytest.raises(ValidationFailed) as refused:
        check_harvest_window(NOW + timedelta(hours=1), NOW + timedelta(hours=2), now=NOW)
    assert set(refused.value.errors) == {"data.started_at", "data.ended_at"}


def test_r_seq_3_expiry_is_harvest_end_plus_stability_window():
    ended = datetime(2026, 3, 1, 8, 45, tzinfo=UTC)
    assert default_specification(TissueSource.ADIPOSE)["stability_hours"] == 24
    assert default_specification(TissueSource.BONE_MARROW)["stability_hours"] == 24
    assert expiry(ended, 24) == datetime(2026, 3, 2, 8, 45, tzinfo=UTC)
    assert expiry(ended, 36) == datetime(2026, 3, 2, 20, 45, tzinfo=UTC)
    assert expiry(ended, 1.5) == ended + timedelta(minutes=90)
