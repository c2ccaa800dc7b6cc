"""Single sign-on pages (R-OPS-4): OpenID Connect with Authlib, on when ``LABTRACK_OIDC_ISSUER`` is set.

``/login/sso`` sends the browser to the identity provider with a fresh ``state`` and
``nonce`` (kept in the signed session cookie); ``/login/sso/callback`` takes the code
back, exchanges it, and lets Authlib validate the ID token (signature by the
provider's published keys, issuer, audience = our client id, expiry, nonce). A state
that does not match the session's (a replayed or forged callback) is refused before
anything is exchanged. The claims then go to ``labtrack.services.sso``, which decides
whether a LabTrack user may have a session. An SSO user without a signing password
sets one on the next page, while the provider's sign-in is seconds old.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, current_app, flash, redirect, render_template, request, session, url_for
from joserfc.errors import JoseError

from labtrack.db import database, read_session
from labtrack.domain.errors import DomainError
from labtrack.security import client
from labtrack.services import auth, sso
from labtrack.web import bp
from labtrack.web.auth import actor, home_url, safe_next
from labtrack.web.forms import NO_FAILURE, Failure

OIDC = "labtrack.oidc"
SSO_SESSION = "sso"
log = logging.getLogger(__name__)


def configure(app: Flask) -> None:
    """Register the provider when the issuer is configured; without it the SSO pages answer 404."""
    issuer = app.config.get("LABTRACK_OIDC_ISSUER")
    if not issuer:
        return
    oauth = OAuth(app)
    oauth.register(
        "labtrack",
        client_id=app.config["LABTRACK_OIDC_CLIENT_ID"],
        client_secret=app.config["LABTRACK_OIDC_CLIENT_SECRET"],
        server_metadata_url=f"{issuer.rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile"},
    )
    app.extensions[OIDC] = oauth.labtrack


def _provider():
    provider = current_app.extensions.get(OIDC)
    if provider is None:
        abort(404, description="Single sign-on is not configured on this LabTrack.")
    return provider


def _refuse(message: str):
    flash(message, "error")
    return redirect(url_for("web.login"), 303)


@bp.get("/login/sso")
def sso_start():
    provider = _provider()
    session["sso_next"] = safe_next(request.args.get("next"))
    return provider.authorize_redirect(url_for("web.sso_callback", _external=True))


@bp.get("/login/sso/callback")
def sso_callback():
    provider = _provider()
    who = client(sso.CHANNEL)
    try:
        token = provider.authorize_access_token()
    except (AuthlibBaseError, JoseError) as error:  # a replayed or forged state; an ID token failing validation
        reason = getattr(error, "error", None) or type(error).__name__
        log.warning("single sign-on refused: %s", reason)
        database().write(lambda s: sso.rejected(s, who, f"sso_{reason}"))
        return _refuse("Single sign-on failed: the identity provider's answer could not be verified. Try again.")
    claims = dict(token.get("userinfo") or {})
    lifetime = timedelta(minutes=current_app.config["LABTRACK_SESSION_IDLE_MINUTES"])
    claim = current_app.config["LABTRACK_OIDC_CLAIM"]
    try:
        session_token, _expires, user = database().write(lambda s: sso.sign_in(s, claims, claim, lifetime, who))
    except DomainError as error:
        return _refuse(error.detail)
    next_url = session.get("sso_next")
    session.clear()  # a fresh session at every sign-in: no fixation
    session.permanent = True
    session["token"] = session_token
    session["refreshed"] = time.time()
    session[SSO_SESSION] = time.time()
    if user.signing_password_hash is None:
        return redirect(url_for("web.signing_password"), 303)
    return redirect(next_url or home_url(auth.actor_of(user)), 303)


@bp.route("/signing-password", methods=["GET", "POST"])
def signing_password():
    """An SSO user's signing password, set once right after signing in with the provider."""
    if not session.get(SSO_SESSION):
        abort(403, description="This page is for sessions signed in with single sign-on.")
    failure = NO_FAILURE
    if request.method == "POST":
        password, confirmation = request.form.get("password", ""), request.form.get("confirmation", "")
        try:
            database().write(lambda s: sso.set_signing_password(s, actor(), password, confirmation))
        except DomainError as error:
            failure = Failure.of(error, "signing", field="password")
        else:
            flash("Your signing password is set. Use it whenever LabTrack asks for your signature.", "success")
            return redirect(home_url(actor()), 303)
    needed = sso.needs_signing_password(read_session(), actor())
    return render_template("signing_password.html", failure=failure, needed=needed), failure.status
