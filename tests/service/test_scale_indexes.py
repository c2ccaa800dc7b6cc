"""R-SCL-4: every periodic query is served by an index (PostgreSQL plans, with sequential scans priced out
so that a small test database shows which index the planner can use, as a large one would)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event

from labtrack import jobs
from labtrack.domain.actors import Actor, Role
from labtrack.models import User
from labtrack.services import batches, identity, patients

pytestmark = pytest.mark.postgres


def plans_of(
    db, run, tables: tuple[str, ...] = ("FROM batches", "batch_events"), *, seqscan: bool = False
) -> list[tuple[str, str]]:
    """Each SELECT on one of ``tables`` that ``run`` sends, with its plan (sequential scans priced out unless
    ``seqscan``: the planner then chooses as it would on the data in the table)."""
    captured: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and any(table in statement for table in tables):
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
            if not seqscan:
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


def test_r_scl_4_patient_search_by_part_of_a_name_or_mrn_uses_the_trigram_index_on_a_large_table(lab, db):
    lab.batch(mrn="MRN-TRGM-1")  # Jane Doe, at clinic C1
    lab.sql(
        "INSERT INTO patients (clinic_id, mrn, family_name, given_name, birth_date, created_at, created_by_id) "
        "SELECT p.clinic_id, 'X-' || g, left(md5(g::text), 9), left(md5((-g)::text), 7), p.birth_date, p.created_at, "
        "p.created_by_id FROM patients p, generate_series(1, 20000) g"
    )
    # what autovacuum does to a table this size: the GIN index's pending entries merged, statistics taken
    lab.sql("SELECT gin_clean_pending_list('ix_patients_search_trgm')")
    lab.sql("ANALYZE patients")
    qa = db.write(lambda s: s.query(User).filter_by(username="qa").one())
    who = Actor(id=qa.id, username="qa", full_name=qa.full_name, role=Role.QA, clinic_id=None)
    found: dict[str, list[str]] = {}

    def search(q: str) -> None:
        found[q] = [p.mrn for p in patients.search(db.reader(), who, q=q).items]

    for q in ("doe", "TRGM-1"):  # part of the family name; part of the MRN
        (plan,) = [plan for _, plan in plans_of(db, lambda q=q: search(q), ("FROM patients",), seqscan=True)]
        assert found[q] == ["MRN-TRGM-1"], q
        assert "ix_patients_search_trgm" in plan, (q, plan)
        assert "Seq Scan on patients" not in plan, (q, plan)
