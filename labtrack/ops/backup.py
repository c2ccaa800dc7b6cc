"""Backups that can be trusted, and the check that proves one (R-OPS-5).

``backup`` writes a consistent copy while the app runs. On SQLite it uses SQLite's
online backup API in one step: the copy is one read transaction's snapshot (WAL mode
lets writers go on meanwhile). On PostgreSQL it runs ``pg_dump --format=custom``, whose
dump is one snapshot too; without ``pg_dump`` it says so and writes nothing.

``restore_check`` restores the copy somewhere scratch, never over the live database (a
SQLite copy into a temporary file, a dump into a new database on the same server via
``pg_restore``), runs the full audit verification there (every chain, every checkpoint
signature and root) and drops the scratch copy. A copy is only as good as this check.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from labtrack.audit import chains
from labtrack.db import Database
from labtrack.domain.errors import Conflict, ValidationFailed

PG_DUMP_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    revision: str | None
    batches: int
    events: int
    failures: list[dict]


def _libpq_url(url: str) -> str:
    """The URL as libpq tools take it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_copy(source_path: str, target_path: Path) -> None:
    """SQLite's online backup in one step (a single read snapshot; writers go on in the WAL) to a
    self-contained file: the copy's journal is a rollback journal, so no ``-wal`` file belongs to it."""
    source = sqlite3.connect(source_path, timeout=30)
    target = sqlite3.connect(target_path)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()


def backup(database: Database, path: Path) -> str:
    """Write a consistent copy of the database to ``path`` (which must not exist); say what was done."""
    if path.exists():
        raise Conflict(f"{path} exists already: a backup never overwrites a file. Choose a new name.")
    if not path.parent.is_dir():
        raise ValidationFailed({"path": [f"the folder {path.parent} does not exist"]})
    if database.is_sqlite:
        _sqlite_copy(make_url(database.url).database, path)
        return f"SQLite online backup written to {path} ({path.stat().st_size} bytes)."
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise Conflict(
            "pg_dump is not installed on this machine, so no backup was written. Install the PostgreSQL client "
            "tools of the server's version (Debian: apt-get install postgresql-client) and run this again."
        )
    result = subprocess.run(
        [pg_dump, "--format=custom", "--no-owner", "--file", str(path), "--dbname", _libpq_url(database.url)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise Conflict(f"pg_dump failed, no backup written: {result.stderr.strip()[:500]}")
    return f"pg_dump (custom format, one snapshot) written to {path} ({path.stat().st_size} bytes)."


@contextmanager
def _restored(path: Path, live_url: str) -> Iterator[str]:
    """The copy restored to a scratch database; its URL for the length of the block."""
    head = path.read_bytes()[:16] if path.is_file() else b""
    if head.startswith(SQLITE_MAGIC):
        with tempfile.TemporaryDirectory(prefix="labtrack-restore-check-") as scratch:
            copy = Path(scratch) / "restored.sqlite"
            _sqlite_copy(str(path), copy)  # through SQLite, so a copy's write-ahead log is read too
            yield f"sqlite:///{copy}"
        return
    if not head.startswith(PG_DUMP_MAGIC):
        raise ValidationFailed({"path": [f"{path} is neither a SQLite database nor a pg_dump custom-format file"]})
    pg_restore = shutil.which("pg_restore")
    if pg_restore is None:
        raise Conflict("pg_restore is not installed on this machine: install the PostgreSQL client tools.")
    if live_url.startswith("sqlite"):
        raise Conflict("A pg_dump copy is checked on a PostgreSQL server: set DATABASE_URL to one.")
    server = make_url(live_url)
    name = f"labtrack_restore_check_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        scratch_url = server.set(database=name).render_as_string(hide_password=False)
        result = subprocess.run(
            [pg_restore, "--no-owner", "--exit-on-error", "--dbname", _libpq_url(scratch_url), str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise Conflict(f"pg_restore failed: the copy does not restore: {result.stderr.strip()[:500]}")
        yield scratch_url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def restore_check(path: Path, live_url: str, trusted: Ed25519PublicKey) -> CheckResult:
    """Restore the copy at ``path`` to a scratch database and verify every chain and checkpoint there
    against ``trusted`` (``keys.trusted_public_key``, or an auditor's copy of the lab's key)."""
    if not path.is_file():
        raise ValidationFailed({"path": [f"{path} is not a file"]})
    with _restored(path, live_url) as url:
        copy = Database(url)
        try:
            session = copy.reader()
            try:
                revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
                report = chains.verify(session, None, None, public_key=trusted)
            finally:
                session.close()
        finally:
            copy.dispose()
    return CheckResult(report.ok, revision, report.batches_checked, report.events_checked, list(report.failures))
