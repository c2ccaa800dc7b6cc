"""Test harness: the real migrations on the real database named by DATABASE_URL.

Without DATABASE_URL the suite runs on SQLite: the schema is migrated once into a
template file, and each test gets a fresh copy. With a PostgreSQL DATABASE_URL a
database of its own is created for the run, migrated once, and each test starts
from emptied tables. Either way code under test may commit freely, and
concurrency tests use real connections.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config import Config
from labtrack import create_app
from labtrack.db import Database, normalise_url
from labtrack.migrate import upgrade
from labtrack.services import specifications
from tests.helpers import Lab

SERVER_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = SERVER_URL.startswith(("postgres", "postgresql"))
IN_CI = os.environ.get("CI", "").lower() == "true"
KEEP_TABLES = {"alembic_version"}


def pytest_report_header(config: pytest.Config) -> str:
    return f"labtrack database: {'PostgreSQL' if ON_POSTGRES else 'SQLite'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _seed(url: str) -> None:
    database = Database(url)
    database.write(specifications.seed_defaults)
    database.dispose()


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, seeded database: a SQLite file to copy, or a PostgreSQL database to empty."""
    if not ON_POSTGRES:
        path = tmp_path_factory.mktemp("template") / "template.sqlite"
        url = f"sqlite:///{path}"
        upgrade(url)
        _seed(url)
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        yield str(path)
        return
    server = make_url(normalise_url(SERVER_URL))
    name = f"labtrack_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # an unreachable server fails the run under CI; never a silent skip
        admin.dispose()
        pytest.exit(f"PostgreSQL at {server.render_as_string()} is unreachable: {error}", returncode=3)
    url = server.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


_engines: dict[str, object] = {}


def _reset_postgres(url: str) -> None:
    """Empty every table and restart identities: DELETE beats TRUNCATE on tables this small."""
    engine = _engines.get(url) or _engines.setdefault(url, create_engine(url, poolclass=NullPool))
    with engine.begin() as connection:
        tables = [
            row[0]
            for row in connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            if row[0] not in KEEP_TABLES
        ]
        sequences = [row[0] for row in connection.execute(text("SELECT sequencename FROM pg_sequences"))]
        # replica mode skips the append-only and foreign-key triggers, for cleaning up between tests only
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        for table in tables:
            connection.execute(text(f'DELETE FROM "{table}"'))
        for sequence in sequences:
            connection.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART WITH 1'))
    _seed(url)


def fresh_database(template: str, directory: Path) -> str:
    """The URL of an emptied, migrated, seeded database: a copy of the template, or the emptied server one."""
    if ON_POSTGRES:
        _reset_postgres(template)
        return template
    path = directory / "labtrack.sqlite"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def make_app(database_url: str, directory: Path, **overrides: object) -> Flask:
    """The app as tests run it: its own instance folder and broker file, cheap Argon2; ``overrides`` on top."""
    return create_app(
        Config.from_env(
            instance_path=directory / "instance",
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{directory / 'broker.sqlite'}",
            SECRET_KEY="test-secret",
            TESTING=True,
            ARGON2_TIME_COST=1,
            ARGON2_MEMORY_KIB=1024,
            LABTRACK_RATELIMIT_KEY_PREFIX=f"labtrack-test-{uuid.uuid4().hex[:12]}",  # sign-in counts per app
            **overrides,
        )
    )


@pytest.fixture
def database_url(_template: str, tmp_path: Path) -> str:
    return fresh_database(_template, tmp_path)


@pytest.fixture
def app(database_url: str, tmp_path: Path):
    application = make_app(database_url, tmp_path)
    yield application
    application.extensions["labtrack.db"].dispose()


@pytest.fixture
def db(app) -> Database:
    return app.extensions["labtrack.db"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def lab(app, client) -> Lab:
    """A clinic (C1) and another (C2), a user per role, usable and unusable materials."""
    return Lab.build(app, client)
