"""Test harness: the real migrations on the real database named by DATABASE_URL.

Without DATABASE_URL the suite runs on SQLite: the schema is migrated once into a
template file, and each test gets a fresh copy. With a PostgreSQL DATABASE_URL a
database of its own is created for the run, migrated once, and each test starts
from emptied tables. Either way code under test may commit freely, and
concurrency tests use real connections.

The app is built once per run (building one costs more than most tests): before
each test it is pointed at the test's fresh database, and after it its
configuration, sign-in counters and signing key are put back as they were. Tests
that need an app configured otherwise build their own with ``make_app``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config import Config
from labtrack import create_app, security
from labtrack.audit import keys
from labtrack.db import Database, normalise_url
from labtrack.migrate import upgrade
from labtrack.services import specifications
from tests.helpers import Lab

SERVER_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = SERVER_URL.startswith(("postgres", "postgresql"))
IN_CI = os.environ.get("CI", "").lower() == "true"
KEEP_TABLES = {"alembic_version"}
pytest_plugins = ("tests.fixtures",)


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


_databases: dict[str, Database] = {}


def _kept(url: str) -> Database:
    """One Database per server URL for the whole run: resetting reuses its connections."""
    return _databases.get(url) or _databases.setdefault(url, Database(url))


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
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # an unreachable server fails the run under CI; never a silent skip
        admin.dispose()
        pytest.exit(f"PostgreSQL at {server.render_as_string()} is unreachable: {error}", returncode=3)
    url = server.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    for database in _databases.values():
        database.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


SNAPSHOT_SCHEMA = "lab_snapshot"
# Tables that hold rows themselves (partitions are filled through their parent).
PUBLIC_TABLES = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
)


def _public_tables(connection) -> list[str]:
    return [row[0] for row in connection.execute(text(PUBLIC_TABLES)) if row[0] not in KEEP_TABLES]


def _reset_postgres(url: str, snapshot: dict[str, int | None] | None = None) -> None:
    """Empty every table and restart identities (DELETE beats TRUNCATE on tables this small), then seed
    the defaults, or with ``snapshot`` (sequence -> last value) put back the rows ``_snapshot_postgres`` kept."""
    database = _kept(url)
    with database.engine.begin() as connection:
        tables = _public_tables(connection)
        sequences = [row[0] for row in connection.execute(text("SELECT sequencename FROM pg_sequences"))]
        # replica mode skips the append-only and foreign-key triggers, for cleaning up between tests only
        statements = ["SET LOCAL session_replication_role = replica"]
        statements += [f'DELETE FROM "{table}"' for table in tables]
        for sequence in sequences:
            last = (snapshot or {}).get(sequence)
            restart = "RESTART WITH 1" if last is None else f"RESTART WITH {last + 1}"
            statements.append(f'ALTER SEQUENCE "{sequence}" {restart}')
        if snapshot is not None:
            statements += [
                f'INSERT INTO "{table}" OVERRIDING SYSTEM VALUE SELECT * FROM {SNAPSHOT_SCHEMA}."{table}"'
                for table in tables
            ]
        connection.exec_driver_sql(";\n".join(statements))  # one round trip
    if snapshot is None:
        database.write(specifications.seed_defaults)


def _snapshot_postgres(url: str) -> dict[str, int | None]:
    """Keep a copy of every table's rows in a schema of their own; the sequences' last values."""
    with _kept(url).engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {SNAPSHOT_SCHEMA} CASCADE"))
        connection.execute(text(f"CREATE SCHEMA {SNAPSHOT_SCHEMA}"))
        for table in _public_tables(connection):
            connection.execute(text(f'CREATE TABLE {SNAPSHOT_SCHEMA}."{table}" AS SELECT * FROM "{table}"'))
        return dict(connection.execute(text("SELECT sequencename, last_value FROM pg_sequences")).all())


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
    settings = {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{directory / 'broker.sqlite'}",
        "SECRET_KEY": "test-secret",
        "TESTING": True,
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_KIB": 1024,
        "LABTRACK_RATELIMIT_KEY_PREFIX": f"labtrack-test-{uuid.uuid4().hex[:12]}",  # sign-in counts per app
        "LABTRACK_STATISTICS_WAIT_SECONDS": 0.5,  # no worker runs but in tests/workers, which wait longer
    }
    return create_app(Config.from_env(instance_path=directory / "instance", **(settings | overrides)))


class SharedApp:
    """The run's one app, lent to one test at a time on that test's database."""

    def __init__(self, application: Flask) -> None:
        self.app = application
        self.config = dict(application.config)
        self.session_info = application.extensions["labtrack.db"].session_info
        self.key_file = Path(application.config["INSTANCE_PATH"]) / keys.KEY_FILE
        self.key = self.key_file.read_bytes()
        self.shared_db = application.extensions["labtrack.db"]
        self.shared_url = application.config["DATABASE_URL"]

    def lend(self, database_url: str) -> Flask:
        self.app.config["DATABASE_URL"] = database_url
        # a file of the test's own; on PostgreSQL the one database, emptied, unless the test made its own
        if not ON_POSTGRES or database_url != self.shared_url:
            database = Database(database_url)
            database.session_info = self.session_info  # the app's, e.g. how to reach the broker
            self.app.extensions["labtrack.db"] = database
        return self.app

    def take_back(self) -> None:
        """Undo what a test may have changed: configuration, sign-in counts, the signing key file."""
        if self.app.extensions["labtrack.db"] is not self.shared_db:
            self.app.extensions["labtrack.db"].dispose()
            self.app.extensions["labtrack.db"] = self.shared_db
        self.app.config.clear()
        self.app.config.update(self.config)
        self.app.extensions[security.LIMITER].reset()
        if self.key_file.read_bytes() != self.key:
            self.key_file.write_bytes(self.key)
            keys.load_or_create.cache_clear()


@pytest.fixture(scope="session")
def _shared_app(_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedApp]:
    url = _template if ON_POSTGRES else f"sqlite:///{_template}"
    application = make_app(url, tmp_path_factory.mktemp("app"))
    if ON_POSTGRES:  # the connections the resets use
        built = application.extensions["labtrack.db"]
        built.dispose()
        _kept(url).session_info = built.session_info
        application.extensions["labtrack.db"] = _kept(url)
    yield SharedApp(application)
    application.extensions["labtrack.db"].dispose()


@dataclass(frozen=True)
class LabState:
    """The database as ``Lab.build`` leaves it, kept once per run: a SQLite file or a PostgreSQL snapshot."""

    lots: dict[str, int]
    path: str | None = None
    sequences: dict[str, int | None] | None = None

    def lab(self, app: Flask, client: FlaskClient) -> Lab:
        """The ``Lab`` of an app on a database made by ``lab_database``."""
        return Lab(app=app, client=client, db=app.extensions["labtrack.db"], lots=dict(self.lots))


def build_lab(shared_app: SharedApp, database_url: str) -> dict[str, int]:
    """Run ``Lab.build`` on a migrated, seeded database with the run's app; the lots it made."""
    application = shared_app.lend(database_url)
    try:
        return Lab.build(application, application.test_client()).lots
    finally:
        shared_app.take_back()


@pytest.fixture(scope="session")
def _lab_state(_template: str, _shared_app: SharedApp, tmp_path_factory: pytest.TempPathFactory) -> LabState:
    """``Lab.build`` once; every test that asks for ``lab`` starts from a copy of what it made."""
    directory = tmp_path_factory.mktemp("lab")
    lots = build_lab(_shared_app, fresh_database(_template, directory))
    if ON_POSTGRES:
        return LabState(lots, sequences=_snapshot_postgres(_template))
    path = directory / "labtrack.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return LabState(lots, path=str(path))


def lab_database(template: str, state: LabState, directory: Path) -> str:
    """The URL of a fresh database holding what ``Lab.build`` makes: a copy of its file, or its snapshot put back."""
    if ON_POSTGRES:
        _reset_postgres(template, state.sequences)
        return template
    return fresh_database(state.path, directory)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, _template: str, tmp_path: Path) -> str:
    """The test's fresh database; already holding the ``lab`` reference data when the test asks for a lab."""
    if "lab" not in request.fixturenames:
        return fresh_database(_template, tmp_path)
    return lab_database(_template, request.getfixturevalue("_lab_state"), tmp_path)


@pytest.fixture
def app(_shared_app: SharedApp, database_url: str) -> Iterator[Flask]:
    yield _shared_app.lend(database_url)
    _shared_app.take_back()


@pytest.fixture
def db(app) -> Database:
    return app.extensions["labtrack.db"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def lab(app, client, _lab_state: LabState) -> Lab:
    """A clinic (C1) and another (C2), a user per role, usable and unusable materials (``Lab.build``'s)."""
    return _lab_state.lab(app, client)
