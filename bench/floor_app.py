"""The floors of requirements §9: bare Flask endpoints on LabTrack's own database.

- ``POST /floor`` (the step-logging floor): one INSERT + COMMIT. The body is the same step
  JSON the real clients send; it is parsed and stored as is.
- ``GET /floor/batches/<id>`` (the read floor): a bare authenticated primary-key read. The
  bearer token is looked up as LabTrack looks it up (its SHA-256 in ``api_tokens``, live, the
  user active), then one ``batches`` row is read by its id and answered as JSON; a token that
  does not match is a 401.

Served by the same ``gunicorn -c gunicorn.conf.py`` configuration as LabTrack and
built on the same engine settings (``labtrack.db.make_engine``), so the ratio to them
measures what LabTrack adds per request, not the server or the driver.
"""

from __future__ import annotations

import hashlib
import json
import os

from flask import Flask, Response, request
from sqlalchemy import text

from labtrack.db import make_engine

TABLE = "bench_floor"
CREATE_TABLE = f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, body jsonb NOT NULL)"

INSERT = text(f"INSERT INTO {TABLE} (body) VALUES (CAST(:body AS jsonb)) RETURNING id")
TOKEN = text(
    "SELECT u.id, u.username, u.role, u.clinic_id FROM users u JOIN api_tokens t ON t.user_id = u.id "
    "WHERE t.token_hash = :hash AND t.revoked_at IS NULL AND t.expires_at > now() AND u.active"
)
BATCH = text("SELECT id, din, status, clinic_id, custodian_id, seq, head_hash, expires_at FROM batches WHERE id = :id")


def create_app() -> Flask:
    """``gunicorn -c gunicorn.conf.py 'floor_app:create_app()'``, with DATABASE_URL set (the table exists)."""
    app = Flask(__name__)
    engine = app.extensions["engine"] = make_engine(os.environ["DATABASE_URL"])

    @app.post("/floor")
    def floor() -> Response:
        body = request.get_data(as_text=True)
        with engine.begin() as connection:
            row_id = connection.execute(INSERT, {"body": body}).scalar_one()
        return Response(f'{{"id": {row_id}}}', status=201, mimetype="application/json")

    @app.get("/floor/batches/<int:batch_id>")
    def read(batch_id: int) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with engine.connect() as connection:
            user = connection.execute(TOKEN, {"hash": hashlib.sha256(token.encode()).hexdigest()}).one_or_none()
            if user is None:
                return Response('{"code": "unauthenticated"}', status=401, mimetype="application/json")
            row = connection.execute(BATCH, {"id": batch_id}).one()
        return Response(json.dumps(row._asdict(), default=str), mimetype="application/json")

    return app
