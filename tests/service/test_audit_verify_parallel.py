"""A full verification over many events on PostgreSQL scans them on two connections that share one
exported snapshot, each half of the batches by its own reader (R-AUD-3, performance issue 7).

``split_from=0`` forces the split on a few batches. The report must be exactly the one a single
connection gives, intact or tampered in either half, and both halves must see one snapshot: events
written by others once the scan has started are in neither half.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event

from labtrack.audit import chains, keys
from tests.api.test_audit_trail import batch_id, change_data, change_hash, set_event, triggers_bypassed
from tests.service.test_audit_verify_streaming import EVENTS, at_lab, processed, readers
from tests.workers.test_checkpoints import make_checkpoint, rewrite_consistently

SHARE_SNAPSHOT = "SET TRANSACTION SNAPSHOT"
SPLIT, ONE_CONNECTION = 0, None  # split_from: always split, never split


def run(lab, split_from: int | None) -> dict:
    """``chains.verify`` as the CLI runs it: a fresh reader session, closed afterwards."""
    session = lab.db.reader()
    try:
        with lab.app.app_context():
            return chains.verify(
                session, public_key=keys.trusted_public_key(lab.app.config), split_from=split_from
            ).as_dict()
    finally:
        session.close()


@pytest.fixture
def statements(lab) -> Iterator[list[str]]:
    """The SQL sent through the app's engine, on any of its connections."""
    sent: list[str] = []

    def record(_connection, _cursor, statement, _parameters, _context, _executemany) -> None:
        sent.append(statement)

    event.listen(lab.db.engine, "before_cursor_execute", record)
    yield sent
    event.remove(lab.db.engine, "before_cursor_execute", record)


def split_runs(statements: list[str]) -> int:
    return sum(statement.startswith(SHARE_SNAPSHOT) for statement in statements)


@pytest.mark.postgres
def test_r_aud_3_r_aud_4_split_scan_reports_what_one_connection_reports(lab, statements):
    processed(lab, 3)
    make_checkpoint(lab)
    processed(lab, 2, mrn="MRN-2")  # batches the checkpoint has not signed, in the second half
    one = run(lab, ONE_CONNECTION)
    assert split_runs(statements) == 0
    assert run(lab, chains.SPLIT_FROM_EVENTS) == one  # 35 events: below the default, one connection
    assert split_runs(statements) == 0
    split = run(lab, SPLIT)
    assert split_runs(statements) == 1
    assert split == one
    assert one["ok"] is True, one["failures"]
    assert one["batches_checked"] == 5
    assert one["checkpoint"]["anchored_on"] is not None
    assert readers() == []
    assert lab.db.engine.pool.checkedout() == 0  # both connections back in the pool


@pytest.mark.postgres
@pytest.mark.parametrize("victim_index", [0, 3], ids=["first-half", "second-half"])
@pytest.mark.parametrize(("tamper", "seq", "reason"), [(change_data, 5, "canonical text"), (change_hash, 4, "hash")])
def test_r_aud_3_a_break_in_either_half_is_named_as_one_connection_names_it(
    lab, statements, monkeypatch, victim_index, tamper, seq, reason
):
    monkeypatch.setattr(chains, "PREFETCH_ROWS", 3)  # every chain straddles chunks
    dins = processed(lab, 4)
    victim = dins[victim_index]
    with triggers_bypassed(lab) as connection:
        tamper(connection, batch_id(lab, victim))
    split = run(lab, SPLIT)
    assert split_runs(statements) == 1
    assert split == run(lab, ONE_CONNECTION)
    assert [(f["din"], f["seq"]) for f in split["failures"]] == [(victim, seq)]
    assert reason in split["failures"][0]["reason"]
    assert split["batches_checked"] == 4


@pytest.mark.postgres
@pytest.mark.parametrize("victim_index", [0, 3], ids=["first-half", "second-half"])
def test_r_aud_3_r_aud_4_a_consistent_rewrite_in_either_half_is_caught_by_the_checkpoint(lab, statements, victim_index):
    dins = processed(lab, 4)
    make_checkpoint(lab)
    victim = dins[victim_index]
    rewrite_consistently(lab.db, victim, 2, {"volume_ml": 999})  # the harvest's volume, every hash recomputed
    split = run(lab, SPLIT)
    assert split_runs(statements) == 1
    assert split == run(lab, ONE_CONNECTION)
    assert [(f["din"], f["seq"]) for f in split["failures"]] == [(victim, EVENTS)]  # the head it signed
    assert "rewritten" in split["failures"][0]["reason"]


@pytest.mark.postgres
def test_r_aud_3_both_halves_read_one_snapshot(lab, statements):
    """Once the first connection has exported its snapshot, and before the second connection takes it,
    another transaction appends an event to a batch in each half and registers a batch: neither half
    may see them. Were the first connection at READ COMMITTED, or the second not on the exported
    snapshot, its half would find events past the head read before (or a batch with no head)."""
    first, *_, last = at_lab(lab, 4)  # four events each: halves of two batches
    before = lab.sql("SELECT (SELECT count(*) FROM batch_events) + (SELECT count(*) FROM admin_events)")[0][0]
    written: list[str] = []

    def write_meanwhile(_connection, _cursor, statement, *_args) -> None:
        if "pg_export_snapshot" in statement and not written:
            written.append("steps")
            lab.ok(lab.step(first, "digestion"))
            lab.ok(lab.step(last, "digestion"))
            written.append(lab.batch(mrn="MRN-new"))

    event.listen(lab.db.engine, "after_cursor_execute", write_meanwhile)
    try:
        report = run(lab, SPLIT)
    finally:
        event.remove(lab.db.engine, "after_cursor_execute", write_meanwhile)
    assert len(written) == 2, "the split path did not run"
    assert report["ok"] is True, report["failures"]
    assert (report["batches_checked"], report["events_checked"]) == (4, before)
    after = run(lab, SPLIT)  # a new snapshot sees them all
    assert after["ok"] is True, after["failures"]
    assert (after["batches_checked"], after["events_checked"]) == (5, before + 2 + 1)


@pytest.mark.postgres
def test_r_aud_3_a_canonical_text_that_is_not_json_in_the_second_half_is_named(lab, statements):
    """The second connection's reader hits the error; both connections are released, and the Python
    path names the event."""
    *_, victim = processed(lab, 4)
    with triggers_bypassed(lab) as connection:
        set_event(connection, batch_id(lab, victim), 3, canonical="{not json")
    report = run(lab, SPLIT)
    assert split_runs(statements) == 1
    assert [(f["din"], f["seq"]) for f in report["failures"]] == [(victim, 3)]
    assert "canonical text does not match" in report["failures"][0]["reason"]
    assert readers() == []
    assert lab.db.engine.pool.checkedout() == 0


@pytest.mark.parametrize(
    ("seqs", "split_at"),
    [
        ([7, 7, 7, 7], 3),  # even: two batches each side
        ([1, 100], 2),  # one big batch: it gets a half of its own
        ([100, 1, 1], 2),
        ([3, 1, 1, 1, 1, 1], 3),  # 4 | 4
    ],
)
def test_r_aud_3_the_split_point_halves_the_events(seqs, split_at):
    class Head:
        def __init__(self, seq: int) -> None:
            self.seq = seq

    heads = {batch: Head(seq) for batch, seq in enumerate(seqs, 1)}
    assert chains._split_point(heads, split_from=0) == split_at
    assert chains._split_point(heads, split_from=sum(seqs) + 1) is None
    assert chains._split_point(heads, split_from=None) is None
    assert chains._split_point({1: Head(100)}, split_from=0) is None
