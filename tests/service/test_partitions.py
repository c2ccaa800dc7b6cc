"""R-SCL-1 on PostgreSQL: migration 0011 partitions a loaded ``batch_events`` in place; the append-only
triggers and the app role's (absent) rights hold on every partition, those made later by beat too."""

from __future__ import annotations

import sys

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from labtrack import privileges
from labtrack.audit import chains, partitions
from labtrack.audit.keys import load_or_create
from labtrack.db import Database
from labtrack.migrate import alembic_config, upgrade
from tests.service.test_privileges import (  # noqa: F401  (the fixture)
    INSUFFICIENT_PRIVILEGE,
    RAISE_EXCEPTION,
    deployment,
    query,
    refusal,
)
from tests.workers.support import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import datagen
import run as bench_run

pytestmark = pytest.mark.postgres

BATCHES, EVENTS_PER_BATCH = 300, 9
FIRST_WIDTH = 100_000  # migration 0011's first partition made ahead


def fingerprint(url: str) -> tuple:
    return tuple(
        query(url, "SELECT count(*), count(DISTINCT batch_id), md5(string_agg(hash, '' ORDER BY batch_id, seq)) "
              "FROM batch_events")[0]
    )  # fmt: skip


def verify_ok(url: str, tmp_path) -> chains.Report:
    database = Database(url)
    try:
        with Session(database.engine) as session:
            return chains.verify(session, public_key=load_or_create(tmp_path).public_key)
    finally:
        database.dispose()


def test_r_scl_1_the_migration_partitions_a_loaded_table_in_place_and_back(deployment, tmp_path):  # noqa: F811
    url = deployment.owner_url
    upgrade(url, "0010")  # the revision before 0011
    bench = bench_run.Bench(url=url, db=Database(url), ports={})
    try:
        bench_run.seed(bench)
        datagen.generate(bench.db.engine, bench.people, BATCHES, EVENTS_PER_BATCH, 1)
    finally:
        bench.db.dispose()
    before = fingerprint(url)
    assert before[0] == BATCHES * EVENTS_PER_BATCH + 0
    file_before = query(url, "SELECT relfilenode FROM pg_class WHERE relname = 'batch_events'")[0][0]

    upgrade(url)
    assert fingerprint(url) == before
    kinds = dict(
        query(url, "SELECT relname, relkind FROM pg_class WHERE relname LIKE 'batch_events%' AND relkind IN ('r', 'p')")
    )
    assert kinds["batch_events"] == "p"
    # in place: the loaded table is the first partition, its file untouched (no copy)
    assert query(url, "SELECT relfilenode FROM pg_class WHERE relname = 'batch_events_legacy'")[0][0] == file_before
    partitions_of = (
        "SELECT c.relname, 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'batch_events'::regclass"
    )
    names = [name for name, _ in query(url, partitions_of)]
    assert sorted(names) == ["batch_events_from_301", "batch_events_legacy"]
    assert verify_ok(url, tmp_path).ok
    assert query(url, "SELECT count(*) FROM batch_events_from_301")[0][0] == 0

    # a duplicate (batch_id, seq) is refused across the whole table
    with pytest.raises(Exception, match="UniqueViolation"):
        query(url, "INSERT INTO batch_events (batch_id, seq, type, occurred_at, recorded_at, actor_id, data, "
                   "prev_hash, hash, canonical) SELECT batch_id, seq, type, occurred_at, recorded_at, actor_id, data, "
                   "prev_hash, hash, canonical FROM batch_events WHERE batch_id = 1 AND seq = 1")  # fmt: skip

    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        grants = privileges.grant_app_role(connection, deployment.app_role)
    engine.dispose()
    assert sorted(grants.partitions) == sorted(names)

    # beat, as the app role, makes the partitions ahead through the owner's function
    app_db = Database(deployment.app_url)
    try:
        assert app_db.write(partitions.extend) == 0  # the migration made the next one, ahead of 300 batches
        ahead = text("SELECT labtrack_extend_batch_events(:upper, :width)")
        made = app_db.write(lambda s: s.execute(ahead, {"upper": 301 + FIRST_WIDTH + 1, "width": 5000}).scalar_one())
        assert made == 1
        assert app_db.write(partitions.extend) == 0  # nothing more needed
        with Session(app_db.engine) as session:
            now = [name for name, _ in partitions.bounds(session)]
    finally:
        app_db.dispose()
    later = sorted(set(now) - set(names))
    assert later, now
    every = names + later
    for partition in every:
        writes = (f"UPDATE {partition} SET type = 'forged'", f"DELETE FROM {partition}", f"TRUNCATE {partition}")
        for statement in (*writes, f"SELECT 1 FROM {partition}", f"INSERT INTO {partition} DEFAULT VALUES"):
            error = refusal(deployment.app_url, statement)
            assert error.orig.sqlstate == INSUFFICIENT_PRIVILEGE, (statement, error)
        # the owner: refused by the append-only triggers (row triggers fire on rows: the empty ones are checked by name)
        for statement in writes if partition == "batch_events_legacy" else writes[2:]:
            error = refusal(url, statement)
            assert error.orig.sqlstate == RAISE_EXCEPTION, (statement, error)
        triggers = {
            row[0] for row in query(url, f"SELECT tgname FROM pg_trigger WHERE tgrelid = '{partition}'::regclass")
        }
        assert "batch_events_append_only" in triggers, triggers
    for statement in ("UPDATE batch_events SET type = 'forged'", "DELETE FROM batch_events", "TRUNCATE batch_events"):
        assert refusal(deployment.app_url, statement).orig.sqlstate == INSUFFICIENT_PRIVILEGE
    assert query(deployment.app_url, "SELECT count(*) FROM batch_events")[0][0] == before[0]

    from alembic import command

    command.downgrade(alembic_config(url), "0010")
    assert (
        dict(query(url, "SELECT relname, relkind FROM pg_class WHERE relname = 'batch_events'"))["batch_events"] == "r"
    )
    assert fingerprint(url) == before
    assert verify_ok(url, tmp_path).ok
