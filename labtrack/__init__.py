"""LabTrack: batch tracking for autologous stem-cell products, harvest to injection."""

from __future__ import annotations

import logging

from flask import Flask

from config import Config
from labtrack.db import Database
from labtrack.services import auth


def create_app(config: Config | None = None) -> Flask:
    app = Flask(__name__)
    config = config or Config.from_env()
    app.config.from_mapping(config.as_mapping())
    app.instance_path = config.INSTANCE_PATH
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app.extensions["labtrack.db"] = Database(app.config["DATABASE_URL"])
    auth.configure_hashing(app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_KIB"])

    from labtrack import api, cli
    from labtrack.extensions import celery_init_app

    api.init_app(app)
    cli.register(app)
    celery_init_app(app)
    return app
