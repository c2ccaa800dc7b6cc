"""POST /auth/token and token revocation."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from flask_smorest import Blueprint

from labtrack.api.common import authenticate, bearer_token, database, write
from labtrack.api.schemas import TokenCreateSchema, TokenSchema
from labtrack.services import auth

blp = Blueprint("auth", __name__, description="Sign in with a username and password; get a bearer token.")


@blp.post("/auth/token")
@blp.arguments(TokenCreateSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])
def create_token(body: dict):
    """Exchange username and password for a bearer token (expires; stored only as a hash)."""
    lifetime = timedelta(hours=current_app.config["LABTRACK_TOKEN_HOURS"])

    def work(session):
        token, expires_at, user = auth.issue_token(session, body["username"], body["password"], lifetime)
        return {"token": token, "expires_at": expires_at, "user": user}

    return write(work, TokenSchema(), status=200)


@blp.post("/auth/revoke")
@blp.response(204)
def revoke_token():
    """Revoke the token this request carries (sign out)."""
    authenticate()
    token = bearer_token()
    database().write(lambda session: auth.revoke_token(session, token))
    return ""
