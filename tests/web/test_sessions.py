"""Signing in and out of the web pages: cookie flags, server-side end of sessions, CSRF (requirements §7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from labtrack.models import ApiToken
from tests.web.support import csrf_token

HOMES = {"tech": "/bench", "qa": "/qa", "clinic": "/clinic", "admin": "/admin"}


def _login(client, username: str, password: str = "correct-horse-battery", base_url: str | None = None, **extra):
    page = client.get("/login", base_url=base_url)
    form = {"username": username, "password": password, "csrf_token": csrf_token(page.text)} | extra
    # Over TLS, the CSRF check also wants the Referer of this site, which browsers send.
    headers = {"Referer": f"{base_url}/login"} if base_url else {}
    return client.post("/login", data=form, base_url=base_url, headers=headers)


@pytest.mark.parametrize(("username", "home"), HOMES.items())
def test_sign_in_leads_each_role_to_its_home(app, lab, username, home):
    client = app.test_client()
    response = _login(client, username)
    assert response.status_code == 303
    assert response.headers["Location"] == home
    assert client.get("/").headers["Location"] == home


def test_session_cookie_is_httponly_samesite_lax_and_secure_over_tls(app, lab):
    plain = _login(app.test_client(), "tech").headers["Set-Cookie"]
    assert "HttpOnly" in plain
    assert "SameSite=Lax" in plain
    assert "Secure" not in plain
    over_tls = _login(app.test_client(), "tech", base_url="https://lab.example").headers["Set-Cookie"]
    assert "Secure" in over_tls
    assert "HttpOnly" in over_tls


def test_wrong_password_is_refused_beside_the_field_and_opens_no_session(app, lab):
    client = app.test_client()
    response = _login(client, "tech", password="not-the-password")
    assert response.status_code == 401
    assert 'class="field-error"' in response.text
    assert "Unknown username, wrong password, or deactivated account." in response.text
    assert client.get("/bench").status_code == 302


def test_pages_need_a_session(app, lab):
    response = app.test_client().get("/bench")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_sign_in_follows_next_only_on_this_site(app, lab):
    assert _login(app.test_client(), "tech", next="/batches/A999926000001").headers["Location"] == (
        "/batches/A999926000001"
    )
    assert _login(app.test_client(), "tech", next="//evil.example/").headers["Location"] == "/bench"
    assert _login(app.test_client(), "tech", next="https://evil.example/").headers["Location"] == "/bench"


def test_sign_out_ends_the_session_server_side_so_a_copied_cookie_stops_working(app, lab, sign_in):
    tech = sign_in("tech")
    copied = tech.client.get_cookie("labtrack_session").value
    page = tech.get("/bench")
    assert tech.client.post("/logout", data={"csrf_token": csrf_token(page.text)}).status_code == 303
    thief = app.test_client()
    thief.set_cookie("labtrack_session", copied)
    response = thief.get("/bench")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert lab.sql("SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL")[0][0] == 1


def test_deactivated_user_is_signed_out_at_once(lab, sign_in):
    tech = sign_in("tech")
    assert tech.get("/bench").status_code == 200
    lab.ok(lab.patch("admin", "/users/tech", {"active": False}), 200)
    response = tech.get("/bench", follow_redirects=True)
    assert response.request.path == "/login"
    assert "account deactivated" in response.text


def test_session_ends_after_inactivity(lab, sign_in):
    tech = sign_in("tech")
    _set_expiry(lab, datetime(2000, 1, 1, tzinfo=UTC))
    response = tech.get("/bench", follow_redirects=True)
    assert response.request.path == "/login"
    assert "inactive too long" in response.text


def test_activity_extends_the_session_up_to_the_idle_timeout(app, lab, sign_in):
    tech = sign_in("tech")
    _set_expiry(lab, datetime.now(UTC) + timedelta(minutes=2))
    with tech.client.session_transaction() as session:
        session["refreshed"] = 0  # last extended long ago
    assert tech.get("/bench").status_code == 200
    idle = timedelta(minutes=app.config["LABTRACK_SESSION_IDLE_MINUTES"])
    with lab.db.reader() as session:
        expires = session.execute(select(ApiToken.expires_at)).scalar_one()
    assert expires > datetime.now(UTC) + idle - timedelta(minutes=1)


def _set_expiry(lab, moment: datetime) -> None:
    lab.db.write(lambda session: session.execute(update(ApiToken).values(expires_at=moment)))


def test_post_without_csrf_token_is_refused_and_records_nothing(lab, sign_in):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    tech = sign_in("tech")
    (seq,) = lab.sql("SELECT seq FROM batches")[0]
    form = {"action": "receipt", "scanned_din": din, "seal_id": "SEAL-1", "temperature_c": "6", "condition": "intact"}
    response = tech.client.post(f"/batches/{din}", data=form)
    assert response.status_code == 400
    assert "security token" in response.text
    assert "Traceback" not in response.text
    assert lab.sql("SELECT seq, status FROM batches")[0] == (seq, "in_transit")
    forged = tech.client.post(f"/batches/{din}", data=form | {"csrf_token": "forged"})
    assert forged.status_code == 400
    assert tech.submit(f"/batches/{din}", form).status_code == 303  # the same form with the page's token passes


def test_sign_in_form_needs_its_csrf_token(app, lab):
    response = app.test_client().post("/login", data={"username": "tech", "password": "correct-horse-battery"})
    assert response.status_code == 400
    assert lab.sql("SELECT count(*) FROM api_tokens")[0][0] == 0
