"""``flask --app wsgi labtrack ...``: thin adapters over the services.

A user mistake exits non-zero with one line, never a traceback.
"""

from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from labtrack import privileges
from labtrack.audit import chains, checkpoints, keys
from labtrack.db import database
from labtrack.domain.actors import Role
from labtrack.domain.errors import DomainError
from labtrack.migrate import upgrade
from labtrack.ops import backup
from labtrack.services import reference, specifications

labtrack = AppGroup("labtrack", help="LabTrack administration.")
audit = AppGroup("audit", help="Audit trail verification.")
labtrack.add_command(audit)


def _cli_actor():
    return reference.system_actor(f"cli:{getpass.getuser()}")


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DomainError as error:
            raise click.ClickException(error.detail) from None

    return wrapper


@labtrack.command("init-db")
def initdatabase() -> None:
    """Migrate to head and seed default specifications; safe to run again."""
    upgrade(current_app.config["DATABASE_URL"])
    added = database().write(specifications.seed_defaults)
    click.echo(f"Database at head; {added} default specification(s) seeded.")


@labtrack.command("create-clinic")
@click.argument("code")
@click.option("--name", required=True)
@user_errors
def create_clinic(code: str, name: str) -> None:
    """Add a clinic."""
    clinic = database().write(lambda s: reference.create_clinic(s, _cli_actor(), code=code, name=name))
    click.echo(f"Clinic {clinic.code} created.")


@labtrack.command("create-user")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]))
@click.option("--full-name", required=True)
@click.option("--clinic", default=None, help="Clinic code (clinic users only).")
@click.option("--email", default=None, help="Address for e-mail notifications (when SMTP_URL is set).")
@user_errors
def create_user(username: str, role: str, full_name: str, clinic: str | None, email: str | None) -> None:
    """Add a user; password from LABTRACK_PASSWORD, else a prompt."""
    password = os.environ.get("LABTRACK_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    database().write(
        lambda s: reference.create_user(
            s,
            _cli_actor(),
            username=username,
            full_name=full_name,
            role=role,
            password=password,
            clinic=clinic,
            email=email,
        )
    )
    click.echo(f"User {username} ({role}) created.")


@labtrack.command("grant-app-role")
@click.argument("role")
@user_errors
def grant_app_role(role: str) -> None:
    """PostgreSQL: give ROLE what the app needs and no UPDATE or DELETE on history (run as the owner, after init-db)."""
    with database().engine.begin() as connection:
        grants = privileges.grant_app_role(connection, role)
    click.echo(
        f"Role {role}: SELECT, INSERT on {', '.join(grants.append_only)}; SELECT on {', '.join(grants.read_only)}; "
        f"SELECT, INSERT, UPDATE, DELETE on {len(grants.read_write)} other table(s); sequences usable; "
        f"nothing on {len(grants.partitions)} partition(s), reached through their parent."
    )


@labtrack.command("demo-data")
@user_errors
def demo_data() -> None:
    """Load demo clinic, users, materials and batches; idempotent."""
    from labtrack.demo import DEMO_PASSWORD, load

    summary = load(database(), current_app.config["LABTRACK_FIN"])
    click.echo(summary)
    click.echo(f"Demo logins (password {DEMO_PASSWORD}): tech, tech2, qa, clinic, admin")


@audit.command("verify")
@click.option("--din", default=None, help="Verify one batch only.")
@click.option(
    "--public-key",
    type=click.File("rb"),
    default=None,
    help="Check checkpoints against this PEM public key (the lab's published one) instead of the configured key.",
)
@user_errors
def audit_verify(din: str | None, public_key: BinaryIO | None) -> None:
    """Recompute every chain; exit 1 naming each failure."""
    try:
        trusted = keys.load_public_pem(public_key.read()) if public_key else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--public-key") from None
    session = database().reader()
    try:
        report = chains.verify(session, None, din, public_key=trusted or keys.trusted_public_key(current_app.config))
    finally:
        session.close()
    for failure in report.failures:
        click.echo(f"FAIL {failure['din']} seq {failure['seq']}: {failure['reason']}", err=True)
    click.echo(
        f"{'OK' if report.ok else 'FAILED'}: {report.batches_checked} batch(es), "
        f"{report.events_checked} event(s) checked, {len(report.failures)} failure(s)."
    )
    sys.exit(0 if report.ok else 1)


@audit.command("checkpoint")
@user_errors
def audit_checkpoint() -> None:
    """Sign a checkpoint of every stream head now (R-AUD-4)."""
    key, origin = keys.lab_key(current_app.config), current_app.config["LABTRACK_FIN"]
    checkpoint = database().write(lambda s: checkpoints.create(s, key, origin))
    click.echo(
        f"Checkpoint {checkpoint.id}: {checkpoint.tree_size} stream(s), "
        f"root {checkpoint.root}, key {checkpoint.key_id}."
    )


@labtrack.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@user_errors
def backup_command(path: Path) -> None:
    """Write a consistent copy of the database to PATH while the app runs (R-OPS-5)."""
    click.echo(backup.backup(database(), path))


@labtrack.command("restore-check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", type=click.File("rb"), default=None, help="Check checkpoints against this PEM key.")
@user_errors
def restore_check(path: Path, public_key: BinaryIO | None) -> None:
    """Restore the copy at PATH to a scratch database and run the full audit verification on it; exit 1 on failure."""
    try:
        trusted = keys.load_public_pem(public_key.read()) if public_key else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--public-key") from None
    trusted = trusted or keys.trusted_public_key(current_app.config)
    result = backup.restore_check(path, current_app.config["DATABASE_URL"], trusted)
    for failure in result.failures:
        click.echo(f"FAIL {failure['din']} seq {failure['seq']}: {failure['reason']}", err=True)
    click.echo(
        f"{'OK' if result.ok else 'FAILED'}: the copy at {path} restores (schema revision {result.revision}); "
        f"{result.batches} batch(es), {result.events} event(s) verified, {len(result.failures)} failure(s)."
    )
    sys.exit(0 if result.ok else 1)


def register(app: Flask) -> None:
    app.cli.add_command(labtrack)
