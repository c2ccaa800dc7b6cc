"""The application factory: configuration, database, signing key, API, pages, CLI and Celery bound to one app."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config
from labtrack.audit import keys
from labtrack.db import Database
from labtrack.documents import printer
from labtrack.ops import logs
from labtrack.services import auth


def create_app(config: Config | None = None) -> Flask:
    """Build the app from ``config`` (default: read from the environment)."""
    app = Flask(__name__)
    config = config or Config.from_env()
    app.config.from_mapping(config.as_mapping())
    app.instance_path = config.INSTANCE_PATH
    if config.LABTRACK_PROXY_HOPS:
        hops = config.LABTRACK_PROXY_HOPS
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    logs.configure()  # JSON lines (R-OPS-3), before labtrack.cli imports alembic, which logs on import

    app.extensions["labtrack.db"] = Database(app.config["DATABASE_URL"])
    auth.configure_hashing(app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_KIB"])
    keys.load_or_create(str(config.INSTANCE_PATH))  # the checkpoint signing key, made on first start
    if config.LABTRACK_CHECKPOINT_PUBLIC_KEY:  # a wrong pin stops the start, not a later verification
        keys.load_pinned(config.LABTRACK_CHECKPOINT_PUBLIC_KEY)
    if config.LABTRACK_LABEL_PRINTER:  # a mistyped printer address stops the start, not the first print
        printer.parse_address(config.LABTRACK_LABEL_PRINTER)

    from labtrack import api, cli, fhir, ops, security, web
    from labtrack.extensions import celery_init_app

    api.init_app(app)
    web.init_app(app)
    fhir.init_app(app)
    security.init_app(app)  # after the blueprints: it throttles their sign-in views
    ops.init_app(app)
    cli.register(app)
    celery_init_app(app)
    return app
