"""Single sign-on through a real browser and a real OpenID provider started here (R-OPS-4).

oidc-provider-mock serves discovery, keys, the authorization page and the token endpoint on
localhost; Chromium follows the whole redirect flow: LabTrack's button, the provider's page, the
callback, LabTrack's pages. The provider's users are matched to LabTrack's by the
``preferred_username`` claim. Refused: a user LabTrack does not have, a deactivated one, an ID
token issued to another application (a proxy in front of the provider swaps the client id, so
the provider itself signs a token whose audience is not LabTrack), an expired ID token, and a
callback replayed after its state was used. Local accounts keep signing in with their password.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import oidc_provider_mock
import pytest
from werkzeug.serving import make_server

from tests.conftest import make_app
from tests.helpers import GOOD_RESULTS, PASSWORD, Lab

CLIENT_ID, CLIENT_SECRET = "labtrack", "labtrack-client-secret"
OTHER_CLIENT = "another-app"
SIGNING_PASSWORD = "my-own-signing-words"
PROVIDER_NAME = "Riverside Health ID"
PROVIDER_USERS = [
    oidc_provider_mock.User(sub="tara", claims={"preferred_username": "tech2", "email": "tara@hospital.example"}),
    oidc_provider_mock.User(sub="stranger", claims={"preferred_username": "stranger"}),
    oidc_provider_mock.User(sub="quincy", claims={"preferred_username": "qa2"}),
]
UNVERIFIED = "Single sign-on failed: the identity provider's answer could not be verified."


class SwapAudience:
    """A proxy that asks the provider for tokens on behalf of another application: the provider then
    signs a real ID token whose audience is ``OTHER_CLIENT``, as a token taken from another app would be."""

    def __init__(self, app) -> None:
        self.app = app
        ours = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        self.credentials = (ours, base64.b64encode(f"{OTHER_CLIENT}:{CLIENT_SECRET}".encode()).decode())

    def __call__(self, environ, start_response):
        environ["QUERY_STRING"] = environ.get("QUERY_STRING", "").replace(
            f"client_id={CLIENT_ID}", f"client_id={OTHER_CLIENT}"
        )
        if "HTTP_AUTHORIZATION" in environ:
            environ["HTTP_AUTHORIZATION"] = environ["HTTP_AUTHORIZATION"].replace(*self.credentials)
        return self.app(environ, start_response)


@pytest.fixture
def provider(request) -> Iterator[str]:
    """The provider's issuer URL: honest, swapping the audience, or issuing expired ID tokens."""
    kind = getattr(request, "param", "honest")
    max_age = timedelta(minutes=-10) if kind == "expired" else timedelta(hours=1)
    wsgi = oidc_provider_mock.app(user_claims=PROVIDER_USERS, access_token_max_age=max_age)
    server = make_server("localhost", 0, SwapAudience(wsgi) if kind == "wrong audience" else wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def app(database_url: str, tmp_path: Path, provider: str):
    application = make_app(
        database_url,
        tmp_path,
        LABTRACK_OIDC_ISSUER=provider,
        LABTRACK_OIDC_CLIENT_ID=CLIENT_ID,
        LABTRACK_OIDC_CLIENT_SECRET=CLIENT_SECRET,
        LABTRACK_OIDC_NAME=PROVIDER_NAME,
    )
    yield application
    application.extensions["labtrack.db"].dispose()


def through_the_provider(person, sub: str) -> None:
    """LabTrack's button, then the provider's page, choosing the provider's user ``sub``."""
    person.goto("/login", "login")
    person.submit(person.page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}"), "provider")
    assert person.page.url.startswith("http://localhost:")
    person.submit(person.page.get_by_role("button", name=sub, exact=True), f"back-as-{sub}")


def sign_ins(lab: Lab, username: str) -> list[tuple[str, str | None]]:
    return [
        (row.outcome, row.reason)
        for row in lab.sql(
            "SELECT outcome, reason FROM auth_events WHERE username = :u AND channel = 'sso'", u=username
        )
    ]


def signed_out(person) -> bool:
    person.page.goto("/notifications")
    return "/login" in person.page.url


def test_r_ops_4_sso_signs_in_an_active_user_who_sets_a_signing_password_and_a_replay_is_refused(lab: Lab, people):
    din = lab.processed()
    entered = lab.ok(lab.qc(din, "viability_pct", GOOD_RESULTS["adipose"]["viability_pct"]))
    tara = people("tech2", sign_in=False)
    callbacks: list[str] = []
    tara.page.on("request", lambda r: callbacks.append(r.url) if "/login/sso/callback" in r.url else None)
    through_the_provider(tara, "tara")
    assert tara.page.url.endswith("/signing-password")
    assert tara.page.get_by_role("heading", name="Your signing password").is_visible()
    tara.page.get_by_label("Signing password").fill("too short")
    tara.page.get_by_label("The same again").fill("too short")
    tara.submit(tara.page.get_by_role("button", name="Set signing password"), "signing-password-too-short")
    assert "at least 10 characters" in tara.page.content()
    tara.page.get_by_label("Signing password").fill(SIGNING_PASSWORD)
    tara.page.get_by_label("The same again").fill(SIGNING_PASSWORD)
    tara.submit(tara.page.get_by_role("button", name="Set signing password"), "signed-in")
    assert tara.page.url.endswith("/bench")
    assert "Your signing password is set" in tara.page.content()
    assert sign_ins(lab, "tech2") == [("success", None)]

    # R-SIG with the signing password: the account password no longer signs, the signing password does
    wrong = lab.verify(din, entered["id"], by="tech2", password=PASSWORD)
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == "signature_invalid"
    lab.ok(lab.verify(din, entered["id"], by="tech2", password=SIGNING_PASSWORD), 200)

    # the callback replayed: its state was used up, so nothing is exchanged
    (callback,) = callbacks
    tara.goto(callback, "replayed-callback")
    assert UNVERIFIED in tara.page.content()
    assert sign_ins(lab, "-") == [("failure", "sso_mismatching_state")]
    # a later SSO sign-in goes straight in: the signing password is set
    again = people("tech2", sign_in=False)
    through_the_provider(again, "tara")
    assert again.page.url.endswith("/bench")


def test_r_ops_4_sso_refuses_users_labtrack_does_not_have_or_has_deactivated(lab: Lab, people):
    lab.sql("UPDATE users SET active = false WHERE username = 'qa2'")
    stranger = people("stranger", sign_in=False)
    through_the_provider(stranger, "stranger")
    assert "No LabTrack account matches your sign-in (preferred_username stranger)" in stranger.page.content()
    assert signed_out(stranger)
    assert sign_ins(lab, "stranger") == [("failure", "unknown_user")]

    quincy = people("qa2", sign_in=False)
    through_the_provider(quincy, "quincy")
    assert "Your LabTrack account is deactivated" in quincy.page.content()
    assert signed_out(quincy)
    assert sign_ins(lab, "qa2") == [("failure", "deactivated")]

    local = people("qa")  # local accounts sign in with their password as before
    assert local.page.url.endswith("/qa")


@pytest.mark.parametrize("provider", ["wrong audience", "expired"], indirect=True)
def test_r_ops_4_sso_refuses_an_id_token_for_another_app_or_expired(lab: Lab, people, provider: str):
    tara = people("tech2", sign_in=False)
    through_the_provider(tara, "tara")
    assert UNVERIFIED in tara.page.content()
    assert signed_out(tara)
    assert [outcome for outcome, _reason in sign_ins(lab, "-")] == ["failure"]
    assert lab.sql("SELECT count(*) FROM auth_events WHERE username = 'tech2' AND channel = 'sso'")[0][0] == 0


def test_r_ops_4_without_an_issuer_there_is_no_sso_button_and_no_sso_pages(database_url: str, tmp_path: Path):
    plain = make_app(database_url, tmp_path / "plain")
    try:
        client = plain.test_client()
        page = client.get("/login").text
        assert "Sign in with" not in page
        assert re.search(r'name="password"', page)
        assert client.get("/login/sso").status_code == 404
        assert client.get("/login/sso/callback?code=x&state=y").status_code == 404
    finally:
        plain.extensions["labtrack.db"].dispose()
