"""R-SCL-4: every periodic query is served by an index (PostgreSQL plans, with sequential scans priced out
so that a small test database shows which index the planner can use, as a large one would)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from labtrack import jobs
from labtrack.domain.actors import Actor, Role
from labtrack.models import User
from labtrack.services import batches, identity

pytestmark = pytest.mark.postgres


def plans_of(db, run) -> list[tuple[str, str]]:
    """Each SELECT on batches or batch_events that ``run`` sends, with its plan."""
    captured: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and (
            "FROM batches" in statement or "batch_events" in statement
        ):
            captured.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    plans = []
    connection = db.engine.raw_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            for statement, parameters in captured:
                cursor.execute("EXPLAIN " + statement, parameters)
                plans.append((statement, "\n".join(row[0] for row in cursor.fetchall())))
    finally:
        connection.rollback()
        connection.close()
    return plans


def test_r_scl_4_watchers_qa_queue_and_near_misses_are_served_by_indexes(lab, db):
    lab.at_lab()
    qa = db.write(lambda s: s.query(User).filter_by(username="qa").one())
    who = Actor(id=qa.id, username="qa", full_name=qa.full_name, role=Role.QA, clinic_id=None)
    wanted = {
        "expiry watch": (lambda: jobs.expiry_watch(db, warning=timedelta(hours=2)), "ix_batches_expires_at"),
        "custody watch": (lambda: jobs.custody_watch(db, gap=timedelta(hours=4)), "ix_batches_transfer_at"),
        "held list": (lambda: batches.search(db.reader(), who, batches.BatchFilter(held=True)), "ix_batches_held"),
        "near misses": (lambda: identity.recent_mismatches(db.reader(), who), "ix_batch_events_identity_mismatch"),
    }
    for name, (run, index) in wanted.items():
        plans = plans_of(db, run)
        assert plans, name
        first = plans[0][1]
        # on a partitioned table the plan names each partition's copy of the index
        copies = lab.sql(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:ix AS regclass)",
            ix=index,
        )
        assert any(found in first for found in [index, *(row[0] for row in copies)]), (name, first)
        assert "Seq Scan on batches" not in first, (name, first)
        assert "Seq Scan on batch_events" not in first, (name, first)
