"""What every API view shares: the acting user, sessions, and the write unit of work."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, json, request
from marshmallow import Schema
from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.db import (
    SAFE_METHODS,
    begin_authentication_read,
    database,
    read_session,
    request_write_session,
    take_request_write_session,
)
from labtrack.domain.actors import Actor
from labtrack.domain.errors import (
    IdempotencyKeyReused,
    Unauthenticated,
    ValidationFailed,
)
from labtrack.models import IdempotencyRecord
from labtrack.services import auth
from labtrack.services.housekeeping import IDEMPOTENCY_WINDOW

MULTIPART = "multipart/form-data"


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate() -> None:
    """Resolve the bearer token to the acting user; identity never comes from the body."""
    token = bearer_token()
    if token is None:
        raise Unauthenticated("Send 'Authorization: Bearer <token>' (POST /api/v1/auth/token).")
    if request.method not in SAFE_METHODS and not database().is_sqlite and request.mimetype != MULTIPART:
        # A write looks the token up in its own transaction (``write`` carries it on): one pool
        # checkout and its ping, no reset between authentication and work. Not on SQLite, whose
        # write transactions begin IMMEDIATE (the request would queue before it is known), nor for
        # an upload, whose body (up to 10 MB) is read after authentication: no transaction waits on it.
        g.actor = auth.actor_for_token(request_write_session(), token)
        return
    keep = begin_authentication_read(current_app.view_functions.get(request.endpoint))
    g.actor = auth.actor_for_token(read_session(), token)
    if not keep:
        read_session().rollback()  # end the read; the view starts its own transaction, at the default isolation


def actor() -> Actor:
    return g.actor


def _json(payload: Any) -> str:
    return json.dumps(payload)


def write(work: Callable[[Session], Any], schema: Schema | None, status: int = 201) -> Response:
    """Run a write as one unit of work and answer with ``schema``'s dump of its result.

    With ``Idempotency-Key``, the same key and body within 24 h replays the first
    response and writes nothing; the same key with another body is refused. The
    key is stored in the write's own transaction, so a replay is never half-done.
    """
    key = request.headers.get("Idempotency-Key")
    who = g.get("actor")
    if key is not None and (not key.strip() or len(key) > 200):
        raise ValidationFailed({"Idempotency-Key": ["must be 1 to 200 characters"]})
    request_hash = hashlib.sha256(
        request.method.encode() + b" " + request.path.encode() + b"\n" + request.get_data()
    ).hexdigest()

    def unit(session: Session) -> tuple[int, str]:
        if key is not None and who is not None:
            previous = session.execute(
                select(IdempotencyRecord).where(IdempotencyRecord.user_id == who.id, IdempotencyRecord.key == key)
            ).scalar_one_or_none()
            if previous is not None and previous.created_at > utcnow() - IDEMPOTENCY_WINDOW:
                if previous.request_hash != request_hash:
                    raise IdempotencyKeyReused("This Idempotency-Key was used with a different request.")
                return previous.status_code, previous.response_body
            if previous is not None:
                session.delete(previous)
                session.flush()
        result = work(session)
        body = _json(schema.dump(result) if schema is not None else result)
        if key is not None and who is not None:
            session.add(
                IdempotencyRecord(
                    user_id=who.id, key=key, request_hash=request_hash, status_code=status, response_body=body
                )
            )
        return status, body

    code, body = database().write(unit, session=take_request_write_session())
    return Response(body, status=code, mimetype="application/json")
