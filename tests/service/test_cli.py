"""`flask --app wsgi labtrack ...` (requirements §4): set-up commands, demo data, and one-line user errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from labtrack.db import normalise_url
from labtrack.demo import DEMO_PASSWORD
from labtrack.domain import formats
from tests.conftest import ON_POSTGRES, SERVER_URL

CLI_PASSWORD = "cli-made-password"
COUNTED = ("clinics", "users", "patients", "batches", "batch_events", "admin_events", "reagent_lots", "equipment")


def cli(app, *args: str, password: str | None = CLI_PASSWORD, prompt_input: str | None = None):
    """Run a labtrack command; ``password=None`` leaves LABTRACK_PASSWORD unset so the command prompts."""
    return app.test_cli_runner().invoke(
        args=["labtrack", *args], env={"LABTRACK_PASSWORD": password}, input=prompt_input
    )


def assert_user_error(result, fragment: str) -> None:
    """A user mistake: non-zero exit, one line naming the problem, no traceback."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def counts(database) -> dict[str, int]:
    with database.engine.connect() as connection:
        return {table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in COUNTED}


def login(app, username: str, password: str):
    return app.test_client().post("/api/v1/auth/token", json={"username": username, "password": password})


# --- init-db ----------------------------------------------------------------------------------


class TestInitDbOnAnEmptyDatabase:
    @pytest.fixture
    def database_url(self, tmp_path: Path) -> Iterator[str]:
        """An empty database, as on a fresh machine (overrides conftest's migrated one)."""
        if not ON_POSTGRES:
            yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
            return
        server = make_url(normalise_url(SERVER_URL))
        name = f"labtrack_cli_{uuid.uuid4().hex[:10]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def test_init_db_migrates_seeds_and_is_safe_to_run_twice(self, app, db):
        first = cli(app, "init-db")
        assert first.exit_code == 0, first.output
        assert "2 default specification(s) seeded" in first.output
        again = cli(app, "init-db")
        assert again.exit_code == 0, again.output
        assert "0 default specification(s) seeded" in again.output
        with db.engine.connect() as connection:
            specs = connection.execute(text("SELECT tissue_source, version FROM specifications ORDER BY 1")).all()
            revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert [tuple(row) for row in specs] == [("adipose", 1), ("bone_marrow", 1)]
        assert len(revisions) == 1
        # the database is usable straight away: an admin made by the CLI can sign in
        assert cli(app, "create-user", "boss", "--role", "admin", "--full-name", "The Boss").exit_code == 0
        assert login(app, "boss", CLI_PASSWORD).status_code == 200


# --- create-clinic and create-user ------------------------------------------------------------


def test_create_clinic_is_recorded_on_the_admin_chain_as_the_cli(app, lab):
    result = cli(app, "create-clinic", "c9", "--name", "Ninth Clinic")
    assert result.exit_code == 0, result.output
    assert "Clinic C9 created." in result.output
    clinics = {c["code"]: c["name"] for c in lab.ok(lab.get("admin", "/clinics"), 200)}
    assert clinics["C9"] == "Ninth Clinic"
    actor = lab.sql("SELECT actor FROM admin_events ORDER BY seq DESC LIMIT 1")[0][0]
    assert actor.startswith("cli:")


def test_create_clinic_twice_is_a_one_line_error(app, lab):
    assert_user_error(cli(app, "create-clinic", "C1", "--name", "Again"), "already exists")


@pytest.mark.parametrize(
    ("username", "role", "clinic"), [("nina", "technician", None), ("quentin", "qa", None), ("nurse", "clinic", "C2")]
)
def test_create_user_takes_the_password_from_labtrack_password(app, lab, username, role, clinic):
    args = ["create-user", username, "--role", role, "--full-name", "Made By CLI"]
    result = cli(app, *args, *(["--clinic", clinic] if clinic else []))
    assert result.exit_code == 0, result.output
    assert f"User {username} ({role}) created." in result.output
    user = lab.ok(login(app, username, CLI_PASSWORD), 200)["user"]
    assert (user["role"], user["clinic"], user["full_name"]) == (role, clinic, "Made By CLI")
    hashed = lab.sql("SELECT password_hash FROM users WHERE username = :u", u=username)[0][0]
    assert hashed.startswith("$argon2id$")


def test_create_user_prompts_for_the_password_without_labtrack_password(app, lab):
    typed = "typed-at-the-prompt"
    result = cli(
        app,
        "create-user",
        "nina",
        "--role",
        "technician",
        "--full-name",
        "N",
        password=None,
        prompt_input=f"{typed}\n{typed}\n",
    )
    assert result.exit_code == 0, result.output
    assert typed not in result.output  # hidden input
    assert login(app, "nina", typed).status_code == 200


@pytest.mark.parametrize(
    ("args", "password", "fragment"),
    [
        (["nurse", "--role", "clinic", "--full-name", "N", "--clinic", "NOPE"], CLI_PASSWORD, "NOPE"),
        (["tech", "--role", "technician", "--full-name", "T"], CLI_PASSWORD, "taken"),
        (["nurse", "--role", "clinic", "--full-name", "N"], CLI_PASSWORD, "clinic"),
        (["nina", "--role", "technician", "--full-name", "N", "--clinic", "C1"], CLI_PASSWORD, "clinic"),
        (["nina", "--role", "technician", "--full-name", "N"], "short", "at least"),
    ],
    ids=["unknown-clinic", "duplicate-user", "clinic-user-without-clinic", "lab-user-with-clinic", "short-password"],
)
def test_create_user_mistakes_are_one_line_errors_that_write_nothing(app, lab, args, password, fragment):
    before = counts(lab.db)
    assert_user_error(cli(app, "create-user", *args, password=password), fragment)
    assert counts(lab.db) == before


NEW_USER = {"username": "nina", "full_name": "N", "role": "technician", "password": CLI_PASSWORD}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"username": "Nina Smith"}, formats.USERNAME),
        ({"username": "ni\nna"}, formats.USERNAME),
        ({"email": "nina@"}, formats.EMAIL),
    ],
    ids=["username-with-space-and-capital", "username-with-line-break", "bad-e-mail"],
)
def test_create_user_refuses_a_username_or_e_mail_the_api_refuses(app, lab, given, expected):
    """The CLI checks the formats the API checks (labtrack.domain.formats): it cannot bypass them."""
    user = NEW_USER | given
    before = counts(lab.db)
    args = [user["username"], "--role", user["role"], "--full-name", user["full_name"]]
    assert_user_error(
        cli(app, "create-user", *args, *(["--email", user["email"]] if "email" in user else [])), expected.message
    )
    assert counts(lab.db) == before
    refused = lab.post("admin", "/users", user)
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {next(iter(given)): [expected.message]}
    assert counts(lab.db) == before


def test_create_clinic_refuses_a_code_the_api_refuses(app, lab):
    before = counts(lab.db)
    assert_user_error(cli(app, "create-clinic", "C 3", "--name", "Spaced"), "code")
    assert counts(lab.db) == before


def test_unknown_role_is_a_usage_error(app, lab):
    result = cli(app, "create-user", "nina", "--role", "wizard", "--full-name", "N")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "wizard" in result.output


@pytest.mark.parametrize(("din", "fragment"), [("A999926999999", "No such batch"), ("NOT-A-DIN", "not a DIN")])
def test_audit_verify_of_an_unknown_or_malformed_din_is_a_one_line_error(app, lab, din, fragment):
    assert_user_error(cli(app, "audit", "verify", "--din", din), fragment)


# --- demo-data --------------------------------------------------------------------------------


def test_demo_data_is_idempotent_with_a_user_per_role_and_batches_in_several_states(app, db):
    first = cli(app, "demo-data")
    assert first.exit_code == 0, first.output
    loaded = counts(db)
    again = cli(app, "demo-data")
    assert again.exit_code == 0, again.output
    assert "already loaded" in again.output
    assert counts(db) == loaded
    assert loaded["batches"] >= 3
    with db.engine.connect() as connection:
        roles = set(connection.execute(text("SELECT role FROM users")).scalars())
        statuses = set(connection.execute(text("SELECT status FROM batches")).scalars())
    assert roles == {"technician", "qa", "clinic", "admin"}
    assert len(statuses) >= 3, statuses
    assert {"registered", "processed"} <= statuses
    for username in ("admin", "tech", "qa", "clinic"):
        assert login(app, username, DEMO_PASSWORD).status_code == 200
    verified = cli(app, "audit", "verify")
    assert verified.exit_code == 0, verified.output
