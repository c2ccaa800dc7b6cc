"""The step-logging floor (requirements §9): a bare Flask endpoint doing one INSERT + COMMIT.

Served by the same ``gunicorn -c gunicorn.conf.py`` configuration as LabTrack and
built on the same engine settings (``labtrack.db.make_engine``), so the ratio to it
measures what LabTrack adds per request, not the server or the driver. The body is
the same step JSON the real clients send; it is parsed and stored as is.
"""

from __future__ import annotations

import os

from flask import Flask, Response, request
from sqlalchemy import text

from labtrack.db import make_engine

TABLE = "bench_floor"
CREATE_TABLE = f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, body jsonb NOT NULL)"

INSERT = text(f"INSERT INTO {TABLE} (body) VALUES (CAST(:body AS jsonb)) RETURNING id")


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

    return app
