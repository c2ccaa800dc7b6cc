"""Sign-in throttling and the security headers of every response (issue 8).

Throttling: Flask-Limiter counts sign-in attempts (``POST /api/v1/auth/token`` and the
web sign-in form, one shared budget) per username and per client address, in
``LABTRACK_RATELIMIT_STORAGE_URL`` (Redis in production, so every web worker shares
the counts). Each app gets a Limiter of its own: Flask-Limiter keeps its storage on
the Limiter object, so one module-level Limiter bound to several apps would count
every app in the storage of the last one bound. The R-SIG-1 lockout (five wrong
passwords lock the account) is separate, in ``labtrack.services.auth``; throttling
also slows guessing of unknown usernames and whole-address sweeps, which lockout
cannot.

Headers: one ``after_request`` hook sets them on every response, including error
responses and static files. The pages have no inline script or style, so the
policy is ``default-src 'self'``; only the Swagger UI page, whose flask-smorest
template starts the UI with an inline script, gets its own wider policy.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from labtrack.domain.errors import RateLimited
from labtrack.problems import problem_response
from labtrack.services.auth import Client

LIMITER = "labtrack.limiter"
SIGN_IN_ENDPOINTS = ("auth.create_token", "auth.change_password", "web.login")
USERNAME_KEY_LENGTH = 100

CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
# flask-smorest's swagger_ui.html starts the UI with an inline script; the page shows only the API description.
DOCS_CSP = f"{CSP}; script-src 'self' 'unsafe-inline'; img-src 'self' data:"
DOCS_ENDPOINT = "api-docs.openapi_swagger_ui"
STATIC_ENDPOINTS = frozenset({"web.static", "swagger_static"})
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # not no-referrer: Flask-WTF refuses a form posted over HTTPS without a same-origin Referer
    "Referrer-Policy": "same-origin",
}


def init_app(app: Flask) -> None:
    """Throttle the sign-in endpoints (registered by now) and add the headers to every response."""
    config = app.config
    storage = config["LABTRACK_RATELIMIT_STORAGE_URL"]
    limiter = Limiter(
        get_remote_address,
        storage_uri=storage,
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2} if storage.startswith("redis") else {},
        key_prefix=config["LABTRACK_RATELIMIT_KEY_PREFIX"],
        strategy="moving-window",
        # Redis down: count in this process's memory until it is back, rather than refuse every sign-in.
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    # Only sign-in is throttled: every other request skips the limiter's per-request work at once.
    limiter.request_filter(lambda: request.endpoint not in SIGN_IN_ENDPOINTS)
    app.extensions[LIMITER] = limiter
    per_username = limiter.shared_limit(
        lambda: current_app.config["LABTRACK_LOGIN_LIMIT_PER_USERNAME"],
        scope="sign-in-username",
        key_func=_username,
        methods=["POST"],
    )
    per_address = limiter.shared_limit(
        lambda: current_app.config["LABTRACK_LOGIN_LIMIT_PER_ADDRESS"], scope="sign-in-address", methods=["POST"]
    )
    for endpoint in SIGN_IN_ENDPOINTS:
        app.view_functions[endpoint] = per_address(per_username(app.view_functions[endpoint]))
    app.register_error_handler(RateLimitExceeded, _api_refusal)
    app.after_request(_security_headers)


def client(channel: str) -> Client:
    """Where this request came from: the address the limiter counts, and the User-Agent."""
    return Client(channel, get_remote_address(), request.user_agent.string or None)


def _username() -> str:
    """The username the attempt is for, from the JSON body or the form ("-" when there is none)."""
    body = request.get_json(silent=True) if request.is_json else request.form
    name = str(body.get("username") or "").strip().lower() if isinstance(body, dict) else ""
    return name[:USERNAME_KEY_LENGTH] or "-"


def refusal(error: RateLimitExceeded) -> tuple[RateLimited, dict[str, str]]:
    """The stable refusal for a breached limit, and its ``Retry-After`` header (whole seconds)."""
    limit = current_app.extensions[LIMITER].current_limit
    retry_after = max(1, math.ceil(limit.window.reset_time - time.time())) if limit is not None else 60
    refused = RateLimited(
        f"Too many sign-in attempts ({error.limit.limit}); try again in {retry_after} seconds.",
        extra={"retry_after": retry_after},
    )
    return refused, {"Retry-After": str(retry_after)}


def _api_refusal(error: RateLimitExceeded) -> Response:
    refused, headers = refusal(error)
    return problem_response(refused.to_problem(), headers)


def _security_headers(response: Response) -> Response:
    docs = request.endpoint == DOCS_ENDPOINT
    response.headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else CSP)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint not in STATIC_ENDPOINTS:
        # API answers and pages carry patient data and tokens: never kept by a browser or a proxy
        response.headers["Cache-Control"] = "no-store"
    return response
