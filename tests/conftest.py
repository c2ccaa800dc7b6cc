"""Test harness: the real migrations on the real database named by DATABASE_URL.

Without DATABASE_URL the suite runs on SQLite: the schema is migrated once into a
template file, and each test gets a fresh copy of it in the run's one test file. With a
PostgreSQL DATABASE_URL a database of its own is created for the run, migrated once, and
each test starts from emptied tables. Either way code under test may commit freely, and
concurrency tests use real connections; and either way the run's app keeps one engine
for the test database, so the statements it compiled serve every later test.

The app is built once per run (building one costs more than most tests): before
each test it is pointed at the test's fresh database, and after it its
configuration, sign-in counters and signing key are put back as they were. Tests
that need an app configured otherwise build their own with ``make_app``.

A test that asks for ``lab`` starts from what ``Lab.build`` made (kept once per run), and
its first journey helper (``lab.released()``, ``lab.at_lab()`` …) puts back the rows that
helper made for an earlier test, when one asked for the same (``JourneyStates``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config import Config
from labtrack import create_app, security
from labtrack.audit import keys
from labtrack.clock import utcnow
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
    """One Database per server URL (or the SQLite test file) for the whole run: a reset reuses its engine."""
    url = normalise_url(url)
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
SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


def _public_tables(connection) -> list[str]:
    """The application's tables (not the migrations' bookkeeping), on either database."""
    listed = SQLITE_TABLES if connection.dialect.name == "sqlite" else PUBLIC_TABLES
    return [row[0] for row in connection.execute(text(listed)) if row[0] not in KEEP_TABLES]


def _reset_postgres(url: str, snapshot: dict[str, int] | None = None, schema: str = SNAPSHOT_SCHEMA) -> None:
    """Empty every table and restart identities (DELETE beats TRUNCATE on tables this small), then seed
    the defaults, or with ``snapshot`` (sequence -> next value) put back the rows ``_snapshot_postgres`` kept
    in ``schema``."""
    database = _kept(url)
    with database.engine.begin() as connection:
        tables = _public_tables(connection)
        sequences = [row[0] for row in connection.execute(text("SELECT sequencename FROM pg_sequences"))]
        # replica mode skips the append-only and foreign-key triggers, for cleaning up between tests only
        statements = ["SET LOCAL session_replication_role = replica"]
        statements += [f'DELETE FROM "{table}"' for table in tables]
        for sequence in sequences:
            statements.append(f'ALTER SEQUENCE "{sequence}" RESTART WITH {(snapshot or {}).get(sequence, 1)}')
        if snapshot is not None:
            statements += [
                f'INSERT INTO "{table}" OVERRIDING SYSTEM VALUE SELECT * FROM {schema}."{table}"' for table in tables
            ]
        connection.exec_driver_sql(";\n".join(statements))  # one round trip
    if snapshot is None:
        database.write(specifications.seed_defaults)


def _snapshot_postgres(url: str, schema: str = SNAPSHOT_SCHEMA) -> dict[str, int]:
    """Keep a copy of every table's rows in a schema of their own; the sequences' next values."""
    with _kept(url).engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        connection.execute(text(f"CREATE SCHEMA {schema}"))
        for table in _public_tables(connection):
            connection.execute(text(f'CREATE TABLE {schema}."{table}" AS SELECT * FROM "{table}"'))
        names = [row[0] for row in connection.execute(text("SELECT sequencename FROM pg_sequences"))]
        # each one's next value: read from the sequence itself, for pg_sequences shows none after a restart
        nexts = " UNION ALL ".join(
            f"SELECT '{name}', CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM \"{name}\""
            for name in names
        )
        return dict(connection.execute(text(nexts)).all()) if names else {}


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
        "ARGON2_MEMORY_KIB": 32,  # the least Argon2 takes with its four lanes: about 0.5 ms a password
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

    def refill(self, source: str, home: Path) -> str:
        """SQLite: put a copy of ``source`` at ``home``, the one file every test of the run works in, after
        closing the kept engine's connections to it; its URL. The engine is kept from test to test, and with
        it the statements it has compiled: a new engine per test would compile every one of them again.

        The copy is renamed into place (a new file, with no write-ahead log beside it), so a connection a
        test left open still sees its own, old file."""
        url = f"sqlite:///{home}"
        kept = _kept(url)
        kept.dispose()
        staged = home.with_suffix(".staged")
        shutil.copyfile(source, staged)
        for leftover in (f"{home}-wal", f"{home}-shm"):
            Path(leftover).unlink(missing_ok=True)
        os.replace(staged, home)
        return url

    def lend(self, database_url: str) -> Flask:
        self.app.config["DATABASE_URL"] = database_url
        # on PostgreSQL the one database, emptied, on SQLite the one file, refilled; else the test's own
        database = _databases.get(normalise_url(database_url))
        if database is None:
            database = Database(database_url)
        database.session_info = self.session_info  # the app's, e.g. how to reach the broker
        self.app.extensions["labtrack.db"] = database
        return self.app

    def take_back(self) -> None:
        """Undo what a test may have changed: configuration, sign-in counts, the signing key file."""
        lent = self.app.extensions["labtrack.db"]
        if lent is not self.shared_db:
            if lent.url not in _databases:
                lent.dispose()
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


# A kept journey is made again once it is older than this: its rows are never more than a minute old, so
# a test that compares their times with its own (the checkpoint's 5-minute commit margin) sees what it made.
JOURNEY_MAX_AGE_S = 60


@dataclass(frozen=True)
class KeptJourney:
    """A journey helper's result, the tokens it signed in with, where its rows are kept, and when it ran."""

    value: Any
    tokens: dict[str, str]
    where: Any
    slot: int
    made: float


class JourneyStates:
    """What a journey helper (``Lab.batch``, ``at_lab`` … ``delivered``, ``tests.helpers.remembered``) leaves
    when it is a test's first write, kept the first time each is asked for and put back for every later
    test that asks for the same within a minute (``JOURNEY_MAX_AGE_S``): the same rows, ids, DINs,
    signatures and chains.

    A helper is reached this way only on the run's own database (the shared PostgreSQL one, the SQLite test
    file), on the real clock, and while the database still holds exactly what ``Lab.build`` made (every
    table's row count is compared); the app's configuration is part of what is asked for."""

    def __init__(self, url: str, directory: Path, sqlite_home: Path | None) -> None:
        self.url = normalise_url(url)
        self.directory = directory
        self.sqlite_home = sqlite_home
        self.kept: dict[str, KeptJourney] = {}
        self.pristine: tuple[int, ...] | None = None

    def _counts(self, database: Database) -> tuple[int, ...]:
        with database.engine.connect() as connection:
            tables = sorted(_public_tables(connection))
            counts = ", ".join(f'(SELECT count(*) FROM "{table}")' for table in tables)
            return tuple(connection.exec_driver_sql(f"SELECT {counts}").one())

    def take_pristine(self, database: Database) -> None:
        """Count the rows of the database ``Lab.build`` just made: what a test that wrote nothing still holds."""
        self.pristine = self._counts(database)

    def reach(self, lab: Lab, key: str, run: Callable[[], Any]) -> Any:
        """``run()``'s result, and the database as it leaves it: put back when kept, else run and kept."""
        if lab.db.url != self.url or abs(utcnow() - datetime.now(UTC)) > timedelta(seconds=1):
            return run()  # another database, or the clock set (``frozen_at``): made as written
        if self._counts(lab.db) != self.pristine:
            return run()
        key += repr(sorted(lab.app.config.items()))  # what the app is told (a FIN, a shelf life) shapes the rows
        key += utcnow().date().isoformat()  # and the day: follow-up windows count from the harvest's
        kept = self.kept.get(key)
        if kept is not None and time.monotonic() - kept.made < JOURNEY_MAX_AGE_S:
            self._restore(lab.db, kept.where)
            lab.tokens.update(kept.tokens)
            return copy.deepcopy(kept.value)
        value = run()
        slot = kept.slot if kept is not None else len(self.kept)
        where = self._save(lab.db, slot)
        self.kept[key] = KeptJourney(copy.deepcopy(value), dict(lab.tokens), where, slot, time.monotonic())
        return value

    def _save(self, database: Database, number: int) -> Any:
        if self.sqlite_home is None:
            return (f"journey_{number}", _snapshot_postgres(self.url, f"journey_{number}"))
        path = self.directory / f"journey-{number}.sqlite"
        with (
            contextlib.closing(sqlite3.connect(self.sqlite_home)) as live,
            contextlib.closing(sqlite3.connect(path)) as kept,
        ):
            live.backup(kept)
        return path

    def _restore(self, database: Database, where: Any) -> None:
        if self.sqlite_home is None:
            schema, sequences = where
            _reset_postgres(self.url, sequences, schema)
            return
        database.dispose()
        with (
            contextlib.closing(sqlite3.connect(where)) as kept,
            contextlib.closing(sqlite3.connect(self.sqlite_home)) as live,
        ):
            kept.backup(live)


@dataclass(frozen=True)
class LabState:
    """The database as ``Lab.build`` leaves it, kept once per run: a SQLite file or a PostgreSQL snapshot."""

    lots: dict[str, int]
    journeys: JourneyStates
    path: str | None = None
    sequences: dict[str, int] | None = None

    def lab(self, app: Flask, client: FlaskClient) -> Lab:
        """The ``Lab`` of an app on a database made by ``lab_database``."""
        db = app.extensions["labtrack.db"]
        return Lab(app=app, client=client, db=db, lots=dict(self.lots), journeys=self.journeys)


def build_lab(shared_app: SharedApp, database_url: str) -> dict[str, int]:
    """Run ``Lab.build`` on a migrated, seeded database with the run's app; the lots it made."""
    application = shared_app.lend(database_url)
    try:
        return Lab.build(application, application.test_client()).lots
    finally:
        shared_app.take_back()


@pytest.fixture(scope="session")
def _lab_state(
    _template: str, _shared_app: SharedApp, _sqlite_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> LabState:
    """``Lab.build`` once; every test that asks for ``lab`` starts from a copy of what it made."""
    directory = tmp_path_factory.mktemp("lab")
    url = fresh_database(_template, directory)
    lots = build_lab(_shared_app, url)
    if ON_POSTGRES:
        journeys = JourneyStates(_template, directory, None)
        journeys.take_pristine(_kept(_template))
        return LabState(lots, journeys, sequences=_snapshot_postgres(_template))
    path = directory / "labtrack.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journeys = JourneyStates(f"sqlite:///{_sqlite_home}", directory, _sqlite_home)
    built = Database(url)
    journeys.take_pristine(built)
    built.dispose()
    return LabState(lots, journeys, path=str(path))


def lab_database(template: str, state: LabState, directory: Path) -> str:
    """The URL of a fresh database holding what ``Lab.build`` makes: a copy of its file, or its snapshot put back."""
    if ON_POSTGRES:
        _reset_postgres(template, state.sequences)
        return template
    return fresh_database(state.path, directory)


@pytest.fixture(scope="session")
def _sqlite_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SQLite: the one file each test's database is copied into (``SharedApp.refill``)."""
    return tmp_path_factory.mktemp("db") / "labtrack.sqlite"


def fresh_test_database(request: pytest.FixtureRequest, state: LabState | None, directory: Path) -> str:
    """The URL of the run's test database made fresh: emptied, or holding what ``Lab.build`` made (``state``);
    on SQLite the run's one file, refilled (``SharedApp.refill``)."""
    template: str = request.getfixturevalue("_template")
    if ON_POSTGRES:
        return fresh_database(template, directory) if state is None else lab_database(template, state, directory)
    shared_app: SharedApp = request.getfixturevalue("_shared_app")
    return shared_app.refill(template if state is None else str(state.path), request.getfixturevalue("_sqlite_home"))


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's fresh database; already holding the ``lab`` reference data when the test asks for a lab."""
    state = request.getfixturevalue("_lab_state") if "lab" in request.fixturenames else None
    return fresh_test_database(request, state, tmp_path)


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
