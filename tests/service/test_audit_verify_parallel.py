"""A full verification over many events on PostgreSQL scans them on two connections that share one
exported snapshot, each half of the batches by its own reader (R-AUD-3, performance issue 7); so does
an incremental one over many new events (R-SCL-2), whose snapshot is begun before its base is read.

``split_from=0`` forces the split on a few batches. The report must be exactly the one a single
connection gives, intact or tampered in either half, and both halves must see one snapshot: events
written by others once the scan has started are in neither half.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event

from labtrack import jobs
from labtrack.audit import chains, keys
from tests.api.test_audit_trail import batch_id, change_data, change_hash, set_event, triggers_bypassed
from tests.helpers import PROCESS_ORDER
from tests.service.test_audit_verify_streaming import EVENTS, at_lab, processed, readers
from tests.workers.test_checkpoints import make_checkpoint, rewrite_consistently

SHARE_SNAPSHOT = "SET TRANSACTION SNAPSHOT"
SPLIT, ONE_CONNECTION = 0, None  # split_from: always split, never split


def run(lab, split_from: int | None, verifier=chains.verify) -> dict:
    """``chains.verify`` (or ``verify_recent``) as the CLI runs it: a fresh reader session, closed afterwards."""
    session = lab.db.reader()
    try:
        with lab.app.app_context():
            trusted = keys.trusted_public_key(lab.app.config)
            return verifier(session, public_key=trusted, split_from=split_from).as_dict()
    finally:
        session.close()


def recent(lab, split_from: int | None) -> dict:
    return run(lab, split_from, chains.verify_recent)


def verified_at_lab(lab, count: int) -> list[str]:
    """``count`` batches at the lab (four events each), checkpointed, the checkpoint vouched for by a run."""
    dins = at_lab(lab, count)
    make_checkpoint(lab)
    with lab.app.app_context():
        assert jobs.record_incremental(lab.db, keys.trusted_public_key(lab.app.config)).ok
    return dins


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


@pytest.mark.postgres
@pytest.mark.parametrize("split_from", [SPLIT, ONE_CONNECTION], ids=["split", "one-connection"])
def test_r_scl_2_incremental_verification_reads_its_base_and_the_events_in_one_snapshot(lab, statements, split_from):
    """Once the base (the newest vouched-for checkpoint) is read, another transaction appends an event:
    the run must not see it. At READ COMMITTED (the snapshot begun after the base's read) it would."""
    first, second = verified_at_lab(lab, 2)
    lab.ok(lab.step(first, "digestion"))
    unseen = recent(lab, split_from)
    written: list[str] = []

    def write_meanwhile(_connection, _cursor, statement, *_args) -> None:
        if "audit_verifications" in statement and not written:
            lab.ok(lab.step(second, "digestion"))
            written.append(second)

    event.listen(lab.db.engine, "after_cursor_execute", write_meanwhile)
    try:
        report = recent(lab, split_from)
    finally:
        event.remove(lab.db.engine, "after_cursor_execute", write_meanwhile)
    assert written, "the base was not read"
    assert report == unseen
    assert (report["ok"], report["mode"]) == (True, "incremental"), report["failures"]
    assert split_runs(statements) == (2 if split_from == SPLIT else 0)
    seen = recent(lab, split_from)  # a new snapshot sees it
    assert seen["ok"] is True, seen["failures"]
    assert seen["events_checked"] == unseen["events_checked"] + 1


@pytest.mark.postgres
@pytest.mark.parametrize("victim_index", [0, 3], ids=["first-half", "second-half"])
@pytest.mark.parametrize(
    ("tamper", "seq", "reason"), [(change_data, 5, "canonical text"), (change_hash, 4, "rewritten")]
)
def test_r_scl_2_a_split_incremental_run_reports_what_one_connection_reports(
    lab, statements, monkeypatch, victim_index, tamper, seq, reason
):
    """Over many new events the incremental run reads them on two connections sharing its snapshot, a
    statement per ``EXTEND_CHUNK`` batches on each; intact or broken in either half, the report is the same."""
    monkeypatch.setattr(chains, "PREFETCH_ROWS", 3)  # every chain straddles chunks
    monkeypatch.setattr(chains, "EXTEND_CHUNK", 1)  # a statement per batch: two on each connection
    dins = verified_at_lab(lab, 4)
    for din in dins:
        for name in PROCESS_ORDER["adipose"]:
            lab.ok(lab.step(din, name))
    intact = recent(lab, SPLIT)
    assert split_runs(statements) == 1
    assert intact == recent(lab, ONE_CONNECTION)
    assert split_runs(statements) == 1
    assert (intact["ok"], intact["batches_checked"]) == (True, 4), intact["failures"]
    assert intact["events_checked"] == 4 * 3 + lab.sql("SELECT count(*) FROM admin_events")[0][0]
    victim = dins[victim_index]
    with triggers_bypassed(lab) as connection:
        tamper(connection, batch_id(lab, victim))
    split = recent(lab, SPLIT)
    assert split_runs(statements) == 2
    assert split == recent(lab, ONE_CONNECTION)
    assert [(f["din"], f["seq"]) for f in split["failures"]] == [(victim, seq)]
    assert reason in split["failures"][0]["reason"]
    assert readers() == []
    assert lab.db.engine.pool.checkedout() == 0
