"""Reference data managed by admins (R-ACC-2), each change audited on the admin chain (R-AUD-1)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from tests.helpers import PASSWORD

NEW_PASSWORD = "a-long-enough-password"


def admin_events(lab) -> list[dict]:
    rows = lab.sql("SELECT seq, type, actor, data FROM admin_events ORDER BY seq")
    return [
        {
            "seq": r.seq,
            "type": r.type,
            "actor": r.actor,
            "data": r.data if isinstance(r.data, dict) else json.loads(r.data),
        }
        for r in rows
    ]


def new_admin_events(lab, since: int) -> list[dict]:
    return [e for e in admin_events(lab) if e["seq"] > since]


def head(lab) -> int:
    return lab.sql("SELECT coalesce(max(seq), 0) FROM admin_events")[0][0]


def user_body(username: str, role: str = "technician", clinic: str | None = None, **extra) -> dict:
    body = {"username": username, "full_name": f"{username.title()} Person", "role": role, "password": NEW_PASSWORD}
    if clinic is not None:
        body["clinic"] = clinic
    return body | extra


def login(lab, username: str, password: str = NEW_PASSWORD):
    return lab.client.post("/api/v1/auth/token", json={"username": username, "password": password})


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_json())
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code
    return body


# --- clinics ----------------------------------------------------------------------------------


def test_r_acc_2_admin_creates_and_lists_clinics_without_echoing_webhook_secrets(lab):
    body = {"code": "c3", "name": "Third Clinic", "webhook_url": "https://c3.example/hook", "webhook_secret": "s" * 32}
    clinic = lab.ok(lab.post("admin", "/clinics", body))
    assert (clinic["code"], clinic["name"], clinic["webhook_url"]) == ("C3", "Third Clinic", "https://c3.example/hook")
    assert clinic["webhook_secret_set"] is True
    listed = lab.ok(lab.get("admin", "/clinics"), 200)
    assert [c["code"] for c in listed] == ["C1", "C2", "C3"]
    assert "s" * 32 not in json.dumps(listed)


def test_r_acc_2_duplicate_clinic_code_is_409_conflict(lab):
    problem(lab.post("admin", "/clinics", {"code": "c1", "name": "Again"}), 409, "conflict")
    assert len(lab.ok(lab.get("admin", "/clinics"), 200)) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"code": "C 3", "name": "x"},
        {"code": "C3"},
        {"code": "C3", "name": ""},
        {"code": "C3", "name": "x", "webhook_url": "ftp://x"},
    ],
)
def test_r_acc_2_invalid_clinic_is_422(lab, body):
    problem(lab.post("admin", "/clinics", body), 422, "validation_error")


# --- users ------------------------------------------------------------------------------------


def test_r_acc_2_admin_creates_lab_and_clinic_users_who_can_sign_in(lab):
    tech = lab.ok(lab.post("admin", "/users", user_body("nina")))
    assert (tech["role"], tech["clinic"], tech["active"], tech["locked"]) == ("technician", None, True, False)
    assert "password" not in tech
    nurse = lab.ok(lab.post("admin", "/users", user_body("nurse", "clinic", "C2")))
    assert (nurse["role"], nurse["clinic"]) == ("clinic", "C2")
    assert lab.ok(login(lab, "nurse"), 200)["user"]["clinic"] == "C2"
    assert {"nina", "nurse"} <= {u["username"] for u in lab.ok(lab.get("admin", "/users"), 200)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (user_body("nurse", "clinic"), "clinic"),  # a clinic user needs a clinic
        (user_body("nina", "technician", "C1"), "clinic"),  # lab users belong to none
        (user_body("nurse", "clinic", "NOPE"), "clinic"),
        (user_body("nina", password="short"), "password"),
        (user_body("nina", role="superuser"), "role"),
        (user_body("Nina Capital"), "username"),
    ],
)
def test_r_acc_2_invalid_user_is_422_naming_the_field(lab, body, field):
    before = head(lab)
    assert field in problem(lab.post("admin", "/users", body), 422, "validation_error")["errors"]
    assert head(lab) == before
    assert body["username"] not in {u["username"] for u in lab.ok(lab.get("admin", "/users"), 200)}


def test_r_acc_2_duplicate_username_is_409_conflict(lab):
    problem(lab.post("admin", "/users", user_body("tech")), 409, "conflict")
    lab.ok(login(lab, "tech", PASSWORD), 200)  # the existing user is untouched


def test_r_acc_2_deactivated_user_is_kept_and_cannot_sign_in_until_reactivated(lab):
    assert lab.ok(lab.patch("admin", "/users/tech2", {"active": False}), 200)["active"] is False
    problem(login(lab, "tech2", PASSWORD), 401, "invalid_credentials")
    assert "tech2" in {u["username"] for u in lab.ok(lab.get("admin", "/users"), 200)}
    lab.ok(lab.patch("admin", "/users/tech2", {"active": True}), 200)
    lab.ok(login(lab, "tech2", PASSWORD), 200)


def test_r_acc_2_admin_cannot_deactivate_themselves(lab):
    problem(lab.patch("admin", "/users/admin", {"active": False}), 422, "validation_error")
    lab.ok(lab.get("admin", "/users"), 200)


def test_r_acc_2_role_change_takes_effect_on_the_users_next_request(lab):
    problem(lab.get("tech", "/audit/verify"), 403, "forbidden")
    assert lab.ok(lab.patch("admin", "/users/tech", {"role": "qa"}), 200)["role"] == "qa"
    lab.ok(lab.get("tech", "/audit/verify"), 200)


@pytest.mark.parametrize(("username", "role"), [("tech", "clinic"), ("clinic", "technician")])
def test_r_acc_2_clinic_and_lab_roles_cannot_be_swapped(lab, username, role):
    problem(lab.patch("admin", f"/users/{username}", {"role": role}), 422, "validation_error")


def test_r_acc_2_unknown_user_is_404(lab):
    problem(lab.patch("admin", "/users/nobody", {"active": False}), 404, "not_found")


def test_r_acc_2_unlock_lets_a_locked_user_sign_in_again(lab):
    lab.get("qa2", "/batches")  # a token from before the lock
    lab.sql("UPDATE users SET locked_at = CURRENT_TIMESTAMP WHERE username = 'qa2'")
    problem(login(lab, "qa2", PASSWORD), 423, "account_locked")
    problem(lab.get("qa2", "/batches"), 423, "account_locked")  # the existing token stops too, saying why
    users = {u["username"]: u for u in lab.ok(lab.get("admin", "/users"), 200)}
    assert users["qa2"]["locked"] is True
    assert lab.ok(lab.patch("admin", "/users/qa2", {"unlock": True}), 200)["locked"] is False
    lab.ok(login(lab, "qa2", PASSWORD), 200)
    lab.ok(lab.get("qa2", "/batches"), 200)


# --- reagent lots and equipment ---------------------------------------------------------------


def lot_body(**extra) -> dict:
    expires = (date.today() + timedelta(days=30)).isoformat()
    return {
        "kind": "collagenase",
        "name": "Collagenase NB 6",
        "lot_number": "CG-77",
        "expires_on": expires,
        "status": "quarantined",
    } | extra


def test_r_acc_2_admin_registers_a_lot_and_changes_its_status(lab):
    lot = lab.ok(lab.post("admin", "/reagent-lots", lot_body()))
    assert isinstance(lot["id"], int)
    assert (lot["lot_number"], lot["status"]) == ("CG-77", "quarantined")
    assert lab.ok(lab.patch("admin", f"/reagent-lots/{lot['id']}", {"status": "released"}), 200)["status"] == "released"
    listed = {item["id"]: item for item in lab.ok(lab.get("tech", "/reagent-lots"), 200)}
    assert listed[lot["id"]]["status"] == "released"
    assert listed[lab.lot("quarantined")]["status"] == "quarantined"


def test_r_acc_2_lot_refusals(lab):
    problem(lab.post("admin", "/reagent-lots", lot_body(lot_number="CG-1")), 409, "conflict")
    problem(lab.post("admin", "/reagent-lots", lot_body(status="approved")), 422, "validation_error")
    problem(lab.post("admin", "/reagent-lots", lot_body(expires_on="soon")), 422, "validation_error")
    problem(lab.patch("admin", "/reagent-lots/9999", {"status": "released"}), 404, "not_found")
    # identity fields are not editable: the lot number is what the label says
    problem(
        lab.patch("admin", f"/reagent-lots/{lab.lot('collagenase')}", {"lot_number": "CG-2"}), 422, "validation_error"
    )


def test_r_acc_2_admin_registers_equipment_and_records_calibration(lab):
    due = (date.today() + timedelta(days=10)).isoformat()
    body = {
        "code": "INC-2",
        "kind": "incubator",
        "name": "Second incubator",
        "calibration_due_on": due,
        "status": "in_service",
    }
    assert lab.ok(lab.post("admin", "/equipment", body))["code"] == "INC-2"
    later = (date.today() + timedelta(days=365)).isoformat()
    updated = lab.ok(lab.patch("admin", "/equipment/CEN-DUE", {"calibration_due_on": later}), 200)
    assert updated["calibration_due_on"] == later
    assert lab.ok(lab.patch("admin", "/equipment/CEN-OUT", {"status": "retired"}), 200)["status"] == "retired"
    listed = {item["code"]: item for item in lab.ok(lab.get("qa", "/equipment"), 200)}
    assert (listed["INC-2"]["status"], listed["CEN-DUE"]["calibration_due_on"]) == ("in_service", later)
    problem(lab.post("admin", "/equipment", body), 409, "conflict")
    problem(lab.patch("admin", "/equipment/NOPE", {"status": "retired"}), 404, "not_found")
    problem(lab.patch("admin", "/equipment/INC-2", {"status": "broken"}), 422, "validation_error")


# --- specifications ---------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["clinic", "tech", "qa", "admin"])
def test_r_qc_1_default_specifications_are_version_1_of_each_tissue_source(lab, username):
    specs = {s["tissue_source"]: s for s in lab.ok(lab.get(username, "/specifications"), 200)}
    assert set(specs) == {"adipose", "bone_marrow"}
    for source, tnc_minimum in (("adipose", 1.0e7), ("bone_marrow", 1.0e8)):
        spec = specs[source]
        assert spec["version"] == 1
        body = spec["body"]
        assert body["stability_hours"] == 24
        assert body["transport_temperature_c"] == {"min": 2, "max": 25}
        tests = body["tests"]
        assert tests["viability_pct"]["min"] == 70
        assert tests["tnc_total"]["min"] == tnc_minimum
        assert tests["gram_stain"]["equals"] == "no_organisms_seen"
        assert tests["endotoxin_eu_per_ml"]["max_eu_per_kg"] == 5
        assert (tests["sterility_culture"]["release"], tests["sterility_culture"]["final"]) == ("pending", "no_growth")
        assert tests["cd34_pct"]["record_only"] is True


# --- the admin chain --------------------------------------------------------------------------


def test_r_aud_1_every_reference_change_appends_an_admin_event_with_old_and_new_values(lab):
    start = head(lab)
    lab.ok(lab.post("admin", "/clinics", {"code": "C3", "name": "Third"}))
    lab.ok(lab.post("admin", "/users", user_body("nina")))
    lab.ok(lab.patch("admin", "/users/nina", {"role": "qa"}), 200)
    lab.ok(lab.patch("admin", "/users/nina", {"active": False}), 200)
    lot = lab.ok(lab.post("admin", "/reagent-lots", lot_body()))
    lab.ok(lab.patch("admin", f"/reagent-lots/{lot['id']}", {"status": "released"}), 200)
    lab.ok(
        lab.post(
            "admin",
            "/equipment",
            {
                "code": "INC-2",
                "kind": "incubator",
                "name": "n",
                "calibration_due_on": "2099-01-01",
                "status": "in_service",
            },
        )
    )
    lab.ok(lab.patch("admin", "/equipment/INC-2", {"status": "out_of_service"}), 200)
    events = new_admin_events(lab, start)
    assert [e["type"] for e in events] == [
        "clinic_created",
        "user_created",
        "user_updated",
        "user_updated",
        "reagent_lot_created",
        "reagent_lot_updated",
        "equipment_created",
        "equipment_updated",
    ]
    assert [e["seq"] for e in events] == list(range(start + 1, start + 9))
    assert {e["actor"] for e in events} == {"admin"}
    created = events[1]["data"]
    assert (created["key"], created["old"], created["new"]["role"]) == ("nina", None, "technician")
    assert NEW_PASSWORD not in json.dumps(events)
    role_change, deactivation = events[2]["data"], events[3]["data"]
    assert (role_change["old"]["role"], role_change["new"]["role"]) == ("technician", "qa")
    assert (deactivation["old"]["active"], deactivation["new"]["active"]) == (True, False)
    lot_change = events[5]["data"]
    assert (lot_change["key"], lot_change["old"]["status"], lot_change["new"]["status"]) == (
        str(lot["id"]),
        "quarantined",
        "released",
    )
    equipment_change = events[7]["data"]
    assert (equipment_change["old"]["status"], equipment_change["new"]["status"]) == ("in_service", "out_of_service")
    report = lab.ok(lab.get("admin", "/audit/verify"), 200)
    assert report["ok"] is True, report["failures"]
    assert report["events_checked"] >= head(lab)


def test_r_aud_1_refused_and_unchanged_edits_append_nothing(lab):
    start = head(lab)
    lab.ok(lab.patch("admin", "/equipment/INC-1", {"status": "in_service"}), 200)  # already so
    lab.ok(lab.patch("admin", "/users/tech", {"active": True}), 200)
    problem(lab.post("admin", "/users", user_body("tech")), 409, "conflict")
    problem(lab.post("admin", "/clinics", {"code": "C1", "name": "dup"}), 409, "conflict")
    assert head(lab) == start
