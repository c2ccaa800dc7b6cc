"""Database privileges on PostgreSQL (R-AUD-2 in depth): migrations run as the owner of the tables,
the app connects as a role that may only SELECT and INSERT on the append-only tables.

Each test makes its own database and two roles with names unique to the run (roles are
cluster-wide) and drops them afterwards. The set-up is the documented one (README, "Database
privileges"): ``init-db`` and ``grant-app-role`` as the owner, then the app as the app role.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

import workers.tasks  # noqa: F401  (registers the tasks)
from labtrack.db import normalise_url
from labtrack.extensions import TASK_CHECKPOINT, TASK_CUSTODY_WATCH, TASK_EXPIRY_WATCH, TASK_SWEEP
from tests.conftest import ON_POSTGRES, SERVER_URL, make_app
from tests.helpers import Lab

INSUFFICIENT_PRIVILEGE = "42501"
RAISE_EXCEPTION = "P0001"  # the append-only trigger's RAISE


@dataclass(frozen=True)
class Deployment:
    owner: str
    app_role: str
    owner_url: str
    app_url: str


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    """An empty database owned by a fresh owner role, and a fresh login role for the app."""
    suffix = uuid.uuid4().hex[:10]
    owner, app_role, name = f"lt_owner_{suffix}", f"lt_app_{suffix}", f"labtrack_priv_{suffix}"
    server = make_url(normalise_url(SERVER_URL))
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE ROLE "{owner}" LOGIN'))
            connection.execute(text(f'CREATE ROLE "{app_role}" LOGIN'))
            connection.execute(text(f'CREATE DATABASE "{name}" OWNER "{owner}"'))

        def url(role: str) -> str:
            return server.set(username=role, password=None, database=name).render_as_string(hide_password=False)

        yield Deployment(owner, app_role, url(owner), url(app_role))
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{app_role}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{owner}"'))
        admin.dispose()


def cli(app, *args: str, exit_code: int = 0) -> str:
    result = app.test_cli_runner().invoke(args=["labtrack", *args])
    assert result.exit_code == exit_code, result.output
    return result.output


def set_up(deployment: Deployment, tmp_path: Path):
    """The documented set-up, as the owner: migrate and seed, then grant."""
    owner_app = make_app(deployment.owner_url, tmp_path / "owner")
    try:
        cli(owner_app, "init-db")
        return cli(owner_app, "grant-app-role", deployment.app_role)
    finally:
        owner_app.extensions["labtrack.db"].dispose()


def refusal(url: str, statement: str) -> DBAPIError:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with pytest.raises(DBAPIError) as refused, engine.begin() as connection:
            connection.execute(text(statement))
        return refused.value
    finally:
        engine.dispose()


def query(url: str, statement: str, **params: str) -> list:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(statement), params))
    finally:
        engine.dispose()


def privileges_of(deployment: Deployment) -> dict[str, set[str]]:
    """Table -> the app role's privileges on it, from the catalogue."""
    rows = query(
        deployment.owner_url,
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = :role",
        role=deployment.app_role,
    )
    granted: dict[str, set[str]] = {}
    for table, privilege in rows:
        granted.setdefault(table, set()).add(privilege)
    return granted


def append_only(deployment: Deployment) -> set[str]:
    """Every table whose trigger refuses UPDATE and DELETE (R-AUD-2, R-AUD-4, in whatever migration)."""
    rows = query(
        deployment.owner_url,
        "SELECT DISTINCT event_object_table FROM information_schema.triggers "
        "WHERE action_statement LIKE '%labtrack_append_only%'",
    )
    return {row[0] for row in rows}


def counts(deployment: Deployment, tables: set[str]) -> dict[str, int]:
    return {table: query(deployment.app_url, f"SELECT count(*) FROM {table}")[0][0] for table in sorted(tables)}


# As the app role, every way to rewrite, cut or skip the guards of the history is refused by privilege.
REFUSED_TO_THE_APP = [
    "UPDATE batch_events SET type = 'forged'",
    "UPDATE admin_events SET actor = 'mallory'",
    "UPDATE checkpoints SET root = repeat('0', 64)",
    "UPDATE checkpoint_leaves SET seq = 1",
    "SET session_replication_role = replica",
    "ALTER TABLE batch_events DISABLE TRIGGER USER",
    "DROP TRIGGER batch_events_append_only ON batch_events",
    "CREATE TABLE scratch (id integer)",
    "UPDATE alembic_version SET version_num = '0001'",
]


@pytest.mark.postgres
def test_r_aud_2_the_app_role_runs_the_lab_but_cannot_rewrite_history(deployment, tmp_path):
    said = set_up(deployment, tmp_path)
    history = append_only(deployment)
    assert {"admin_events", "batch_events", "checkpoints", "checkpoint_leaves"} <= history
    assert said.startswith(f"Role {deployment.app_role}: SELECT, INSERT on {', '.join(sorted(history))}; ")
    granted = privileges_of(deployment)
    assert {table: granted.pop(table) for table in history} == {table: {"SELECT", "INSERT"} for table in history}
    assert granted.pop("alembic_version") == {"SELECT"}
    assert {"batches", "outbox", "api_tokens"} <= set(granted)  # projections and working tables: read and write
    assert all(rights == {"SELECT", "INSERT", "UPDATE", "DELETE"} for rights in granted.values()), granted

    # the whole journey, web and workers, as the app role: the grants are sufficient
    app = make_app(deployment.app_url, tmp_path / "app")
    try:
        lab = Lab.build(app, app.test_client())
        din = lab.delivered()
        lab.ok(lab.administration(din))
        lab.ok(lab.post("qa", f"/batches/{din}/deviations", {"description": "label smudged"}))
        lab.ok(lab.post("qa", "/audit/checkpoints"))
        # the workers' tasks, run in-process by this app's Celery (so as the app role)
        task = app.extensions["celery"].tasks
        assert task[TASK_SWEEP]() > 0  # outbox rows claimed, delivered, notifications written
        task[TASK_EXPIRY_WATCH]()
        task[TASK_CUSTODY_WATCH]()
        assert task[TASK_CHECKPOINT]() > 0
        report = lab.ok(lab.get("qa", "/audit/verify"), 200)
        assert report["ok"] is True, report["failures"]
        assert lab.get("qa", f"/batches/{din}/record.pdf").status_code == 200
        assert lab.get("clinic", f"/batches/{din}/audit-export").status_code == 200
        (first, *_) = lab.ok(lab.get("clinic", "/notifications"), 200)["items"]
        lab.ok(lab.post("clinic", f"/notifications/{first['id']}/read"), 200)
        assert lab.post("clinic", "/auth/revoke").status_code == 204
    finally:
        app.extensions["labtrack.db"].dispose()
    before = counts(deployment, history)
    assert before["batch_events"] > 10

    cuts = [f"{verb} {table}" for table in sorted(history) for verb in ("DELETE FROM", "TRUNCATE")]
    for statement in REFUSED_TO_THE_APP + cuts:
        error = refusal(deployment.app_url, statement)
        assert error.orig.sqlstate == INSUFFICIENT_PRIVILEGE, (statement, error)

    # the owner may (it runs the migrations), but the triggers still refuse it (R-AUD-2)
    for statement in ("UPDATE batch_events SET type = 'forged'", "DELETE FROM batch_events"):
        error = refusal(deployment.owner_url, statement)
        assert error.orig.sqlstate == RAISE_EXCEPTION, (statement, error)
        assert "append-only" in str(error.orig)
    assert counts(deployment, history) == before


@pytest.mark.postgres
def test_grant_app_role_refuses_roles_that_privileges_would_not_bind(deployment, tmp_path):
    set_up(deployment, tmp_path)
    owner_app = make_app(deployment.owner_url, tmp_path / "owner")
    try:
        superuser = make_url(normalise_url(SERVER_URL)).username
        for role, says in (
            (f"{deployment.app_role}_missing", "No role"),
            (deployment.owner, "is the tables' owner"),
            (superuser, "is a superuser"),
        ):
            (line,) = cli(owner_app, "grant-app-role", role, exit_code=1).strip().splitlines()
            assert says in line
    finally:
        owner_app.extensions["labtrack.db"].dispose()


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite only")
def test_grant_app_role_on_sqlite_says_it_is_for_postgresql(app):
    (line,) = cli(app, "grant-app-role", "labtrack_app", exit_code=1).strip().splitlines()
    assert "PostgreSQL only" in line
