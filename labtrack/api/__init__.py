"""The HTTP API (v1): flask-smorest blueprints, OpenAPI 3 at /api/openapi.json, docs at /api/docs."""

from __future__ import annotations

from flask import Flask, send_from_directory
from flask_smorest import Blueprint
from swagger_ui_bundle import swagger_ui_path

from labtrack.api import errors
from labtrack.api.schemas import Problem
from labtrack.db import close_read_session
from labtrack.extensions import api

SWAGGER_STATIC = "/api/docs/static/"


def init_app(app: Flask) -> None:
    app.config.update(
        API_TITLE="LabTrack",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_STATIC,  # served by the app: works on an offline lab network
        API_SPEC_OPTIONS={
            "info": {
                "description": "Batch tracking for autologous stem-cell products (SVF, BMAC). "
                "Errors are application/problem+json with a stable `code`."
            },
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    api.ERROR_SCHEMA = Problem
    api.DEFAULT_ERROR_RESPONSE_NAME = None  # no catch-all: each view names its refusals (errors.refusals)
    # Unknown query parameters are refused (422) like unknown body fields: a mistyped filter
    # (``?stauts=open``) must not answer with every batch. None: each schema's own ``unknown`` (RAISE).
    Blueprint.ARGUMENTS_PARSER.unknown = None
    api.init_app(app)
    errors.document_problems(api.spec)

    from labtrack.api import (
        admin,
        audit,
        auth,
        batches,
        documents,
        exports,
        investigations,
        notifications,
        outcomes,
        patients,
        temperatures,
    )

    modules = (auth, admin, patients, batches, documents, audit, notifications, temperatures, exports, outcomes)
    for module in (*modules, investigations):
        api.register_blueprint(module.blp, url_prefix="/api/v1")
    temperatures.allow_uploads(app)

    errors.register(app)
    app.teardown_appcontext(close_read_session)

    @app.get(f"{SWAGGER_STATIC}<path:filename>")
    def swagger_static(filename: str):
        return send_from_directory(swagger_ui_path, filename)
