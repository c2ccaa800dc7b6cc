"""The web interface (requirements §7): server-rendered pages over the same services as the API.

Every page is a thin adapter: it reads the form, loads it with the API's own input
schema, calls the service function the API calls, and renders the result or the
refusal. Nothing here decides a rule; a refusal is the service's DomainError,
shown beside the field it names.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, Flask, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from labtrack.db import outage
from labtrack.domain.errors import DomainError
from labtrack.extensions import csrf
from labtrack.problems import HTML_ERROR_PAGE

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/assets")
log = logging.getLogger(__name__)

IDLE_MINUTES_DEFAULT = 30


class TlsAwareSessionInterface(SecureCookieSessionInterface):
    """The session cookie is ``Secure`` whenever the request came over TLS, not only when configured so.

    Behind a proxy, gunicorn takes the scheme from ``X-Forwarded-Proto`` of trusted
    peers (``forwarded_allow_ips``), so ``request.is_secure`` holds there too.
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or request.is_secure)


def init_app(app: Flask) -> None:
    idle = timedelta(minutes=app.config.setdefault("LABTRACK_SESSION_IDLE_MINUTES", IDLE_MINUTES_DEFAULT))
    app.config.setdefault("LABTRACK_SESSION_MAX_HOURS", app.config.get("LABTRACK_TOKEN_HOURS", 12))
    app.config.update(
        SESSION_COOKIE_NAME="labtrack_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=idle,
        # CSRF is checked by the web blueprint only: the API authenticates with bearer tokens, not cookies.
        WTF_CSRF_CHECK_DEFAULT=False,
        # The token lives as long as the session; the session's own inactivity timeout bounds it.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.session_interface = TlsAwareSessionInterface()
    csrf.init_app(app)

    from labtrack.web import admin, auth, batch, clinic, interop, investigations, outcomes, pages, qa, sso  # noqa: F401

    sso.configure(app)

    app.register_blueprint(bp)
    app.extensions[HTML_ERROR_PAGE] = _error_page


def _error_page(status: int, title: str, detail: str):
    return render_template("error.html", status=status, title=title, detail=detail), status


@bp.errorhandler(CSRFError)
def csrf_refused(_error: CSRFError):
    return _error_page(
        400,
        "Form refused",
        "This form was sent without its security token, or with an expired one, so nothing was recorded. "
        "Go back, reload the page and submit it again.",
    )


@bp.errorhandler(DomainError)
def domain_error(error: DomainError):
    return _error_page(error.status, error.title, error.detail)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    status = error.code or 500
    return _error_page(status, error.name, error.description or error.name)


@bp.errorhandler(DBAPIError)
def database_error(error: DBAPIError):
    # The database down, read-only or full: say so (503), rather than "something went wrong".
    unavailable = outage(error)
    if unavailable is None:
        return unexpected(error)
    log.warning("database out of service (%s) on a web page: %s", unavailable.extra["reason"], error.orig)
    return domain_error(unavailable)


@bp.errorhandler(Exception)
def unexpected(error: Exception):
    log.exception("unhandled error on a web page", exc_info=error)
    return _error_page(
        500, "Something went wrong", "An unexpected error occurred; nothing was recorded. It has been logged."
    )
