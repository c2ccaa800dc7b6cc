"""Regression tests for what the API fuzzer (tests/api/test_fuzz.py) found, as plain tests.

- Lone UTF-16 surrogates (``"\\ud800"`` in JSON) answered 500: they cannot be encoded for the database.
- NUL and other control characters were stored on SQLite while PostgreSQL refused NUL with an
  anonymous 422: now every API text field refuses them with a 422 naming the field, on both.
- Unknown query parameters were ignored, so a mistyped filter answered with everything.
- The OpenAPI document described refusals as application/json under a catch-all ``default``;
  refusals are problem+json and each operation names the statuses it can answer.
- 429 and 503 problems carry ``retry_after`` / ``reason``, which the Problem schema did not allow.
- A time in year 792 was accepted and given back as "792-10-02T...Z", which is not ISO 8601: the API
  now refuses dates and times outside 1900-2199, and ``iso_utc`` pads the year (step data times).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labtrack.domain.hashing import iso_utc
from tests.api.test_contract import assert_problem
from tests.helpers import PASSWORD, signature

NUL, BEL, ESC, DEL, C1 = "\x00", "\x07", "\x1b", "\x7f", "\x85"
LONE_SURROGATE = "\ud800"


def send(lab, username: str, path: str, body: dict):
    """POST ``body`` as JSON text, as a client would: ``\\ud800`` travels as the escape it is."""
    return lab.client.post(
        f"/api/v1{path}", data=json.dumps(body), content_type="application/json", headers=lab.headers(username)
    )


def patient_body(**overrides: str) -> dict:
    return {"mrn": "MRN-9", "family_name": "Doe", "given_name": "Jane", "birth_date": "1980-05-17"} | overrides


def refused(response, field: str) -> None:
    body = assert_problem(response, 422, "validation_error")
    assert field in body["errors"], body["errors"]
    assert "control characters" in body["errors"][field][0]


@pytest.mark.parametrize("bad", [NUL, BEL, ESC, DEL, C1, "\n", "\t", LONE_SURROGATE])
@pytest.mark.parametrize("field", ["mrn", "family_name", "given_name"])
def test_single_line_text_refuses_control_characters_and_writes_nothing(lab, field, bad):
    refused(send(lab, "clinic", "/patients", patient_body(**{field: f"Ab{bad}c"})), field)
    assert lab.sql("SELECT count(*) FROM patients")[0][0] == 0


@pytest.mark.parametrize("bad", [NUL, ESC, LONE_SURROGATE])
def test_free_text_refuses_control_characters(lab, bad):
    din = lab.batch()
    refused(send(lab, "tech", f"/batches/{din}/deviations", {"description": f"seal {bad} loose"}), "description")
    assert lab.sql("SELECT count(*) FROM deviations")[0][0] == 0


def test_free_text_keeps_tabs_and_line_breaks(lab):
    din = lab.batch()
    text = "Seal loose.\r\n\tChecked twice.\nReported."
    deviation = lab.ok(send(lab, "tech", f"/batches/{din}/deviations", {"description": text}))
    assert deviation["description"] == text


def test_text_nested_in_step_data_is_checked_too(lab):
    din = lab.batch()
    data = lab.harvest_data() | {"site": "abdomen", "notes": {"by": [f"nurse{NUL}"]}}
    response = send(lab, "clinic", f"/batches/{din}/steps", {"step": "harvest", "scanned_din": din, "data": data})
    refused(response, "data")
    assert lab.sql("SELECT count(*) FROM batch_events")[0][0] == 1  # registration only


@pytest.mark.parametrize(
    ("username", "path", "field", "body"),
    [
        ("admin", "/clinics", "name", {"code": "C9", "name": f"Clinic{BEL}"}),
        ("admin", "/clinics", "webhook_url", {"code": "C9", "name": "C", "webhook_url": f"https://x.test/{NUL}"}),
        ("admin", "/clinics", "webhook_url", {"code": "C9", "name": "C", "webhook_url": "https://x.test/\ud800"}),
        ("admin", "/users", "full_name", {"username": "newbie", "full_name": f"N{ESC}", "role": "qa", "password": "p"}),
        ("admin", "/users", "password", {"username": "newbie", "full_name": "N", "role": "qa", "password": "p\ud800"}),
    ],
)
def test_reference_data_text_is_checked(lab, username, path, field, body):
    refused(send(lab, username, path, body), field)


def test_lone_surrogate_in_a_signature_password_is_refused_not_a_500(lab):
    din = lab.awaiting_release()
    response = send(lab, "qa", f"/batches/{din}/release", {"signature": signature("approved", f"x{LONE_SURROGATE}")})
    refused(response, "signature.password")
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["status"] == "awaiting_release"


def test_lone_surrogate_at_sign_in_is_refused_not_a_500(lab):
    response = lab.client.post(
        "/api/v1/auth/token",
        data=json.dumps({"username": "tech", "password": PASSWORD + LONE_SURROGATE}),
        content_type="application/json",
    )
    refused(response, "password")


def test_query_text_refuses_control_characters(lab):
    refused(lab.get("clinic", "/patients", mrn=f"MRN{NUL}1"), "mrn")


def test_unknown_query_parameter_is_refused_not_ignored(lab):
    lab.batch()
    body = assert_problem(lab.get("qa", "/batches", stauts="released"), 422, "validation_error")
    assert "stauts" in body["errors"]
    assert len(lab.ok(lab.get("qa", "/batches", status="released"), 200)["items"]) == 0


@pytest.mark.parametrize("moment", ["0792-10-02T19:06:51+05:32", "2200-01-01T00:00:00Z", "1899-12-31T23:59:59Z"])
def test_implausible_years_are_refused_for_times(lab, moment):
    patient = lab.patient()
    body = {"patient_id": patient["id"], "tissue_source": "adipose", "planned_administration_at": moment}
    body = assert_problem(send(lab, "clinic", "/batches", body), 422, "validation_error")
    assert "between the years 1900 and 2199" in body["errors"]["planned_administration_at"][0]
    assert lab.sql("SELECT count(*) FROM batches")[0][0] == 0


def test_implausible_years_are_refused_for_dates(lab):
    body = assert_problem(
        send(lab, "clinic", "/patients", patient_body(birth_date="0303-12-08")), 422, "validation_error"
    )
    assert set(body["errors"]) == {"birth_date"}
    din = lab.batch()
    late = {"scanned_din": din, "to_username": "tech", "seal_id": "S-1", "occurred_at": "0001-01-01T00:00:00Z"}
    late["late_entry_reason"] = "paper record"
    body = assert_problem(send(lab, "clinic", f"/batches/{din}/custody/handoff", late), 422, "validation_error")
    assert set(body["errors"]) == {"occurred_at"}


def test_planned_administration_in_a_plausible_year_is_given_back_as_iso_8601(lab):
    patient = lab.patient()
    body = {
        "patient_id": patient["id"],
        "tissue_source": "adipose",
        "planned_administration_at": "2030-01-02T03:04:05Z",
    }
    batch = lab.ok(send(lab, "clinic", "/batches", body))
    assert batch["planned_administration_at"] == "2030-01-02T03:04:05.000000Z"


OFFSETS = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)))


@given(st.datetimes(min_value=datetime(1, 1, 2), timezones=OFFSETS))
def test_iso_utc_is_iso_8601_in_every_year(moment):
    text = iso_utc(moment)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
    assert datetime.fromisoformat(text) == moment


def test_a_harvest_recorded_centuries_late_is_still_given_back_as_iso_8601(lab):
    """Found by the fuzzer: event times came back as "792-10-02T..." (whether to accept them is R-SEQ-2's)."""
    din = lab.batch()
    data = lab.harvest_data(started_at="0792-10-02T10:00:00+00:00", ended_at="0792-10-02T11:00:00+00:00")
    body = {"step": "harvest", "scanned_din": din, "late_entry_reason": "from the archive", "data": data}
    event = lab.ok(send(lab, "clinic", f"/batches/{din}/steps", body))
    assert event["occurred_at"] == "0792-10-02T11:00:00.000000Z"
    assert lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["expires_at"].startswith("0792-10-03T")


# --- the OpenAPI document ---------------------------------------------------------------------


@pytest.fixture
def document(client) -> dict:
    return client.get("/api/openapi.json").get_json()


def test_refusals_are_documented_as_problem_json_per_status(document):
    operation = document["paths"]["/api/v1/batches/{din}"]["get"]
    assert "default" not in operation["responses"]
    assert set(operation["responses"]) == {"200", "401", "404", "422", "423", "503"}
    for status, response in operation["responses"].items():
        if status != "200":
            name = response["$ref"].rsplit("/", 1)[1]
            assert set(document["components"]["responses"][name]["content"]) == {"application/problem+json"}


def test_no_operation_has_a_catch_all_response(document):
    catch_alls = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method != "parameters" and "default" in operation["responses"]
    ]
    assert catch_alls == []


def test_text_fields_document_the_characters_they_refuse(document):
    patient = document["components"]["schemas"]["PatientCreate"]["properties"]
    assert patient["mrn"]["pattern"].startswith("^[^\\t\\n\\r\\u0000")
    deviation = document["components"]["schemas"]["DeviationCreate"]["properties"]
    assert "\\n" not in deviation["description"]["pattern"]  # free text keeps line breaks


def test_problem_schema_allows_retry_after_and_reason(document):
    problem = document["components"]["schemas"]["Problem"]["properties"]
    assert {"retry_after", "reason", "errors", "blockers", "allowed_actions"} <= set(problem)
