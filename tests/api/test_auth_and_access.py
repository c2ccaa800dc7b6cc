"""Authentication (tokens, passwords, deactivation) and who may see and do what (R-ACC-1..3)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import PASSWORD

PROBLEM_JSON = "application/problem+json"
LAB_PATIENT = {"mrn": "M-2", "family_name": "A", "given_name": "B", "birth_date": "1970-01-01", "clinic": "C1"}


def token_for(lab, username: str, password: str = PASSWORD):
    return lab.client.post("/api/v1/auth/token", json={"username": username, "password": password})


def get_with(lab, path: str, authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return lab.client.get(f"/api/v1{path}", headers=headers)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert body["code"] == code
    assert body["status"] == status
    return body


def token_row(lab, token: str):
    rows = lab.sql(
        "SELECT id, token_hash FROM api_tokens WHERE token_hash = :h", h=hashlib.sha256(token.encode()).hexdigest()
    )
    assert len(rows) == 1
    return rows[0]


# --- tokens -----------------------------------------------------------------------------------


def test_token_for_right_password_names_the_user_and_expires_in_twelve_hours(lab):
    before = datetime.now(UTC)
    body = lab.ok(token_for(lab, "clinic"), 200)
    assert len(body["token"]) >= 32
    assert body["expires_at"].endswith("Z")
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(hours=12) <= expires_at <= datetime.now(UTC) + timedelta(hours=12)
    assert body["user"]["username"] == "clinic"
    assert body["user"]["full_name"] == "Clara Clinic"
    assert body["user"]["role"] == "clinic"
    assert body["user"]["clinic"] == "C1"
    lab_user = lab.ok(token_for(lab, "tech"), 200)["user"]
    assert (lab_user["role"], lab_user["clinic"]) == ("technician", None)
    assert not {"password", "password_hash"} & set(body["user"])
    lab.ok(get_with(lab, "/batches", f"Bearer {body['token']}"), 200)


@pytest.mark.parametrize(
    ("username", "password"),
    [("clinic", "wrong-password-123"), ("nobody-here", PASSWORD), ("clinic", PASSWORD.upper())],
)
def test_wrong_password_or_unknown_user_is_401_invalid_credentials(lab, username, password):
    response = token_for(lab, username, password)
    body = assert_problem(response, 401, "invalid_credentials")
    assert set(body) >= {"type", "title", "status", "detail", "code"}
    assert "token" not in body
    # the same answer for both, so the endpoint does not reveal which usernames exist
    assert body["detail"] == token_for(lab, "nobody-at-all", "x" * 12).get_json()["detail"]
    assert lab.sql("SELECT count(*) FROM api_tokens")[0][0] == 0


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer not-a-real-token", "Basic Y2xpbmljOnBhc3N3b3Jk", "Token abc"],
)
def test_missing_or_garbage_bearer_is_401_unauthenticated(lab, authorization):
    response = get_with(lab, "/batches", authorization)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_tokens_are_stored_only_as_sha256_hashes(lab):
    token = lab.ok(token_for(lab, "qa"), 200)["token"]
    row = token_row(lab, token)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    # no column of any token row holds the token text
    for stored in lab.sql("SELECT * FROM api_tokens"):
        assert all(token not in str(value) for value in stored)


def test_revoked_token_stops_working_and_other_tokens_do_not(lab):
    first = lab.ok(token_for(lab, "tech"), 200)["token"]
    second = lab.ok(token_for(lab, "tech"), 200)["token"]
    response = lab.client.post("/api/v1/auth/revoke", headers={"Authorization": f"Bearer {first}"})
    assert response.status_code == 204
    assert_problem(get_with(lab, "/batches", f"Bearer {first}"), 401, "unauthenticated")
    assert_problem(
        lab.client.post("/api/v1/auth/revoke", headers={"Authorization": f"Bearer {first}"}), 401, "unauthenticated"
    )
    lab.ok(get_with(lab, "/batches", f"Bearer {second}"), 200)


def test_expired_token_stops_working(lab):
    token = lab.ok(token_for(lab, "tech"), 200)["token"]
    lab.ok(get_with(lab, "/batches", f"Bearer {token}"), 200)
    lab.sql(
        "UPDATE api_tokens SET expires_at = :past WHERE id = :id",
        past=datetime.now(UTC) - timedelta(seconds=1),
        id=token_row(lab, token).id,
    )
    assert_problem(get_with(lab, "/batches", f"Bearer {token}"), 401, "unauthenticated")


def test_deactivating_a_user_stops_their_existing_token_at_once_and_for_good(lab):
    token = lab.ok(token_for(lab, "tech"), 200)["token"]
    lab.ok(get_with(lab, "/batches", f"Bearer {token}"), 200)
    lab.ok(lab.patch("admin", "/users/tech", {"active": False}), 200)
    assert_problem(get_with(lab, "/batches", f"Bearer {token}"), 401, "unauthenticated")
    assert_problem(token_for(lab, "tech"), 401, "invalid_credentials")
    # reactivation lets the person sign in again, but a token issued before (perhaps leaked) stays dead
    lab.ok(lab.patch("admin", "/users/tech", {"active": True}), 200)
    assert_problem(get_with(lab, "/batches", f"Bearer {token}"), 401, "unauthenticated")
    fresh = lab.ok(token_for(lab, "tech"), 200)["token"]
    lab.ok(get_with(lab, "/batches", f"Bearer {fresh}"), 200)


def test_passwords_are_stored_as_argon2id_hashes(lab):
    rows = lab.sql("SELECT username, password_hash FROM users")
    assert {row.username for row in rows} >= {"admin", "tech", "clinic"}
    for row in rows:
        assert row.password_hash.startswith("$argon2id$")
        assert PASSWORD not in row.password_hash
    assert len({row.password_hash for row in rows}) == len(rows)  # salted: the same password, different hashes


# --- R-ACC-1: clinic scoping ------------------------------------------------------------------


def missing_din(din: str) -> str:
    """A well-formed DIN of the same facility and year that no batch has."""
    return din[:7] + "999999"


def batch_read_suffixes(app) -> list[str]:
    """Every GET route about one batch (``/batches/<din>...``), as registered, so new ones are covered."""
    prefix = "/api/v1/batches/<string:din>"
    return sorted(
        rule.rule.removeprefix(prefix)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(prefix) and "GET" in rule.methods and rule.arguments == {"din"}
    )


def test_r_acc_1_other_clinic_reads_answer_404_exactly_like_a_missing_batch(app, lab):
    din = lab.batch()
    suffixes = batch_read_suffixes(app)
    assert {"", "/events", "/readiness"} <= set(suffixes)
    for suffix in suffixes:
        assert lab.get("clinic_b", f"/batches/{din}{suffix}").status_code != 404, suffix  # same clinic, other user
        refused = assert_problem(lab.get("other", f"/batches/{din}{suffix}"), 404, "not_found")
        absent = assert_problem(lab.get("other", f"/batches/{missing_din(din)}{suffix}"), 404, "not_found")
        assert refused == absent, suffix  # nothing tells the other clinic that this DIN exists
    for suffix in ("", "/events", "/readiness"):
        lab.ok(lab.get("clinic_b", f"/batches/{din}{suffix}"), 200)


def test_r_acc_1_other_clinic_writes_answer_404_and_write_nothing(lab):
    din = lab.batch()
    seq = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["seq"]
    assert_problem(lab.harvest(din, by="other"), 404, "not_found")
    assert_problem(lab.post("other", f"/batches/{din}/deviations", {"description": "x"}), 404, "not_found")
    assert_problem(lab.handoff(din, by="other"), 404, "not_found")
    assert lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["seq"] == seq
    lab.ok(lab.harvest(din), 201)
    assert_problem(lab.step(din, "digestion", by="other"), 404, "not_found")


def test_r_acc_1_lists_show_a_clinic_user_only_their_own_batches_and_patients(lab):
    own = lab.batch(mrn="MRN-1")
    other_patient = lab.patient("MRN-9", by="other")
    theirs = lab.ok(lab.post("other", "/batches", {"patient_id": other_patient["id"], "tissue_source": "adipose"}))
    listed = lab.ok(lab.get("clinic", "/batches"), 200)
    assert [b["din"] for b in listed["items"]] == [own]
    assert len(listed["items"]) == 1
    # filtering by another clinic's code does not widen the scope
    assert len(lab.ok(lab.get("clinic", "/batches", clinic="C2"), 200)["items"]) == 0
    assert [b["din"] for b in lab.ok(lab.get("other", "/batches"), 200)["items"]] == [theirs["din"]]
    assert {b["din"] for b in lab.ok(lab.get("tech", "/batches"), 200)["items"]} == {own, theirs["din"]}
    assert [p["mrn"] for p in lab.ok(lab.get("clinic", "/patients"), 200)["items"]] == ["MRN-1"]
    assert [p["mrn"] for p in lab.ok(lab.get("clinic", "/patients", clinic="C2"), 200)["items"]] == ["MRN-1"]
    assert [p["mrn"] for p in lab.ok(lab.get("other", "/patients"), 200)["items"]] == ["MRN-9"]


def test_r_acc_1_clinic_user_cannot_register_a_batch_for_another_clinics_patient(lab):
    theirs = lab.patient("MRN-9", by="other")
    response = lab.post("clinic", "/batches", {"patient_id": theirs["id"], "tissue_source": "adipose"})
    assert_problem(response, 422, "validation_error")
    assert len(lab.ok(lab.get("tech", "/batches"), 200)["items"]) == 0


# --- R-ACC-2: admins manage reference data, have no batch authority --------------------------


def test_r_acc_2_admin_cannot_register_log_steps_hand_off_or_open_deviations(lab):
    patient = lab.patient("MRN-2")
    assert_problem(
        lab.post("admin", "/batches", {"patient_id": patient["id"], "tissue_source": "adipose"}), 403, "forbidden"
    )
    assert_problem(lab.post("admin", "/patients", LAB_PATIENT), 403, "forbidden")
    din = lab.at_lab()
    seq = lab.ok(lab.get("admin", f"/batches/{din}"), 200)["seq"]  # admins may read, for audits
    assert_problem(lab.step(din, "digestion", by="admin"), 403, "forbidden")
    assert_problem(lab.handoff(din, by="admin", to="qa"), 403, "forbidden")
    assert_problem(lab.post("admin", f"/batches/{din}/deviations", {"description": "x"}), 403, "forbidden")
    assert lab.ok(lab.get("admin", f"/batches/{din}"), 200)["seq"] == seq


def test_r_acc_2_admin_manages_reference_data(lab):
    lab.ok(lab.post("admin", "/clinics", {"code": "C3", "name": "Third"}))
    lab.ok(
        lab.post(
            "admin",
            "/users",
            {"username": "new-tech", "full_name": "N T", "role": "technician", "password": "a-long-password"},
        )
    )
    lab.ok(lab.patch("admin", "/users/new-tech", {"role": "qa"}), 200)
    lab.ok(lab.get("admin", "/users"), 200)
    lab.ok(lab.get("admin", "/clinics"), 200)


ADMIN_ENDPOINTS = [
    ("get", "/clinics", None),
    ("post", "/clinics", {"code": "C3", "name": "Third"}),
    ("get", "/users", None),
    ("post", "/users", {"username": "sneaky", "full_name": "S", "role": "admin", "password": "a-long-password"}),
    ("patch", "/users/tech2", {"role": "qa"}),
    ("patch", "/users/admin", {"active": False}),
    (
        "post",
        "/reagent-lots",
        {"kind": "collagenase", "name": "n", "lot_number": "X", "expires_on": "2099-01-01", "status": "released"},
    ),
    ("patch", "/reagent-lots/3", {"status": "released"}),
    (
        "post",
        "/equipment",
        {"code": "E-9", "kind": "incubator", "name": "n", "calibration_due_on": "2099-01-01", "status": "in_service"},
    ),
    ("patch", "/equipment/CEN-OUT", {"status": "in_service"}),
]


@pytest.mark.parametrize("username", ["tech", "qa", "clinic"])
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ENDPOINTS)
def test_r_acc_2_non_admins_get_403_on_admin_endpoints_and_change_nothing(lab, username, method, path, body):
    admin_events = lab.sql("SELECT count(*) FROM admin_events")[0][0]
    response = lab.get(username, path) if method == "get" else getattr(lab, method)(username, path, body)
    assert_problem(response, 403, "forbidden")
    assert lab.sql("SELECT count(*) FROM admin_events")[0][0] == admin_events


@pytest.mark.parametrize(("username", "status"), [("tech", 200), ("qa", 200), ("admin", 200), ("clinic", 403)])
def test_r_acc_2_materials_are_read_by_lab_staff_only(lab, username, status):
    for path in ("/reagent-lots", "/equipment"):
        assert lab.get(username, path).status_code == status


# --- R-ACC-3: who logs which step -------------------------------------------------------------


def test_r_acc_3_technicians_log_lab_steps(lab):
    din = lab.at_lab()
    event = lab.ok(lab.step(din, "digestion", by="tech2"))  # any lab user while the lab holds it
    assert (event["type"], event["actor"]["username"]) == ("digestion", "tech2")


@pytest.mark.parametrize("username", ["clinic", "qa"])
def test_r_acc_3_clinic_and_qa_users_cannot_log_lab_steps(lab, username):
    din = lab.at_lab()
    before = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert_problem(lab.step(din, "digestion", by=username), 403, "forbidden")
    after = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert (after["seq"], after["status"]) == (before["seq"], before["status"])


@pytest.mark.parametrize("username", ["tech", "qa"])
def test_r_acc_3_lab_users_cannot_harvest(lab, username):
    din = lab.batch()
    assert_problem(lab.harvest(din, by=username), 403, "forbidden")
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert (batch["status"], batch["seq"]) == ("registered", 1)


def test_r_acc_3_qa_cannot_register_patients_or_batches(lab):
    patient = lab.patient()
    assert_problem(
        lab.post("qa", "/batches", {"patient_id": patient["id"], "tissue_source": "adipose"}), 403, "forbidden"
    )
    assert_problem(lab.post("qa", "/patients", LAB_PATIENT), 403, "forbidden")


def test_r_acc_3_technician_registers_for_a_named_clinic(lab):
    din = lab.batch(by="tech")
    assert lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["clinic"] == "C1"
