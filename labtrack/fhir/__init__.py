"""The FHIR R5 read API under /fhir (R-FHIR-1): its own blueprint, the API's bearer tokens and access rules.

Answers are ``application/fhir+json``; every refusal under /fhir (401, 403, 404, 406, 422,
and an unknown URL or method) is an OperationOutcome, never problem+json or an HTML page.
"""

from __future__ import annotations

from flask import Flask, Response, json

from labtrack.documents import fhir as resources
from labtrack.extensions import api
from labtrack.problems import PROBLEM_RENDERERS

PREFIX = "/fhir"


def outcome_response(problem: dict, headers: dict[str, str]) -> Response:
    response = Response(
        json.dumps(resources.operation_outcome(problem)), status=problem["status"], mimetype=resources.FHIR_JSON
    )
    response.headers.update(headers)
    return response


def init_app(app: Flask) -> None:
    from labtrack.fhir import views

    api.register_blueprint(views.blp, url_prefix=PREFIX)
    app.extensions.setdefault(PROBLEM_RENDERERS, {})[f"{PREFIX}/"] = outcome_response
    app.extensions[PROBLEM_RENDERERS][PREFIX] = outcome_response
