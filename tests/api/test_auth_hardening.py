"""Authentication hardening (issue 8): sign-in throttling, lockout on wrong sign-in passwords
(R-SIG-1), the append-only record of authentication events, and security headers.

Throttling runs on the real Flask-Limiter: in memory on SQLite runs, in Redis when
CELERY_BROKER_URL is Redis (the PostgreSQL runs). Each test app counts under a key
prefix of its own (tests/conftest.py), so tests never share counts.
"""

from __future__ import annotations

import os
import re

import pytest
import redis
from sqlalchemy.exc import DBAPIError

from labtrack.security import LIMITER
from tests.conftest import make_app
from tests.helpers import PASSWORD, Lab
from tests.web.support import csrf_token

PROBLEM_JSON = "application/problem+json"
REDIS_BROKER = os.environ.get("CELERY_BROKER_URL", "").startswith("redis://")


def sign_in(client, username: str, password: str = PASSWORD, address: str = "127.0.0.1", agent: str = "pytest"):
    return client.post(
        "/api/v1/auth/token",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
        headers={"User-Agent": agent},
    )


def web_sign_in(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_token(page.text)})


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert (body["code"], body["status"]) == (code, status)
    return body


def assert_throttled(response) -> int:
    body = assert_problem(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body["retry_after"] == retry_after
    return retry_after


def events(lab, username: str | None = None) -> list[tuple]:
    where = "WHERE username = :u" if username else ""
    return lab.sql(
        f"SELECT event, outcome, reason, username, user_id, channel, address, user_agent FROM auth_events {where} "
        "ORDER BY id",
        u=username,
    )


def user_id(lab, username: str) -> int:
    return lab.sql("SELECT id FROM users WHERE username = :u", u=username)[0][0]


# --- throttling -------------------------------------------------------------------------------


def test_limiter_counts_in_redis_when_the_broker_is_redis_else_in_memory(app):
    storage = app.extensions[LIMITER].storage
    assert type(storage).__name__ == ("RedisStorage" if REDIS_BROKER else "MemoryStorage")


def test_sign_ins_per_username_beyond_the_limit_are_429_rate_limited_with_retry_after(app, lab):
    app.config["LABTRACK_LOGIN_LIMIT_PER_USERNAME"] = "3/minute"
    for _ in range(2):
        assert_problem(sign_in(lab.client, "tech", "wrong-password"), 401, "invalid_credentials")
    assert sign_in(lab.client, "tech").status_code == 200
    recorded = len(events(lab))
    assert_throttled(sign_in(lab.client, "tech"))  # even the right password: the limit comes first
    assert_throttled(sign_in(lab.client, "TECH", address="10.9.9.9"))  # any case, from anywhere
    assert len(events(lab)) == recorded  # a throttled attempt writes nothing
    assert sign_in(lab.client, "tech2").status_code == 200  # other usernames are not held up


def test_sign_ins_per_address_beyond_the_limit_are_429_whatever_the_username(app, lab):
    app.config["LABTRACK_LOGIN_LIMIT_PER_ADDRESS"] = "4/minute"
    for username in ("tech", "tech2", "qa", "nobody"):
        sign_in(lab.client, username, address="10.0.0.1")
    assert_throttled(sign_in(lab.client, "qa2", address="10.0.0.1"))
    assert sign_in(lab.client, "qa2", address="10.0.0.2").status_code == 200


@pytest.mark.parametrize("hops", [0, 1])
def test_behind_a_trusted_proxy_the_forwarded_client_is_counted_and_recorded_else_the_peer(
    database_url, tmp_path, hops
):
    """LABTRACK_PROXY_HOPS=1 (nginx in front): each client behind the proxy has its own budget. With no
    proxy configured, X-Forwarded-For is the client's own claim and is ignored: it cannot dodge the limit."""
    app = make_app(database_url, tmp_path, LABTRACK_PROXY_HOPS=hops, LABTRACK_LOGIN_LIMIT_PER_ADDRESS="2/minute")
    try:
        lab = Lab.build(app, app.test_client())

        def through_proxy(client_address: str):
            return lab.client.post(
                "/api/v1/auth/token",
                json={"username": "qa", "password": "wrong-password"},
                environ_base={"REMOTE_ADDR": "10.9.9.9"},  # the proxy
                headers={"X-Forwarded-For": client_address},
            )

        assert [through_proxy("192.0.2.1").status_code for _ in range(2)] == [401, 401]
        second_client = through_proxy("192.0.2.2")
        if hops:
            assert second_client.status_code == 401  # a budget of its own
            assert_throttled(through_proxy("192.0.2.1"))
        else:
            assert_throttled(second_client)  # one budget: the proxy's address
        recorded = {row[6] for row in events(lab, "qa") if row[0] == "sign_in"}
        assert recorded == ({"192.0.2.1", "192.0.2.2"} if hops else {"10.9.9.9"})
    finally:
        app.extensions["labtrack.db"].dispose()


def test_the_web_form_and_the_api_share_one_budget_and_the_form_says_how_long_to_wait(app, lab):
    app.config["LABTRACK_LOGIN_LIMIT_PER_USERNAME"] = "2/minute"
    assert sign_in(lab.client, "qa").status_code == 200
    browser = app.test_client()
    assert web_sign_in(browser, "qa").status_code == 303
    refused = web_sign_in(browser, "qa")
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert re.search(r"Too many sign-in attempts \(2 per 1 minute\); try again in \d+ seconds", refused.text)
    assert browser.get("/login").status_code == 200  # only posting the form is counted


def test_each_app_keeps_its_own_limiter_so_a_second_app_does_not_reset_the_first(app, lab, tmp_path_factory):
    """Flask-Limiter keeps its storage on the Limiter: one shared Limiter would count in the newest app's."""
    app.config["LABTRACK_LOGIN_LIMIT_PER_USERNAME"] = "2/minute"
    sign_in(lab.client, "tech")
    sign_in(lab.client, "tech")
    directory = tmp_path_factory.mktemp("second-app")
    second = make_app(f"sqlite:///{directory / 'unused.sqlite'}", directory)
    try:
        assert second.extensions[LIMITER] is not app.extensions[LIMITER]
        assert_throttled(sign_in(lab.client, "tech"))
    finally:
        second.extensions["labtrack.db"].dispose()


def test_sign_in_goes_on_when_the_limiter_storage_is_unreachable(monkeypatch, database_url, tmp_path):
    monkeypatch.setenv("LABTRACK_RATELIMIT_STORAGE_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    app = make_app(database_url, tmp_path)
    try:
        lab = Lab.build(app, app.test_client())
        app.config["LABTRACK_LOGIN_LIMIT_PER_USERNAME"] = "2/minute"
        assert sign_in(lab.client, "tech").status_code == 200
        assert sign_in(lab.client, "tech").status_code == 200
        assert_throttled(sign_in(lab.client, "tech"))  # counted in memory meanwhile
    finally:
        app.extensions["labtrack.db"].dispose()


@pytest.mark.skipif(not REDIS_BROKER, reason="needs CELERY_BROKER_URL=redis://... (the PostgreSQL runs)")
def test_counts_live_in_redis_under_the_apps_key_prefix(app, lab):
    assert sign_in(lab.client, "tech").status_code == 200
    prefix = app.config["LABTRACK_RATELIMIT_KEY_PREFIX"]
    connection = redis.Redis.from_url(app.config["LABTRACK_RATELIMIT_STORAGE_URL"])
    keys = [key.decode() for key in connection.scan_iter(match=f"*{prefix}*")]
    assert any("sign-in-username" in key and "tech" in key for key in keys), keys
    assert any("sign-in-address" in key and "127.0.0.1" in key for key in keys), keys


def test_openapi_documents_the_sign_in_refusals(client):
    responses = client.get("/api/openapi.json").get_json()["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert {"401", "423", "429"} <= set(responses)
    assert "rate_limited" in responses["429"]["description"]
    assert "Retry-After" in responses["429"]["headers"]


# --- R-SIG-1 lockout on sign-in -----------------------------------------------------------------


def test_r_sig_1_five_wrong_sign_in_passwords_in_15_minutes_lock_the_account_until_an_admin_unlocks(lab):
    for _ in range(4):
        assert_problem(sign_in(lab.client, "tech", "wrong-password"), 401, "invalid_credentials")
    assert_problem(sign_in(lab.client, "tech", "wrong-password"), 423, "account_locked")
    assert_problem(sign_in(lab.client, "tech"), 423, "account_locked")  # the right password too
    assert lab.sql("SELECT locked_at IS NOT NULL FROM users WHERE username = 'tech'") == [(True,)]
    assert lab.sql("SELECT type FROM admin_events WHERE type = 'user_locked'") == [("user_locked",)]
    assert [e[:3] for e in events(lab, "tech")] == [("sign_in", "failure", "wrong_password")] * 5 + [
        ("lockout", "failure", "password"),
        ("sign_in", "failure", "account_locked"),
    ]
    lab.ok(lab.patch("admin", "/users/tech", {"unlock": True}), 200)
    assert sign_in(lab.client, "tech").status_code == 200
    assert_problem(sign_in(lab.client, "tech", "wrong-password"), 401, "invalid_credentials")  # a fresh count


def test_r_sig_1_wrong_passwords_at_sign_in_and_at_signing_count_together(lab):
    din = lab.processed()
    result = lab.ok(lab.qc(din, "viability_pct", 85))
    for _ in range(3):
        assert_problem(lab.verify(din, result["id"], password="wrong-password"), 401, "signature_invalid")
    assert_problem(sign_in(lab.client, "tech2", "wrong-password"), 401, "invalid_credentials")
    assert_problem(sign_in(lab.client, "tech2", "wrong-password"), 423, "account_locked")
    assert_problem(lab.verify(din, result["id"]), 423, "account_locked")


def test_r_sig_1_a_signature_lockout_is_recorded_as_an_auth_event(lab):
    din = lab.processed()
    result = lab.ok(lab.qc(din, "viability_pct", 85))
    for _ in range(5):
        lab.verify(din, result["id"], password="wrong-password")
    assert events(lab, "tech2")[-1][:6] == (
        "lockout",
        "failure",
        "password",
        "tech2",
        user_id(lab, "tech2"),
        "signature",
    )


def test_r_sig_1_unknown_usernames_and_deactivated_accounts_never_lock(lab):
    lab.ok(lab.patch("admin", "/users/clinic_b", {"active": False}), 200)
    for _ in range(6):
        assert_problem(sign_in(lab.client, "nobody", "wrong-password"), 401, "invalid_credentials")
        assert_problem(sign_in(lab.client, "clinic_b", "wrong-password"), 401, "invalid_credentials")
    assert lab.sql("SELECT count(*) FROM users WHERE locked_at IS NOT NULL") == [(0,)]
    assert {e[2] for e in events(lab, "nobody")} == {"unknown_user"}
    assert {e[4] for e in events(lab, "nobody")} == {None}
    assert_problem(sign_in(lab.client, "clinic_b"), 401, "invalid_credentials")
    assert events(lab, "clinic_b")[-1][2] == "deactivated"


# --- the record of authentication events --------------------------------------------------------


def test_sign_in_failure_and_sign_out_are_recorded_with_address_agent_and_server_time(lab):
    assert_problem(sign_in(lab.client, "qa", "wrong-password", "10.1.2.3", "Bench tablet"), 401, "invalid_credentials")
    token = sign_in(lab.client, "qa", address="10.1.2.3", agent="Bench tablet").get_json()["token"]
    lab.client.post("/api/v1/auth/revoke", headers={"Authorization": f"Bearer {token}", "User-Agent": "Bench tablet"})
    qa = user_id(lab, "qa")
    assert events(lab, "qa") == [
        ("sign_in", "failure", "wrong_password", "qa", qa, "api", "10.1.2.3", "Bench tablet"),
        ("sign_in", "success", None, "qa", qa, "api", "10.1.2.3", "Bench tablet"),
        ("sign_out", "success", None, "qa", qa, "api", "127.0.0.1", "Bench tablet"),
    ]
    times = [row[0] for row in lab.sql("SELECT at FROM auth_events WHERE username = 'qa' ORDER BY id")]
    assert times == sorted(times)


def test_web_sign_in_and_sign_out_are_recorded(app, lab):
    browser = app.test_client()
    assert web_sign_in(browser, "clinic").status_code == 303
    page = browser.get("/")
    browser.post("/logout", data={"csrf_token": csrf_token(browser.get(page.location).text)})
    assert [(e[0], e[1], e[5]) for e in events(lab, "clinic")] == [
        ("sign_in", "success", "web"),
        ("sign_out", "success", "web"),
    ]


def test_r_sig_1_the_web_form_says_the_account_is_locked(app, lab):
    browser = app.test_client()
    for _ in range(4):
        assert web_sign_in(browser, "clinic", "wrong-password").status_code == 401
    locked = web_sign_in(browser, "clinic", "wrong-password")
    assert locked.status_code == 423
    assert "the account is locked until an admin unlocks it" in locked.text
    assert web_sign_in(browser, "clinic").status_code == 423  # the right password, too late


def test_r_aud_2_auth_events_are_append_only(lab):
    sign_in(lab.client, "tech")
    with pytest.raises(DBAPIError, match="append-only"):
        lab.sql("UPDATE auth_events SET outcome = 'failure'")
    with pytest.raises(DBAPIError, match="append-only"):
        lab.sql("DELETE FROM auth_events")


def test_admins_read_the_auth_events_newest_first(lab):
    sign_in(lab.client, "tech", "wrong-password")
    lab.headers("admin")
    listed = lab.ok(lab.get("admin", "/auth-events"), 200)
    assert [(e["event"], e["outcome"], e["username"]) for e in listed[:2]] == [
        ("sign_in", "success", "admin"),
        ("sign_in", "failure", "tech"),
    ]
    assert listed[1]["at"].endswith("Z")
    query = {"username": "tech", "limit": 5}
    only = lab.ok(lab.client.get("/api/v1/auth-events", query_string=query, headers=lab.headers("admin")), 200)
    assert [e["reason"] for e in only] == ["wrong_password"]


@pytest.mark.parametrize("username", ["tech", "qa", "clinic"])
def test_only_admins_read_the_auth_events(lab, username):
    assert_problem(lab.get(username, "/auth-events"), 403, "forbidden")


def test_reading_the_auth_events_needs_a_token(client):
    assert_problem(client.get("/api/v1/auth-events"), 401, "unauthenticated")


def test_revoking_needs_a_token_and_records_nothing(lab):
    assert_problem(lab.client.post("/api/v1/auth/revoke"), 401, "unauthenticated")
    assert events(lab) == []


# --- security headers -------------------------------------------------------------------------


STRICT = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"


def fetch(lab, kind: str):
    """One response of each kind the app gives."""
    auth = lab.headers("tech")
    return {
        "api": lambda: lab.client.get("/api/v1/batches", headers=auth),
        "token": lambda: sign_in(lab.client, "qa"),
        "api_401": lambda: lab.client.get("/api/v1/batches"),
        "api_404": lambda: lab.client.get("/api/v1/no-such-thing", headers=auth),
        "api_405": lambda: lab.client.delete("/api/v1/auth/token"),
        "api_413": lambda: lab.client.post("/api/v1/patients", data=b"x" * (1024 * 1024 + 1), headers=auth),
        "openapi": lambda: lab.client.get("/api/openapi.json"),
        "login_page": lambda: lab.client.get("/login"),
        "page_redirect": lambda: lab.client.get("/bench"),
        "page_404": lambda: lab.client.get("/no-such-page"),
    }[kind]()


@pytest.mark.parametrize(
    "kind",
    ["api", "token", "api_401", "api_404", "api_405", "api_413", "openapi", "login_page", "page_redirect", "page_404"],
)
def test_every_response_carries_the_security_headers_and_no_store(lab, kind):
    response = fetch(lab, kind)
    assert response.headers["Content-Security-Policy"] == STRICT
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/assets/app.css", "/assets/app.js", "/api/docs/static/swagger-ui-bundle.js"])
def test_static_files_carry_the_security_headers_and_stay_cacheable(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == STRICT
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in response.headers.get("Cache-Control", "")


def test_only_the_swagger_ui_page_may_run_its_inline_script(client):
    response = client.get("/api/docs")
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith(STRICT)
    assert "script-src 'self' 'unsafe-inline'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
