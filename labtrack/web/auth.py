"""Signing in and out, and the acting user of every page.

A web session is a token from the same ``auth`` service the API uses (Argon2
password check, stored only as a SHA-256 hash), issued with the inactivity
timeout as its lifetime and extended on use. The session cookie holds the token,
signed; the server decides: logging out revokes the token, so a copied cookie
stops working, and a deactivated user's next request is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_limiter import RateLimitExceeded

from labtrack.db import SAFE_METHODS, begin_authentication_read, database, read_session
from labtrack.domain.actors import Actor, Role
from labtrack.domain.errors import AccountLocked, DomainError, PasswordChangeRequired, Unauthenticated, ValidationFailed
from labtrack.extensions import csrf
from labtrack.security import client, refusal
from labtrack.services import auth, notifications
from labtrack.web import bp
from labtrack.web.forms import NO_FAILURE, Failure

PUBLIC_ENDPOINTS = frozenset({"web.login", "web.static", "web.favicon", "web.sso_start", "web.sso_callback"})
REFRESH_AFTER_S = 60  # extend the server-side expiry at most once a minute, not on every request
UNREAD_SHOWN = 100  # the badge counts up to this many unread notifications
HOMES = {Role.TECHNICIAN: "web.bench", Role.QA: "web.qa_queue", Role.CLINIC: "web.board", Role.ADMIN: "web.admin_home"}
NAVIGATION = {
    Role.TECHNICIAN: (("web.bench", "Bench"),),
    Role.QA: (
        ("web.qa_queue", "Review queue"),
        ("web.investigations", "Investigations"),
        ("web.bench", "Bench"),
        ("web.admin_specifications", "Specifications"),
        ("web.trends_page", "Trends"),
        ("web.outcomes_page", "Outcomes"),
        ("web.audit", "Audit"),
    ),
    Role.CLINIC: (
        ("web.board", "Readiness"),
        ("web.patients_page", "Patients"),
        ("web.follow_ups_page", "Follow-ups"),
        ("web.outcomes_page", "Outcomes"),
    ),
    Role.ADMIN: (
        ("web.admin_users", "Users"),
        ("web.admin_clinics", "Clinics"),
        ("web.admin_lots", "Reagent lots"),
        ("web.admin_equipment", "Equipment"),
        ("web.admin_specifications", "Specifications"),
        ("web.audit", "Audit"),
    ),
}


def actor() -> Actor:
    return g.actor


def home_url(who: Actor) -> str:
    return url_for(HOMES[who.role])


def roles(*allowed: Role) -> Callable:
    """A page area for some roles; the services still decide every action."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if actor().role not in allowed:
                abort(403, description=f"This page is for {' and '.join(r.value for r in allowed)} users.")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _signed_out(message: str):
    session.clear()
    flash(message, "error")
    return redirect(url_for("web.login", next=request.full_path if request.method == "GET" else None))


@bp.before_request
def authenticate():
    """Resolve the session to an active user (server-side, every request), then check CSRF on writes."""
    if request.endpoint not in PUBLIC_ENDPOINTS:
        token = session.get("token")
        if not token:
            return redirect(url_for("web.login", next=request.full_path if request.method == "GET" else None))
        view = current_app.view_functions.get(request.endpoint) if request.method in SAFE_METHODS else None
        keep = begin_authentication_read(view)
        try:
            g.actor = auth.actor_for_token(read_session(), token)
        except AccountLocked:
            return _signed_out("Your account is locked after repeated wrong passwords; an admin must unlock it.")
        except Unauthenticated:
            return _signed_out("Your session has ended (signed out, inactive too long, or account deactivated).")
        finally:
            if not keep:
                read_session().rollback()  # end the read transaction; a write starts its own
        _keep_alive(token)
    if request.method not in SAFE_METHODS:
        csrf.protect()
    return None


def _keep_alive(token: str) -> None:
    now = time.time()
    if now - session.get("refreshed", 0) < REFRESH_AFTER_S:
        return
    config = current_app.config
    idle = timedelta(minutes=config["LABTRACK_SESSION_IDLE_MINUTES"])
    absolute = timedelta(hours=config["LABTRACK_SESSION_MAX_HOURS"])
    database().write(lambda s: auth.extend_token(s, token, idle=idle, absolute=absolute))
    session["refreshed"] = now


@bp.context_processor
def page_context() -> dict[str, Any]:
    """What the layout needs; ``failure`` is the empty one unless a view passes its own."""
    who = g.get("actor")
    if who is None:
        return {"actor": None, "navigation": (), "unread": 0, "failure": NO_FAILURE}
    unread = len(notifications.for_user(read_session(), who, unread_only=True, limit=UNREAD_SHOWN).items)
    return {"actor": who, "navigation": NAVIGATION[who.role], "unread": unread, "failure": NO_FAILURE}


def safe_next(target: str | None) -> str | None:
    """Only a path on this site, never another host (open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    failure, change = NO_FAILURE, False
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        lifetime = timedelta(minutes=current_app.config["LABTRACK_SESSION_IDLE_MINUTES"])
        new_password = request.form.get("new_password")
        try:
            if not username or not password:
                raise ValidationFailed({"password": ["enter your username and password"]})
            if new_password is not None and new_password != request.form.get("confirm_password"):
                raise ValidationFailed({"confirm_password": ["the two new passwords differ"]})
            who = client("web")
            token, _expires, user = database().write(
                lambda s: auth.issue_token(s, username, password, lifetime, who, new_password=new_password)
            )
        except DomainError as error:
            failure = Failure.of(error, "login", field="password")
            change = isinstance(error, PasswordChangeRequired) or new_password is not None
        else:
            session.clear()  # a fresh session (and CSRF token) at every sign-in: no fixation
            session.permanent = True
            session["token"] = token
            session["refreshed"] = time.time()
            return redirect(safe_next(request.form.get("next")) or home_url(auth.actor_of(user)), 303)
    return _login_page(failure, change_password=change)


def _login_page(failure: Failure, headers: dict[str, str] | None = None, *, change_password: bool = False):
    next_url = safe_next(request.values.get("next"))
    page = render_template("login.html", failure=failure, next_url=next_url, change_password=change_password)
    return page, failure.status, headers or {}


@bp.errorhandler(RateLimitExceeded)
def sign_in_throttled(error: RateLimitExceeded):
    """Too many sign-in attempts (``labtrack.security``): the form again, saying how long to wait."""
    refused, headers = refusal(error)
    return _login_page(Failure.of(refused, "login", field="password"), headers)


@bp.post("/logout")
def logout():
    token = session.get("token")
    who = client("web")
    database().write(lambda s: auth.revoke_token(s, token, who))
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for("web.login"), 303)


@bp.get("/")
def index():
    return redirect(home_url(actor()))
