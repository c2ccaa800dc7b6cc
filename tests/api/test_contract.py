"""The HTTP contract of requirements §3: problem+json refusals, bad input, Idempotency-Key, OpenAPI and docs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from labtrack.services.paging import encode
from tests.helpers import LAB_STEPS, PASSWORD, now

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(response, status: int, code: str) -> dict:
    """Every refusal is application/problem+json with the RFC 9457 members and a stable code."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert set(body) >= PROBLEM_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith(f"/{code}")
    assert body["title"].strip()
    assert body["detail"].strip()
    return body


def raw_post(lab, username: str, path: str, data: bytes | str, content_type: str = "application/json"):
    return lab.client.post(f"/api/v1{path}", data=data, content_type=content_type, headers=lab.headers(username))


# --- problem+json on every refusal ------------------------------------------------------------


def test_every_kind_of_refusal_is_problem_json(lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    client = lab.client
    assert_problem(client.get("/api/v1/batches"), 401, "unauthenticated")
    bad_login = client.post("/api/v1/auth/token", json={"username": "tech", "password": "nope-nope-nope"})
    assert_problem(bad_login, 401, "invalid_credentials")
    assert_problem(lab.get("tech", "/users"), 403, "forbidden")
    assert_problem(lab.get("tech", f"/batches/{din[:7]}999999"), 404, "not_found")
    assert_problem(lab.get("tech", "/no-such-thing"), 404, "not_found")
    assert_problem(client.delete("/api/v1/batches", headers=lab.headers("tech")), 405, "method_not_allowed")
    assert_problem(lab.harvest(din), 409, "invalid_transition")
    assert_problem(lab.post("admin", "/clinics", {"code": "C1", "name": "again"}), 409, "conflict")
    assert_problem(lab.get("tech", "/batches/NOT-A-DIN"), 422, "invalid_din")
    assert_problem(lab.get("tech", f"/batches/{din}X"), 422, "invalid_din")  # wrong check character
    body = assert_problem(lab.post("clinic", "/batches", {}), 422, "validation_error")
    assert set(body["errors"]) == {"patient_id", "tissue_source"}
    lab.ok(lab.handoff(din))
    assert_problem(lab.step(din, "digestion"), 409, "custody_violation")  # still in transit
    lab.ok(lab.receive(din))
    wrong_scan = lab.step(din, "digestion", scanned_din=f"{din[:7]}999999")
    assert_problem(wrong_scan, 422, "identity_mismatch")
    assert_problem(lab.step(din, "digestion", reagent_lots=[lab.lot("quarantined")]), 422, "reagent_not_usable")
    assert_problem(lab.step(din, "digestion", equipment=["CEN-OUT"]), 422, "equipment_not_usable")
    lab.sql("UPDATE users SET locked_at = CURRENT_TIMESTAMP WHERE username = 'qa2'")
    locked = client.post("/api/v1/auth/token", json={"username": "qa2", "password": PASSWORD})
    assert_problem(locked, 423, "account_locked")


def test_invalid_transition_names_the_allowed_next_actions(lab):
    din = lab.batch()
    body = assert_problem(lab.step(din, "digestion"), 409, "invalid_transition")
    assert body["allowed_actions"] == ["harvest"]


# --- bad input is a 4xx problem, never a 500 --------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"mrn": "M-1",}', "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        ("[" * 100_000 + "]" * 100_000, "application/json"),
        ("[1, 2, 3]", "application/json"),
        ('"just a string"', "application/json"),
        ("null", "application/json"),
        ("mrn=M-1", "application/x-www-form-urlencoded"),
        ("hello", "text/plain"),
    ],
    ids=["malformed", "trailing-comma", "not-utf8", "nested-deep", "array", "string", "null", "form", "text"],
)
def test_malformed_or_wrong_shaped_body_is_a_4xx_problem(lab, data, content_type):
    response = raw_post(lab, "clinic", "/patients", data, content_type)
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code, response.get_json()["code"])
    assert lab.ok(lab.get("clinic", "/patients"), 200)["items"] == []


def test_deeply_nested_step_data_is_a_4xx_problem_and_writes_nothing(lab):
    din = lab.at_lab()
    seq = lab.ok(lab.get("tech", f"/batches/{din}"), 200)["seq"]
    nested: dict = {}
    for _ in range(900):
        nested = {"x": nested}
    response = lab.step(din, "digestion", data={"duration_min": 45, "temperature_c": 37, "extra": nested})
    assert 400 <= response.status_code < 500
    assert lab.ok(lab.get("tech", f"/batches/{din}"), 200)["seq"] == seq


HUGE = 10**20


@pytest.mark.parametrize(
    ("username", "method", "path", "body"),
    [
        ("clinic", "post", "/batches", {"patient_id": 2**31, "tissue_source": "adipose"}),
        ("clinic", "post", "/batches", {"patient_id": HUGE, "tissue_source": "adipose"}),
        ("admin", "patch", f"/reagent-lots/{HUGE}", {"status": "released"}),
        ("tech", "get", f"/batches?limit={2**62}", None),
        ("tech", "get", f"/patients?after={encode(2**62)}&limit={2**62}", None),
    ],
    ids=["int32-id", "huge-id", "huge-url-id", "huge-limit", "huge-patient-limit"],
)
def test_numbers_past_the_columns_range_are_4xx_problems_not_500(lab, username, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    response = getattr(lab.client, method)(f"/api/v1{path}", headers=lab.headers(username), **kwargs)
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code, response.get_json()["code"])
    assert din_counter(lab) == 0


@pytest.mark.postgres
def test_nul_character_in_text_is_a_422_on_postgres(lab):
    body = {"mrn": "M\u0000-1", "family_name": "Doe", "given_name": "Jane", "birth_date": "1980-05-17"}
    assert_problem(lab.post("clinic", "/patients", body), 422, "validation_error")
    assert lab.ok(lab.get("clinic", "/patients"), 200)["items"] == []


def test_huge_material_ids_in_a_step_are_refused_and_write_nothing(lab):
    din = lab.at_lab()
    seq = lab.ok(lab.get("tech", f"/batches/{din}"), 200)["seq"]
    response = lab.step(din, "digestion", reagent_lots=[HUGE])
    assert 400 <= response.status_code < 500
    assert lab.ok(lab.get("tech", f"/batches/{din}"), 200)["seq"] == seq


def test_validation_errors_name_each_field(lab):
    body = {"mrn": "", "family_name": "Doe", "given_name": "Jane", "birth_date": "17/05/1980"}
    problem = assert_problem(lab.post("clinic", "/patients", body), 422, "validation_error")
    assert set(problem["errors"]) == {"mrn", "birth_date"}
    assert all(isinstance(messages, list) and messages for messages in problem["errors"].values())


def test_unknown_field_is_422(lab):
    body = {"mrn": "M-1", "family_name": "Doe", "given_name": "Jane", "birth_date": "1980-05-17", "is_admin": True}
    problem = assert_problem(lab.post("clinic", "/patients", body), 422, "validation_error")
    assert set(problem["errors"]) == {"is_admin"}
    assert lab.ok(lab.get("clinic", "/patients"), 200)["items"] == []


def test_bad_query_string_is_422(lab):
    problem = assert_problem(lab.get("tech", "/batches", limit="two", status="lost"), 422, "validation_error")
    assert set(problem["errors"]) == {"limit", "status"}


def test_body_over_one_mib_is_413_payload_too_large(lab):
    body = {"mrn": "M-1", "family_name": "x" * (1024 * 1024), "given_name": "Jane", "birth_date": "1980-05-17"}
    assert_problem(lab.post("clinic", "/patients", body), 413, "payload_too_large")
    assert lab.ok(lab.get("clinic", "/patients"), 200)["items"] == []


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v2/batches", "/api/v1/batches/x/y/z"])
def test_unknown_route_is_a_404_problem(lab, path):
    assert_problem(lab.client.get(path, headers=lab.headers("tech")), 404, "not_found")


def test_unknown_page_outside_the_api_is_an_html_404(lab):
    response = lab.client.get("/nothing")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


# --- Idempotency-Key --------------------------------------------------------------------------


def din_counter(lab) -> int:
    return lab.sql("SELECT coalesce(sum(last_sequence), 0) FROM din_counters")[0][0]


def test_same_idempotency_key_and_body_replays_the_first_response_and_writes_nothing(lab):
    patient = lab.patient()
    body = {"patient_id": patient["id"], "tissue_source": "adipose"}
    first = lab.post("clinic", "/batches", body, **{"Idempotency-Key": "register-1"})
    again = lab.post("clinic", "/batches", body, **{"Idempotency-Key": "register-1"})
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert len(lab.ok(lab.get("clinic", "/batches"), 200)["items"]) == 1
    assert din_counter(lab) == 1
    assert lab.sql("SELECT count(*) FROM batch_events")[0][0] == 1


def test_same_idempotency_key_with_another_body_is_422_and_writes_nothing(lab):
    patient = lab.patient()
    body = {"patient_id": patient["id"], "tissue_source": "adipose"}
    lab.ok(lab.post("clinic", "/batches", body, **{"Idempotency-Key": "register-1"}))
    other = body | {"tissue_source": "bone_marrow"}
    assert_problem(
        lab.post("clinic", "/batches", other, **{"Idempotency-Key": "register-1"}), 422, "idempotency_key_reused"
    )
    assert len(lab.ok(lab.get("clinic", "/batches"), 200)["items"]) == 1
    assert din_counter(lab) == 1


def test_idempotency_key_older_than_24_hours_no_longer_replays(lab):
    patient = lab.patient()
    body = {"patient_id": patient["id"], "tissue_source": "adipose"}
    first = lab.ok(lab.post("clinic", "/batches", body, **{"Idempotency-Key": "daily"}))
    lab.sql("UPDATE idempotency_keys SET created_at = :old", old=now() - timedelta(hours=24, minutes=1))
    second = lab.ok(lab.post("clinic", "/batches", body, **{"Idempotency-Key": "daily"}))
    assert second["din"] != first["din"]
    assert din_counter(lab) == 2
    assert lab.ok(lab.post("clinic", "/batches", body, **{"Idempotency-Key": "daily"})) == second


def test_idempotency_keys_belong_to_one_user(lab):
    patient = lab.patient()
    body = {"patient_id": patient["id"], "tissue_source": "adipose"}
    mine = lab.ok(lab.post("clinic", "/batches", body, **{"Idempotency-Key": "shared-key"}))
    theirs = lab.ok(lab.post("clinic_b", "/batches", body, **{"Idempotency-Key": "shared-key"}))
    assert mine["din"] != theirs["din"]
    assert din_counter(lab) == 2


def test_idempotent_replay_of_a_step_does_not_log_it_twice(lab):
    din = lab.at_lab()
    body = {"step": "digestion", "scanned_din": din} | LAB_STEPS["digestion"]
    first = lab.ok(lab.post("tech", f"/batches/{din}/steps", body, **{"Idempotency-Key": "dig"}))
    again = lab.ok(lab.post("tech", f"/batches/{din}/steps", body, **{"Idempotency-Key": "dig"}))
    assert again == first
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert (batch["seq"], batch["steps_done"].count("digestion")) == (first["seq"], 1)


@pytest.mark.parametrize("key", ["", "   ", "k" * 201])
def test_blank_or_overlong_idempotency_key_is_422(lab, key):
    patient = lab.patient()
    response = lab.post(
        "clinic", "/batches", {"patient_id": patient["id"], "tissue_source": "adipose"}, **{"Idempotency-Key": key}
    )
    assert "Idempotency-Key" in assert_problem(response, 422, "validation_error")["errors"]
    assert din_counter(lab) == 0


# --- OpenAPI and interactive docs -------------------------------------------------------------


def openapi_path(rule: str) -> str:
    """Flask's ``/batches/<string:din>`` is OpenAPI's ``/batches/{din}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_openapi_documents_every_api_route_with_bearer_auth(app, client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    registered = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/v1/", "/fhir/"))  # the FHIR read API is documented beside the API
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert len(registered) >= 25
    assert registered == documented
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/api/v1/auth/token"]["post"]["security"] == []  # the one way in without a token


def test_api_docs_load_their_scripts_and_styles_from_the_app_not_a_cdn(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        assert not asset.startswith("//"), asset
        fetched = client.get(asset)
        assert fetched.status_code == 200, asset
        assert len(fetched.get_data()) > 1000, asset
    assert not re.search(r"https?://|//cdn", page)
