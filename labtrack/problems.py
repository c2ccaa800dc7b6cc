"""problem+json answers (RFC 9457), for every HTTP adapter: the API's error mapping, the sign-in
throttle, and the web pages, which register how an error looks as a page (``HTML_ERROR_PAGE``)."""

from __future__ import annotations

from typing import Any

from flask import Response, json

PROBLEM_JSON = "application/problem+json"
HTML_ERROR_PAGE = "labtrack.html_error_page"  # app.extensions key, set by the web pages when they are installed


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A problem body (``DomainError.to_problem()``) as the response, with its status and extra headers."""
    response = Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response
