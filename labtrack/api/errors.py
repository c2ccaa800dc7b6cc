"""One error mapping for every blueprint: DomainError and HTTP errors become problem+json.

No request answers 500 for bad input; an unexpected fault answers a 500 problem
without internals, and is logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from apispec import APISpec
from flask import Flask, Response, current_app, request
from flask_smorest import Blueprint
from sqlalchemy.exc import DataError, DBAPIError
from werkzeug.exceptions import HTTPException

from labtrack.db import outage
from labtrack.domain.errors import DomainError, PayloadTooLarge, ValidationFailed
from labtrack.problems import HTML_ERROR_PAGE, PROBLEM_JSON, problem_response, renderer

log = logging.getLogger(__name__)
# Any request can meet these: no valid token (or, for POST /auth/token, wrong credentials); the account
# locked (R-SIG-1: its tokens answer 423 until an admin unlocks it); the database out of service.
ALWAYS = (401, 423, 503)
RETRY_AFTER_UNAVAILABLE_S = 5  # a restart or failover takes seconds; clients resend unchanged
View = TypeVar("View", bound=Callable[..., Any])

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """webargs' ``{"json": {"field": [...]}}`` becomes ``{"field": [...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = str(key) if not prefix else f"{prefix}.{key}"
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out[name] = value
            else:
                out.update(_flatten(value, name))
    elif isinstance(messages, list):
        out[prefix or "body"] = [str(m) for m in messages]
    else:
        out[prefix or "body"] = [str(messages)]
    return out


def _from_http(error: HTTPException) -> dict[str, Any]:
    status = error.code or 500
    if status == 413:
        limit = request.max_content_length or 0
        return PayloadTooLarge(f"The request body is larger than {limit / 1024 / 1024:g} MiB.").to_problem()
    messages = getattr(error, "data", {}).get("messages") if hasattr(error, "data") else None
    if status in (400, 422) and messages is not None:
        errors: dict[str, list[str]] = {}
        for location, fields in messages.items():
            errors.update(
                _flatten(fields) if location in ("json", "query", "form", "multipart") else _flatten(fields, location)
            )
        return ValidationFailed(errors).to_problem()
    return {
        "type": f"https://labtrack.example/problems/{_HTTP_CODES.get(status, 'error')}",
        "title": error.name,
        "status": status,
        "detail": error.description or error.name,
        "code": _HTTP_CODES.get(status, "error"),
    }


def refusal_headers(error: DomainError) -> dict[str, str]:
    """How to authenticate (401), and when to come back while the database is out of service (503)."""
    if error.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if error.status == 503:
        return {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}
    return {}


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(error: DomainError) -> Response:
        return problem_response(error.to_problem(), refusal_headers(error))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        # An unknown URL outside the API (a mistyped page in a browser) gets the web's HTML page.
        page = current_app.extensions.get(HTML_ERROR_PAGE)
        if page is not None and not request.path.startswith("/api/") and renderer(request.path) is None:
            return page(error.code or 500, error.name, error.description or error.name)
        return problem_response(_from_http(error))

    @app.errorhandler(RecursionError)
    def too_deep(_error: RecursionError) -> Response:
        # JSON nested thousands deep exhausts the parser's (and the hasher's) recursion: bad input, not a fault
        return problem_response(ValidationFailed({"body": ["is nested too deeply"]}).to_problem())

    @app.errorhandler(DataError)
    @app.errorhandler(OverflowError)
    def unstorable(error: Exception) -> Response:
        # A number past the column's range (an id of 10**20, page 2**62) or a NUL character in text: the
        # database refuses the value itself. Logged, since a computed value could also land here.
        log.warning("value refused by the database: %s", error)
        problem = ValidationFailed({"body": ["a value is out of range or contains characters that cannot be stored"]})
        return problem_response(problem.to_problem())

    @app.errorhandler(DBAPIError)
    def database_error(error: DBAPIError) -> Response:
        # A read (outside Database.write) while the database is down, read-only or full: 503, not 500.
        unavailable = outage(error)
        if unavailable is None:
            return unexpected(error)
        log.warning("database out of service (%s): %s", unavailable.extra["reason"], error.orig)
        return problem_response(unavailable.to_problem(), refusal_headers(unavailable))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return problem_response(
            {
                "type": "https://labtrack.example/problems/internal_error",
                "title": "Internal error",
                "status": 500,
                "detail": "An unexpected error occurred; nothing was recorded. It has been logged.",
                "code": "internal_error",
            }
        )


def document_problems(spec: APISpec) -> None:
    """flask-smorest describes its error responses as application/json; ours are problem+json."""
    for name, response in spec.components.responses_lazy.items():
        status = HTTPStatus.__members__.get(name)
        content = response.get("content", {})
        if status is not None and status >= 400 and "application/json" in content:
            content[PROBLEM_JSON] = content.pop("application/json")


def refusals(blp: Blueprint, *statuses: int) -> Callable[[View], View]:
    """Document the problem+json answers a view can give besides its success (and ``ALWAYS``).

    The 422 of a view's own arguments is documented by ``@blp.arguments``; name 422 here too when
    the view refuses for other reasons (a malformed DIN in the path, an ``Idempotency-Key`` reused).
    """

    def document(view: View) -> View:
        for status in sorted(set(ALWAYS + statuses), reverse=True):
            view = blp.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return document
