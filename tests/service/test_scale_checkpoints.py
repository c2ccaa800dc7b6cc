"""R-SCL-3: the newest checkpoint's leaves and tree are kept, so a checkpoint and an inclusion proof cost
O(changed streams + log n); R-SCL-2: incremental verification from the newest verified checkpoint."""

from __future__ import annotations

import random
import re

import pytest
from sqlalchemy import event, select, update

from labtrack import jobs
from labtrack.audit import chains, checkpoints, keys, tree
from labtrack.domain.merkle import Leaf, MerkleTree, sort_leaves, verify_inclusion
from labtrack.models import BatchEvent, CheckpointHead
from tests.api.test_audit_trail import triggers_bypassed
from tests.service.test_scale_indexes import plans_of
from tests.workers.test_checkpoints import make_checkpoint, rewrite_consistently


def leaf(stream: str, seq: int) -> Leaf:
    return Leaf(stream, seq, f"{seq:064x}")


def test_r_scl_3_the_kept_tree_is_the_rebuilt_tree_after_changes_and_insertions(db):
    """Random rounds of changed and new streams (new ones before, among and after the old): after each, the
    kept root and every proof are those of ``MerkleTree`` over all current leaves."""
    rng = random.Random(18)
    current: dict[str, Leaf] = {}
    with db.engine.begin() as connection:
        for round_ in range(12):
            changed = [leaf(s, current[s].seq + 1) for s in rng.sample(sorted(current), min(len(current), 3))]
            prefix = "A" if round_ % 3 else "Z"
            fresh = [leaf(f"{prefix}{rng.randrange(10**6):06d}", 1) for _ in range(rng.randint(0, 5))]
            if round_ == 5:
                fresh.append(leaf("admin", round_))
            fresh = [f for f in fresh if f.stream not in current]
            size = tree.apply(connection, changed + fresh)
            current.update({f.stream: f for f in changed + fresh})
            ordered = sort_leaves(list(current.values()))
            rebuilt = MerkleTree([x.data for x in ordered])
            assert size == len(ordered) == tree.size(connection)
            assert tree.root(connection, size) == rebuilt.root
            assert tree.all_leaves(connection) == ordered
            for index, expected in enumerate(ordered):
                assert tree.position_of(connection, expected.stream) == (index, expected)
                path = tree.inclusion_path(connection, index, size)
                assert path == rebuilt.inclusion_proof(index)
                assert verify_inclusion(expected.data, index, size, path, rebuilt.root)


def count_statements(db):
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(db.engine, "before_cursor_execute", record)


def test_r_scl_3_applying_changes_takes_the_same_statements_for_10_or_1000_streams(db):
    """Set-based: the kept leaves read and changed, the siblings read and the nodes written, each in one
    statement joined against the changed streams, however many they are; the root stays the rebuilt one."""
    streams = [f"A9998{n:08d}" for n in range(3000)]
    current = {stream: leaf(stream, 1) for stream in streams}
    counts = []
    with db.engine.begin() as connection:
        tree.apply(connection, list(current.values()))
        for round_, changed in enumerate((10, 1000)):
            moved = [leaf(stream, round_ + 2) for stream in random.Random(round_).sample(streams, changed)]
            seen, stop = count_statements(db)
            try:
                size = tree.apply(connection, moved)
            finally:
                stop()
            counts.append(len(seen))
            current.update({moved_leaf.stream: moved_leaf for moved_leaf in moved})
            assert tree.root(connection, size) == MerkleTree([x.data for x in sort_leaves(list(current.values()))]).root
    assert counts[0] == counts[1] <= 5, counts


def test_r_scl_3_a_checkpoint_reads_only_the_streams_that_changed_and_proves_in_log_n(lab, db):
    dins = [lab.batch(mrn=f"MRN-{i}") for i in range(6)]
    first = make_checkpoint(lab)
    lab.ok(lab.harvest(dins[2], patient_mrn="MRN-2"))
    seen, stop = count_statements(db)
    try:
        second = make_checkpoint(lab)
    finally:
        stop()
    assert second["tree_size"] == first["tree_size"] == 7  # six batches and the admin chain
    stored = lab.sql("SELECT stream FROM checkpoint_leaves WHERE checkpoint_id = :id", id=second["id"])
    assert [row[0] for row in stored] == [dins[2]]  # the one stream that changed, and nothing rewritten
    heads = checkpoints.current_heads(db.reader())
    assert second["root"] == MerkleTree([h.data for h in heads]).root.hex()
    assert not any("GROUP BY" in s and "checkpoint_leaves" in s for s in seen)  # no scan of every leaf
    assert len(seen) < 25, seen
    with db.engine.connect() as connection:
        position, kept = tree.position_of(connection, dins[2])
        path = tree.inclusion_path(connection, position, second["tree_size"])
    assert kept == next(h for h in heads if h.stream == dins[2])
    assert len(path) == 3  # ceil(log2(7))
    assert verify_inclusion(kept.data, position, 7, path, bytes.fromhex(second["root"]))


def test_r_scl_3_a_checkpoint_refuses_to_build_on_an_altered_kept_tree(lab):
    lab.batch()
    make_checkpoint(lab)
    with triggers_bypassed(lab) as connection:
        connection.execute(update(CheckpointHead).values(hash="0" * 64))
        connection.execute(update(tree.CheckpointNode).values(hash="0" * 64))
    refused = lab.post("qa", "/audit/checkpoints")
    assert refused.status_code == 409
    assert "cannot be built on" in refused.get_json()["detail"]


def test_r_scl_2_incremental_verification_reads_only_what_came_after_the_verified_checkpoint(app, lab, db):
    dins = [lab.batch(mrn=f"MRN-{i}") for i in range(4)]
    assert lab.ok(lab.get("qa", "/audit/verify"), 200)["since_checkpoint"] is None  # nothing verified: all
    make_checkpoint(lab)
    with app.app_context():
        recorded = jobs.record_incremental(db, keys.trusted_public_key(app.config))
    assert recorded.ok
    assert recorded.mode == "incremental"
    base = lab.sql("SELECT max(checkpoint_id) FROM audit_verifications WHERE status = 'done'")[0][0]
    lab.ok(lab.harvest(dins[1], patient_mrn="MRN-1"))
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert (report["ok"], report["mode"], report["since_checkpoint"]) == (True, "incremental", base)
    assert report["batches_checked"] == 4  # all recorded within COMMIT_MARGIN of the base: each from its signed head
    assert report["events_checked"] == 1 + lab.sql("SELECT count(*) FROM admin_events")[0][0]
    # a new event must extend the head the checkpoint signed: a rewrite under it is named
    rewrite_consistently(db, dins[1], 1, {"note": "forged"})
    broken = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert [(f["din"], f["seq"]) for f in broken["failures"]] == [(dins[1], 1)]
    assert "rewritten" in broken["failures"][0]["reason"]


def test_r_scl_2_a_forged_event_after_the_signed_head_is_named(app, lab, db):
    din = lab.batch()
    make_checkpoint(lab)
    with app.app_context():
        assert jobs.record_incremental(db, keys.trusted_public_key(app.config)).ok
    lab.ok(lab.harvest(din))
    with triggers_bypassed(lab) as connection:
        batch_id = connection.execute(select(BatchEvent.batch_id).where(BatchEvent.seq == 2)).scalar_one()
        connection.execute(
            update(BatchEvent).where(BatchEvent.batch_id == batch_id, BatchEvent.seq == 2).values(data={"x": 1})
        )
    with app.app_context():
        report = chains.verify_recent(db.reader(), public_key=keys.trusted_public_key(app.config))
    assert [(f["din"], f["seq"]) for f in report.failures] == [(din, 2)]
    assert "canonical" in report.failures[0]["reason"]


@pytest.mark.postgres
def test_r_scl_2_incremental_verification_reads_by_index_what_moved_never_every_batch_or_leaf(app, lab, db):
    """Its cost is the new events', whatever the history. Each moved stream's signed leaf is read backwards
    on the primary key (joined, the planner hashed every leaf ever signed); the new events are driven by the
    batches that moved, their DINs carried in (joined to the batches table, the planner sorted every batch
    ever registered), from the partitions that hold those batches only."""
    dins = [lab.batch(mrn=f"MRN-{i}") for i in range(3)]
    make_checkpoint(lab)
    key = keys.trusted_public_key(app.config)
    with app.app_context():
        assert jobs.record_incremental(db, key).ok
    lab.ok(lab.harvest(dins[1], patient_mrn="MRN-1"))
    session = db.reader()
    try:
        plans = plans_of(db, lambda: chains.verify_recent(session, public_key=key), ("unnest",), seqscan=True)
    finally:
        session.close()
    leaves = [plan for statement, plan in plans if "checkpoint_leaves" in statement]
    events = [plan for statement, plan in plans if "batch_events" in statement]
    assert len(leaves) == len(events) == 1, plans
    assert "Hash" not in leaves[0], leaves[0]
    assert "Seq Scan on checkpoint_leaves" not in leaves[0], leaves[0]
    assert "Index Scan Backward using pk_checkpoint_leaves" in leaves[0], leaves[0]
    assert " on batches" not in events[0], events[0]
    # the run reads the three batches (each with an event within the commit margin of the base)
    holding = {row[0] for row in lab.sql("SELECT DISTINCT tableoid::regclass::text FROM batch_events")}
    assert set(re.findall(r" on (batch_events_\w+)", events[0])) == holding, events[0]
    # bounded by the batches' ids, so that partitions made ahead (or long past) are not planned at all
    assert re.search(r"\(batch_id >= '\d+'::bigint\) AND \(batch_id <= '\d+'::bigint\)", events[0]), events[0]


def test_r_scl_3_one_batch_proves_its_leaf_by_inclusion_not_by_reading_the_newest_checkpoints_leaves(lab, db):
    """The record's check stands on the batch's own leaf: its kept leaf equals the row the newest checkpoint
    signed for it and its audit path leads to the signed root. The other streams' leaf rows are not read, so
    the cost does not grow with the streams that checkpoint wrote."""
    dins = [lab.batch(mrn=f"MRN-{i}") for i in range(5)]
    make_checkpoint(lab)  # the first checkpoint writes every stream
    seen, stop = count_statements(db)
    try:
        report = lab.ok(lab.get("qa", "/audit/verify", din=dins[3]), 200)
    finally:
        stop()
    assert (report["ok"], report["mode"], report["checkpoint"]["ok"]) == (True, "batch", True)
    assert not any("checkpoint_leaves" in s and "checkpoint_heads" in s for s in seen)  # no leaf-by-leaf comparison


def test_r_scl_3_one_batch_whose_kept_leaf_was_altered_is_anchored_on_the_signed_leaves(lab, db):
    """Altering the batch's kept leaf breaks its inclusion proof: the check falls back to the checkpoint's
    signed leaves, reports the kept tree, and a rewrite under the signed head is still named."""
    dins = [lab.batch(mrn=f"MRN-{i}") for i in range(3)]
    make_checkpoint(lab)
    rewrite_consistently(db, dins[1], 1, {"note": "forged"})
    with triggers_bypassed(lab) as connection:
        forged = lab.sql(
            "SELECT hash FROM batch_events e JOIN batches b ON b.id = e.batch_id WHERE b.din = :d", d=dins[1]
        )
        connection.execute(update(CheckpointHead).where(CheckpointHead.stream == dins[1]).values(hash=forged[-1][0]))
    report = lab.ok(lab.get("qa", "/audit/verify", din=dins[1]), 200)
    assert report["ok"] is False
    reasons = {(f["din"], f["seq"]): f["reason"] for f in report["failures"]}
    assert sorted(reasons) == sorted([(dins[1], 1), ("checkpoint", 1)]), reasons
    assert "rewritten" in reasons[(dins[1], 1)]
    assert "kept for it differ" in reasons[("checkpoint", 1)]
    untouched = lab.ok(lab.get("qa", "/audit/verify", din=dins[0]), 200)
    assert untouched["failures"] == []  # another batch's leaf still proves: the scope is the one batch
