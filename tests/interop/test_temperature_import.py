"""R-TMP-1: importing a transport leg's logger file through the API; refusals store nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import Lab


@pytest.fixture(scope="module")
def patient_id(shared_lab: Lab) -> int:
    return shared_lab.patient()["id"]


def received(lab: Lab, patient_id: int) -> tuple[str, datetime, datetime]:
    """A batch handed off 8 minutes ago and received now: leg 1, with its times."""
    din = lab.ok(lab.post("clinic", "/batches", {"patient_id": patient_id, "tissue_source": "adipose"}))["din"]
    lab.ok(lab.harvest(din))
    handed = datetime.now(UTC) - timedelta(minutes=8)
    lab.ok(lab.handoff(din, occurred_at=handed.isoformat()))
    receipt = lab.ok(lab.receive(din))
    return din, handed, datetime.fromisoformat(receipt["occurred_at"].replace("Z", "+00:00"))


def csv_of(start: datetime, values: list[float], minutes: int = 2) -> bytes:
    lines = ["Time;Temperature (°C)"] + [
        f"{(start + timedelta(minutes=minutes * i)).strftime('%d.%m.%Y %H:%M:%S')};{str(v).replace('.', ',')}"
        for i, v in enumerate(values)
    ]
    return ("\n".join(lines) + "\n").encode()


def upload(lab: Lab, user: str, din: str, content: bytes, leg: int = 1, timezone: str = "UTC", name: str = "log.csv"):
    return lab.client.post(
        f"/api/v1/batches/{din}/custody/legs/{leg}/temperatures",
        data={"file": (io.BytesIO(content), name), "timezone": timezone},
        headers=lab.headers(user),
        content_type="multipart/form-data",
    )


def stored(lab: Lab, din: str) -> tuple[int, int, int]:
    logs = lab.sql(
        "SELECT count(*) FROM temperature_logs t JOIN batches b ON b.id = t.batch_id WHERE b.din = :d", d=din
    )
    events = lab.sql("SELECT count(*) FROM batch_events e JOIN batches b ON b.id = e.batch_id WHERE b.din = :d", d=din)
    opened = lab.sql("SELECT count(*) FROM deviations d JOIN batches b ON b.id = d.batch_id WHERE b.din = :d", d=din)
    return logs[0][0], events[0][0], opened[0][0]


def test_r_tmp_1_a_covering_file_is_summarised_and_recorded_on_the_chain(shared_lab, patient_id):
    lab = shared_lab
    din, handed, _ = received(lab, patient_id)
    content = csv_of(handed - timedelta(minutes=10), [5.5, 6, 6.5, 7, 6, 5.5, 5, 5, 5, 5.5, 6, 6])
    log = lab.ok(upload(lab, "tech", din, content))
    # only the readings from hand-off (index 5) to receipt count; the 7 °C before the leg does not
    assert (log["leg"], log["min_c"], log["max_c"], log["minutes_out_of_range"]) == (1, 5, 5.5, 0)
    assert log["range_c"] == [2, 25]
    assert log["excursion"] is False
    events = lab.ok(lab.get("tech", f"/batches/{din}/events"), 200)
    (event,) = [e for e in events if e["type"] == "temperature_log"]
    assert event["data"]["file_sha256"] == log["file_sha256"]
    assert event["data"]["timezone"] == "UTC"
    assert event["data"]["mean_c"] == log["mean_c"]
    again = upload(lab, "tech", din, content)
    assert again.status_code == 409
    assert again.get_json()["code"] == "already_imported"
    other = upload(lab, "tech", din, content + b"\n")
    assert other.status_code == 409
    assert stored(lab, din)[0] == 1


def test_r_tmp_1_an_excursion_opens_a_temperature_excursion_deviation_and_holds_the_batch(shared_lab, patient_id):
    lab = shared_lab
    din, handed, _ = received(lab, patient_id)
    content = csv_of(handed - timedelta(minutes=4), [5, 5, 5, 27.5, 28, 5, 5, 5])  # out from +2 to +6 min
    log = lab.ok(upload(lab, "clinic", din, content, timezone="UTC"))
    assert log["minutes_out_of_range"] == 4
    assert log["excursion"] is True
    batch = lab.ok(lab.get("qa", f"/batches/{din}"), 200)
    assert batch["held"] is True
    (deviation,) = [d for d in batch["deviations"] if d["kind"] == "temperature_excursion"]
    assert "4 min outside 2–25 °C" in deviation["description"]


def test_r_tmp_1_an_excursion_within_the_allowance_opens_nothing(shared_lab, patient_id):
    lab = shared_lab
    din, handed, _ = received(lab, patient_id)
    lab.app.config["LABTRACK_EXCURSION_MINUTES"] = 5
    try:
        log = lab.ok(upload(lab, "tech", din, csv_of(handed - timedelta(minutes=4), [5, 5, 5, 30, 30, 5, 5, 5])))
    finally:
        lab.app.config["LABTRACK_EXCURSION_MINUTES"] = 0
    assert log["excursion"] is False
    assert stored(lab, din)[2] == 0


def test_r_tmp_1_the_declared_time_zone_places_the_readings(shared_lab, patient_id):
    lab = shared_lab
    din, handed, _ = received(lab, patient_id)
    tokyo = handed.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")).replace(tzinfo=None)
    content = csv_of(tokyo - timedelta(minutes=10), [5] * 12)
    wrong = upload(lab, "tech", din, content, timezone="UTC")
    assert wrong.status_code == 422
    assert wrong.get_json()["code"] == "leg_not_covered"
    assert lab.ok(upload(lab, "tech", din, content, timezone="Asia/Tokyo"))["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("content", "timezone", "status", "code", "line"),
    [
        (b"", "UTC", 422, "logger_file_invalid", 1),
        (b"12:00,5\n", "UTC", 422, "logger_file_invalid", 1),
        (b"time,humidity\n2026-12-01T10:00Z,40\n", "UTC", 422, "logger_file_invalid", 1),
        (b"time,temp\n2026-12-01T10:00Z,5\nsoon,5\n", "UTC", 422, "logger_file_invalid", 3),
        (b"time,temp\n2026-12-01T10:00Z,5\n2026-12-01T10:01Z,warm\n", "UTC", 422, "logger_file_invalid", 3),
        (b"time,temp\n2026-12-01T10:00Z,5\n", "Mars/Olympus", 422, "validation_error", None),
        (b"x" * (5 * 1024 * 1024 + 1), "UTC", 413, "payload_too_large", None),
    ],
)
def test_r_tmp_1_bad_files_are_refused_and_nothing_is_stored(
    shared_lab, patient_id, content, timezone, status, code, line
):
    lab = shared_lab
    din, _, _ = received(lab, patient_id)
    before = stored(lab, din)
    response = upload(lab, "tech", din, content, timezone=timezone)
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert body["code"] == code
    if line is not None:
        assert body["line"] == line
        assert body["errors"]["file"][0].startswith(f"line {line}: ")
    assert stored(lab, din) == before


def test_r_tmp_1_a_far_larger_body_is_refused_by_size(shared_lab, patient_id):
    lab = shared_lab
    din, _, _ = received(lab, patient_id)
    response = upload(lab, "tech", din, b"x" * (7 * 1024 * 1024))
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_r_tmp_1_only_a_received_leg_of_a_visible_batch_takes_a_file(shared_lab, patient_id):
    lab = shared_lab
    din, handed, _ = received(lab, patient_id)
    content = csv_of(handed - timedelta(minutes=10), [5] * 12)
    assert upload(lab, "tech", din, content, leg=2).status_code == 404
    assert upload(lab, "other", din, content).status_code == 404
    assert upload(lab, "admin", din, content).status_code == 403
    lab.ok(lab.step(din, "digestion"))
    lab.ok(lab.handoff(din, by="tech", to="qa", seal="SEAL-9"))
    pending = upload(lab, "tech", din, content, leg=2)
    assert pending.status_code == 409
    assert pending.get_json()["code"] == "leg_open"
    assert stored(lab, din)[0] == 0


def test_r_tmp_1_r_aud_2_the_database_refuses_to_change_or_remove_a_logger_record(shared_lab, patient_id):
    lab = shared_lab
    din, handed, _ = received(lab, patient_id)
    lab.ok(upload(lab, "tech", din, csv_of(handed - timedelta(minutes=10), [5] * 12)))
    for statement in ("UPDATE temperature_logs SET max_c = 5", "DELETE FROM temperature_logs"):
        with pytest.raises(Exception, match="append-only"):
            lab.sql(statement)
    assert stored(lab, din)[0] == 1
