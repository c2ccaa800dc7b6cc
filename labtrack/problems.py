"""problem+json answers (RFC 9457), for every HTTP adapter: the API's error mapping, the sign-in
throttle, the web pages (which register how an error looks as a page, ``HTML_ERROR_PAGE``) and
the interfaces that answer refusals in a form of their own (``PROBLEM_RENDERERS``: FHIR's
OperationOutcome)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, current_app, has_request_context, json, request

PROBLEM_JSON = "application/problem+json"
HTML_ERROR_PAGE = "labtrack.html_error_page"  # app.extensions key, set by the web pages when they are installed
# Path prefix -> a function rendering a refusal for the interface mounted there (the FHIR API's
# OperationOutcome, labtrack.fhir); set by that interface at start-up.
PROBLEM_RENDERERS = "labtrack.problem_renderers"


def renderer(path: str) -> Callable[[dict[str, Any], dict[str, str]], Response] | None:
    """The interface's own refusal renderer for ``path``, if one is mounted there."""
    renderers = current_app.extensions.get(PROBLEM_RENDERERS, {}) if has_request_context() else {}
    return next((render for prefix, render in renderers.items() if path.startswith(prefix)), None)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A problem body (``DomainError.to_problem()``) as the response, with its status and extra headers."""
    render = renderer(request.path) if has_request_context() else None
    if render is not None:
        return render(body, headers or {})
    response = Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response
