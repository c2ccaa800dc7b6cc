"""POST /auth/token, token revocation, and the record of authentication events (admins)."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from labtrack.api.common import (
    actor,
    authenticate,
    bearer_token,
    database,
    read_session,
    take_request_write_session,
    write,
)
from labtrack.api.errors import refusals
from labtrack.api.schemas import UTC, PasswordChangeSchema, Problem, TokenCreateSchema, TokenSchema
from labtrack.domain.actors import AuthEventKind, AuthOutcome
from labtrack.security import client
from labtrack.services import auth

blp = Blueprint("auth", __name__, description="Sign in with a username and password; get a bearer token.")
PROBLEM = "application/problem+json"


class AuthEventSchema(Schema):
    at = UTC()
    event = fields.String(metadata={"description": ", ".join(AuthEventKind)})
    outcome = fields.String(metadata={"description": ", ".join(AuthOutcome)})
    reason = fields.String(
        allow_none=True,
        metadata={"description": "why a sign-in failed: unknown_user, wrong_password, deactivated, account_locked"},
    )
    username = fields.String(metadata={"description": "as typed; the user may not exist"})
    channel = fields.String(metadata={"description": "api, web, signature (lockout by failed signatures)"})
    address = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)


class AuthEventQueryArgsSchema(Schema):
    username = fields.String(validate=validate.Length(min=1, max=64))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


@blp.post("/auth/token")
@blp.arguments(TokenCreateSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, schema=Problem, content_type=PROBLEM, description="`invalid_credentials`")
@blp.alt_response(
    403,
    schema=Problem,
    content_type=PROBLEM,
    description="`password_change_required`: an admin reset the password; choose one at POST /auth/password",
)
@blp.alt_response(
    423,
    schema=Problem,
    content_type=PROBLEM,
    description="`account_locked`: five wrong passwords (sign-ins and signatures) in 15 minutes (R-SIG-1)",
)
@blp.alt_response(
    429,
    schema=Problem,
    content_type=PROBLEM,
    description="`rate_limited`: too many sign-in attempts for this username or from this address; "
    "`retry_after` in the body and the header says how many seconds to wait",
    headers={"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
)
@blp.alt_response(413, response=HTTPStatus.REQUEST_ENTITY_TOO_LARGE.name)
@blp.alt_response(503, response=HTTPStatus.SERVICE_UNAVAILABLE.name)
@blp.doc(security=[])
def create_token(body: dict):
    """Exchange username and password for a bearer token (expires; stored only as a hash).

    Every attempt is recorded (GET /auth-events). Attempts are throttled per username
    and per client address (429 `rate_limited` with `Retry-After`).
    """
    lifetime = timedelta(hours=current_app.config["LABTRACK_TOKEN_HOURS"])
    who = client("api")

    def work(session):
        token, expires_at, user = auth.issue_token(session, body["username"], body["password"], lifetime, who)
        return {"token": token, "expires_at": expires_at, "user": user}

    return write(work, TokenSchema(), status=200)


@blp.post("/auth/password")
@blp.arguments(PasswordChangeSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, schema=Problem, content_type=PROBLEM, description="`invalid_credentials`")
@blp.alt_response(422, schema=Problem, content_type=PROBLEM, description="`validation_error`: the new password")
@blp.alt_response(423, schema=Problem, content_type=PROBLEM, description="`account_locked`")
@blp.alt_response(
    429,
    schema=Problem,
    content_type=PROBLEM,
    description="`rate_limited`, as for POST /auth/token",
    headers={"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
)
@blp.alt_response(413, response=HTTPStatus.REQUEST_ENTITY_TOO_LARGE.name)
@blp.alt_response(503, response=HTTPStatus.SERVICE_UNAVAILABLE.name)
@blp.doc(security=[])
def change_password(body: dict):
    """Choose a new password with the current one, and get a bearer token: required after an admin reset
    the password (POST /auth/token answers 403 `password_change_required` until then)."""
    lifetime = timedelta(hours=current_app.config["LABTRACK_TOKEN_HOURS"])
    who = client("api")

    def work(session):
        token, expires_at, user = auth.issue_token(
            session, body["username"], body["password"], lifetime, who, new_password=body["new_password"]
        )
        return {"token": token, "expires_at": expires_at, "user": user}

    return write(work, TokenSchema(), status=200)


@blp.post("/auth/revoke")
@blp.response(204)
@refusals(blp)
def revoke_token():
    """Revoke the token this request carries (sign out)."""
    authenticate()
    token = bearer_token()
    who = client("api")
    database().write(lambda session: auth.revoke_token(session, token, who), session=take_request_write_session())
    return ""


@blp.get("/auth-events")
@blp.arguments(AuthEventQueryArgsSchema, location="query")
@blp.response(200, AuthEventSchema(many=True))
@refusals(blp, 403)
def list_auth_events(query: dict):
    """Sign-ins, failed sign-ins, sign-outs and lockouts, newest first (admins; read-only)."""
    authenticate()
    return auth.list_events(read_session(), actor(), username=query.get("username"), limit=query["limit"])
