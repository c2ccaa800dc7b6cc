"""Steps in order and in time (R-SEQ-1, R-SEQ-2) and plausible step data, through the HTTP API."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.api.test_identity import assert_refused
from tests.helpers import LAB_STEPS, iso, now


def batch_view(lab, din: str) -> dict:
    return lab.ok(lab.get("tech", f"/batches/{din}"), 200)


def events(lab, din: str) -> list[dict]:
    return lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- R-SEQ-1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tissue_source", "steps"),
    [("adipose", ("digestion", "isolation", "concentration")), ("bone_marrow", ("separation", "concentration"))],
)
def test_r_seq_1_statuses_follow_the_process(lab, tissue_source, steps):
    din = lab.batch(tissue_source)
    seen = [batch_view(lab, din)["status"]]
    lab.ok(lab.harvest(din, tissue_source))
    seen.append(batch_view(lab, din)["status"])
    lab.ok(lab.handoff(din))
    seen.append(batch_view(lab, din)["status"])
    lab.ok(lab.receive(din))
    seen.append(batch_view(lab, din)["status"])
    for name in steps:
        lab.ok(lab.step(din, name))
        seen.append(batch_view(lab, din)["status"])
    middle = ["processing"] * (len(steps) - 1)
    assert seen == ["registered", "collected", "in_transit", "received", *middle, "processed"]
    batch = batch_view(lab, din)
    assert batch["steps_done"] == ["harvest", *steps]
    assert batch["product"] == ("SVF" if tissue_source == "adipose" else "BMAC")


def test_r_seq_1_next_actions_follow_the_process(lab):
    din = lab.batch()
    assert batch_view(lab, din)["next_actions"] == ["harvest"]
    lab.ok(lab.harvest(din))
    assert batch_view(lab, din)["next_actions"] == ["handoff"]
    lab.ok(lab.handoff(din))
    assert batch_view(lab, din)["next_actions"] == ["receipt"]
    lab.ok(lab.receive(din))
    assert batch_view(lab, din)["next_actions"] == ["digestion", "handoff"]
    lab.ok(lab.step(din, "digestion"))
    assert batch_view(lab, din)["next_actions"] == ["isolation", "handoff"]


def test_r_seq_1_step_out_of_order_lists_allowed_actions(lab):
    din = lab.at_lab()
    for early in ("isolation", "concentration"):
        problem = assert_refused(lab, lambda name=early: lab.step(din, name), 409, "invalid_transition")
        assert problem["allowed_actions"] == ["digestion", "handoff"]
        assert early in problem["detail"]


def test_r_seq_1_repeated_step_is_refused(lab):
    din = lab.at_lab()
    lab.ok(lab.step(din, "digestion"))
    problem = assert_refused(lab, lambda: lab.step(din, "digestion"), 409, "invalid_transition")
    assert problem["allowed_actions"] == ["isolation", "handoff"]


def test_r_seq_1_repeated_harvest_is_refused(lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    problem = assert_refused(lab, lambda: lab.harvest(din), 409, "invalid_transition")
    assert problem["allowed_actions"] == ["handoff"]


@pytest.mark.parametrize(
    ("tissue_source", "foreign", "allowed"),
    [("adipose", "separation", ["digestion", "handoff"]), ("bone_marrow", "digestion", ["separation", "handoff"])],
)
def test_r_seq_1_step_of_the_other_tissue_source_is_refused(lab, tissue_source, foreign, allowed):
    din = lab.at_lab(tissue_source)
    problem = assert_refused(lab, lambda: lab.step(din, foreign), 409, "invalid_transition")
    assert problem["allowed_actions"] == allowed
    assert "not part of" in problem["detail"]


def test_r_seq_1_no_lab_step_after_processing_is_done(lab):
    din = lab.processed("bone_marrow")
    problem = assert_refused(lab, lambda: lab.step(din, "separation"), 409, "invalid_transition")
    assert "handoff" in problem["allowed_actions"]
    assert "separation" not in problem["allowed_actions"]


def test_r_seq_1_unknown_step_name_is_a_validation_error(lab):
    din = lab.at_lab()
    body = {"step": "centrifugation", "scanned_din": din, "data": {}}
    problem = assert_refused(lab, lambda: lab.post("tech", f"/batches/{din}/steps", body), 422, "validation_error")
    assert "step" in problem["errors"]


# --- R-SEQ-2 ------------------------------------------------------------------------------------


def test_r_seq_2_occurred_at_more_than_5_minutes_ahead_is_refused(lab):
    din = lab.at_lab()
    ahead = iso(now() + timedelta(minutes=6))
    problem = assert_refused(lab, lambda: lab.step(din, "digestion", occurred_at=ahead), 422, "validation_error")
    assert "occurred_at" in problem["errors"]
    event = lab.ok(lab.step(din, "digestion", occurred_at=iso(now() + timedelta(minutes=4))))  # clock skew tolerated
    assert moment(event["occurred_at"]) > now()


def test_r_seq_2_occurred_at_before_the_previous_physical_event_is_refused(lab):
    din = lab.at_lab()
    received_at = moment(events(lab, din)[-1]["occurred_at"])
    earlier = iso(received_at - timedelta(seconds=1))
    problem = assert_refused(lab, lambda: lab.step(din, "digestion", occurred_at=earlier), 422, "validation_error")
    assert "occurred_at" in problem["errors"]
    lab.ok(lab.step(din, "digestion", occurred_at=iso(received_at)))  # the same instant is not before it


def test_r_seq_2_handoff_before_the_harvest_is_refused(lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))  # ended ten minutes ago
    earlier = iso(now() - timedelta(minutes=20))
    problem = assert_refused(lab, lambda: lab.handoff(din, occurred_at=earlier), 422, "validation_error")
    assert "occurred_at" in problem["errors"]


def backdated_at_lab(lab, hours_ago: float) -> str:
    """A batch harvested, handed off and received long ago, every entry late with its reason."""
    din = lab.batch()
    ended = now() - timedelta(hours=hours_ago)
    data = lab.harvest_data(started_at=iso(ended - timedelta(minutes=30)), ended_at=iso(ended))
    body = {"step": "harvest", "scanned_din": din, "data": data, "late_entry_reason": "entered after a power cut"}
    lab.ok(lab.post("clinic", f"/batches/{din}/steps", body))
    handed = iso(ended + timedelta(minutes=10))
    lab.ok(lab.handoff(din, occurred_at=handed, late_entry_reason="courier log"))
    received = iso(ended + timedelta(minutes=40))
    lab.ok(lab.receive(din, occurred_at=received, late_entry_reason="paper receipt transcribed"))
    return din


def test_r_seq_2_late_entry_needs_a_reason(lab):
    din = backdated_at_lab(lab, hours_ago=4)
    at = iso(now() - timedelta(minutes=61))
    problem = assert_refused(lab, lambda: lab.step(din, "digestion", occurred_at=at), 422, "validation_error")
    assert "late_entry_reason" in problem["errors"]
    blank = {"occurred_at": at, "late_entry_reason": "   "}
    assert_refused(lab, lambda: lab.step(din, "digestion", **blank), 422, "validation_error")
    reason = "LIMS was down; transcribed from the bench sheet"
    event = lab.ok(lab.step(din, "digestion", occurred_at=at, late_entry_reason=reason))
    assert event["data"]["late_entry_reason"] == reason
    assert moment(event["occurred_at"]) == moment(at)


def test_r_seq_2_late_entries_keep_their_reason_on_every_write(lab):
    din = backdated_at_lab(lab, hours_ago=3)
    stream = {e["type"]: e for e in events(lab, din)}
    assert stream["harvest"]["data"]["late_entry_reason"] == "entered after a power cut"
    assert stream["handoff"]["data"]["late_entry_reason"] == "courier log"
    assert stream["receipt"]["data"]["late_entry_reason"] == "paper receipt transcribed"


def test_r_seq_2_entry_within_the_hour_needs_no_reason(lab):
    din = lab.batch()
    ended = now() - timedelta(minutes=55)
    lab.ok(lab.harvest(din, started_at=iso(ended - timedelta(minutes=30)), ended_at=iso(ended)))
    assert "late_entry_reason" not in events(lab, din)[-1]["data"]


def test_r_seq_2_late_harvest_needs_a_reason(lab):
    din = lab.batch()
    ended = now() - timedelta(minutes=90)
    window = {"started_at": iso(ended - timedelta(minutes=30)), "ended_at": iso(ended)}
    problem = assert_refused(lab, lambda: lab.harvest(din, **window), 422, "validation_error")
    assert "late_entry_reason" in problem["errors"]


@pytest.mark.parametrize("where", ["occurred_at", "data.started_at", "data.ended_at"])
def test_r_seq_2_naive_datetimes_are_refused(lab, where):
    din = lab.batch()
    naive = (now() - timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    body = {"step": "harvest", "scanned_din": din, "data": lab.harvest_data()}
    if where == "occurred_at":
        body["occurred_at"] = naive
    else:
        body["data"][where.removeprefix("data.")] = naive
    problem = assert_refused(lab, lambda: lab.post("clinic", f"/batches/{din}/steps", body), 422, "validation_error")
    assert where in problem["errors"]


def test_r_seq_2_naive_occurred_at_on_custody_is_refused(lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    naive = now().replace(tzinfo=None).isoformat()
    problem = assert_refused(lab, lambda: lab.handoff(din, occurred_at=naive), 422, "validation_error")
    assert "occurred_at" in problem["errors"]


def test_r_seq_2_harvest_occurred_at_defaults_to_ended_at(lab):
    din = lab.batch()
    ended = now() - timedelta(minutes=25)
    event = lab.ok(lab.harvest(din, started_at=iso(ended - timedelta(minutes=30)), ended_at=iso(ended)))
    assert moment(event["occurred_at"]) == ended
    assert moment(event["recorded_at"]) - ended >= timedelta(minutes=25)


def test_r_seq_2_seq_is_recording_order_and_occurred_at_what_happened(lab):
    din = lab.batch()
    ended = now() - timedelta(minutes=50)  # harvested before the batch was registered (paperwork comes later)
    data = {"started_at": iso(ended - timedelta(minutes=30)), "ended_at": iso(ended)}
    lab.ok(lab.harvest(din, **data))
    registered, harvest = events(lab, din)
    assert (registered["seq"], registered["type"], harvest["seq"], harvest["type"]) == (1, "registered", 2, "harvest")
    assert moment(harvest["occurred_at"]) == ended
    assert moment(harvest["occurred_at"]) < moment(registered["occurred_at"])
    assert moment(harvest["recorded_at"]) > moment(registered["recorded_at"])
    times = [moment(e["recorded_at"]) for e in events(lab, din)]
    assert times == sorted(times)


# --- Step data ranges (requirements §2 process definitions) -------------------------------------------


@pytest.mark.parametrize(
    ("tissue_source", "field", "value"),
    [
        ("adipose", "volume_ml", 9.9),
        ("adipose", "volume_ml", 1000.1),
        ("bone_marrow", "volume_ml", 9),
        ("bone_marrow", "volume_ml", 301),
        ("adipose", "weight_kg", 19.9),
        ("adipose", "weight_kg", 301),
        ("bone_marrow", "weight_kg", 0),
        ("adipose", "volume_ml", "150"),
        ("adipose", "weight_kg", True),
        ("adipose", "site", "scalp"),
        ("bone_marrow", "anticoagulant", "unknown"),
        ("adipose", "patient_birth_date", "17.05.1980"),
    ],
)
def test_harvest_data_out_of_range_is_refused(lab, tissue_source, field, value):
    din = lab.batch(tissue_source)
    problem = assert_refused(lab, lambda: lab.harvest(din, tissue_source, **{field: value}), 422, "validation_error")
    assert f"data.{field}" in problem["errors"]


@pytest.mark.parametrize(
    ("tissue_source", "field", "value"),
    [
        ("adipose", "volume_ml", 10),
        ("adipose", "volume_ml", 1000),
        ("bone_marrow", "volume_ml", 300),
        ("adipose", "weight_kg", 20),
        ("bone_marrow", "weight_kg", 300),
    ],
)
def test_harvest_data_at_the_limits_is_accepted(lab, tissue_source, field, value):
    din = lab.batch(tissue_source)
    event = lab.ok(lab.harvest(din, tissue_source, **{field: value}))
    assert event["data"]["values"][field] == value


def test_harvest_missing_and_unknown_fields_are_named(lab):
    din = lab.batch("bone_marrow")
    data = lab.harvest_data("bone_marrow", colour="red")
    del data["anticoagulant"], data["weight_kg"]
    body = {"step": "harvest", "scanned_din": din, "data": data}
    problem = assert_refused(lab, lambda: lab.post("clinic", f"/batches/{din}/steps", body), 422, "validation_error")
    assert {"data.anticoagulant", "data.weight_kg", "data.colour"} <= set(problem["errors"])


@pytest.mark.parametrize(
    ("start_minutes_ago", "end_minutes_ago", "field"),
    [
        (10, 40, "data.started_at"),  # started after it ended
        (20, 20, "data.started_at"),  # no duration
        (30, -10, "data.ended_at"),  # ends in the future
        (-10, -40, "data.started_at"),  # both in the future
    ],
)
def test_harvest_window_must_be_ordered_and_not_in_the_future(lab, start_minutes_ago, end_minutes_ago, field):
    din = lab.batch()
    reference = now()
    window = {
        "started_at": iso(reference - timedelta(minutes=start_minutes_ago)),
        "ended_at": iso(reference - timedelta(minutes=end_minutes_ago)),
    }
    problem = assert_refused(lab, lambda: lab.harvest(din, **window), 422, "validation_error")
    assert field in problem["errors"]


@pytest.mark.parametrize(("temperature_c", "accepted"), [(29.9, False), (30, True), (42, True), (42.1, False)])
def test_digestion_temperature_must_be_30_to_42(lab, temperature_c, accepted):
    din = lab.at_lab()
    data = LAB_STEPS["digestion"]["data"] | {"temperature_c": temperature_c}
    if accepted:
        assert lab.ok(lab.step(din, "digestion", data=data))["data"]["values"]["temperature_c"] == temperature_c
        return
    problem = assert_refused(lab, lambda: lab.step(din, "digestion", data=data), 422, "validation_error")
    assert "data.temperature_c" in problem["errors"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"duration_min": 0, "temperature_c": 37}, "data.duration_min"),
        ({"temperature_c": 37}, "data.duration_min"),
        ({"duration_min": 45, "temperature_c": "warm"}, "data.temperature_c"),
        ({"duration_min": 45, "temperature_c": 37, "rpm": 100}, "data.rpm"),
        ("not an object", "data"),
    ],
)
def test_lab_step_data_is_validated(lab, data, field):
    din = lab.at_lab()
    problem = assert_refused(lab, lambda: lab.step(din, "digestion", data=data), 422, "validation_error")
    assert field in problem["errors"]
