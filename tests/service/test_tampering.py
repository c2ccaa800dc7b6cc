"""Tampering by someone with database rights, beyond the edits of tests/api/test_audit_trail.py:
events reordered, events inserted in the middle or appended at the end, a forged or altered
checkpoint, and a replaced signing key (R-AUD-3, R-AUD-4).

Each must be found by ``GET /api/v1/audit/verify``, by ``flask labtrack audit verify`` and, for a
batch's export, by the offline verifier, naming the batch (DIN) and the seq. The forger works as
the existing tests' forger does: triggers bypassed, hashes recomputed where that helps them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, insert, select, update

from config import Config
from labtrack import create_app
from labtrack.audit import checkpoints, keys, statement, tree, verify
from labtrack.audit.keys import KEY_FILE, LabKey
from labtrack.clock import utcnow
from labtrack.domain.hashing import GENESIS_HASH, canonical_body, link_hash
from labtrack.domain.merkle import MerkleTree
from labtrack.models import Batch, BatchEvent, Checkpoint, CheckpointLeaf, User
from tests.api.test_audit_trail import assert_cli_names_break, batch_id, run_cli, triggers_bypassed
from tests.workers.test_checkpoints import export_of, make_checkpoint, rewrite_consistently, verify_offline

EVENTS = 7  # a processed batch: registered, harvest, hand-off, receipt and three steps


@dataclass(frozen=True)
class Victim:
    batch: int
    din: str
    signed_at: datetime | None  # when the checkpoint taken before the tampering was signed


# --- what the forger does ---------------------------------------------------------------------


def events_of(connection: Connection, batch: int) -> list:
    return connection.execute(
        select(BatchEvent, User.username)
        .join(User, User.id == BatchEvent.actor_id)
        .where(BatchEvent.batch_id == batch)
        .order_by(BatchEvent.seq)
    ).all()


def move(connection: Connection, batch: int, seq: int, to: int) -> None:
    connection.execute(
        update(BatchEvent.__table__).where(BatchEvent.batch_id == batch, BatchEvent.seq == seq).values(seq=to)
    )


def forge_event(connection: Connection, victim: Victim, seq: int, recorded_at: datetime) -> None:
    """A new event with a correct-looking hash: canonical text and hash computed as the app would."""
    previous = connection.execute(
        select(BatchEvent.hash).where(BatchEvent.batch_id == victim.batch, BatchEvent.seq == seq - 1)
    ).scalar_one()
    tech = connection.execute(select(User.id).where(User.username == "tech")).scalar_one()
    data = {"note": "sterility re-test passed"}
    canonical = canonical_body(
        stream_key=victim.din,
        seq=seq,
        type="note",
        occurred_at=recorded_at,
        recorded_at=recorded_at,
        actor="tech",
        data=data,
    )
    connection.execute(
        insert(BatchEvent.__table__).values(
            batch_id=victim.batch,
            seq=seq,
            type="note",
            occurred_at=recorded_at,
            recorded_at=recorded_at,
            actor_id=tech,
            data=data,
            prev_hash=previous,
            hash=link_hash(previous, canonical),
            canonical=canonical,
        )
    )


def rehash(connection: Connection, victim: Victim) -> None:
    """Recompute every canonical text and hash from the rows as they now stand, and move the projection's head."""
    prev = GENESIS_HASH
    rows = events_of(connection, victim.batch)
    for event in rows:
        canonical = canonical_body(
            stream_key=victim.din,
            seq=event.seq,
            type=event.type,
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at,
            actor=event.username,
            data=event.data,
        )
        digest = link_hash(prev, canonical)
        connection.execute(
            update(BatchEvent.__table__)
            .where(BatchEvent.id == event.id)
            .values(canonical=canonical, prev_hash=prev, hash=digest)
        )
        prev = digest
    connection.execute(update(Batch.__table__).where(Batch.id == victim.batch).values(seq=rows[-1].seq, head_hash=prev))


def swap_events(connection: Connection, victim: Victim) -> None:
    """Seq 3 and 4 change places (one at a time: (batch_id, seq) is unique)."""
    move(connection, victim.batch, 3, 1000)
    move(connection, victim.batch, 4, 3)
    move(connection, victim.batch, 1000, 4)


def swap_and_rehash(connection: Connection, victim: Victim) -> None:
    swap_events(connection, victim)
    rehash(connection, victim)


def insert_in_middle(connection: Connection, victim: Victim) -> None:
    """Seq 3..7 move up by one, from the top down, and a forged event takes seq 3."""
    for seq in range(EVENTS, 2, -1):
        move(connection, victim.batch, seq, seq + 1)
    forge_event(connection, victim, 3, utcnow())


def insert_and_rehash(connection: Connection, victim: Victim) -> None:
    insert_in_middle(connection, victim)
    rehash(connection, victim)


def append_at_end(connection: Connection, victim: Victim) -> None:
    forge_event(connection, victim, EVENTS + 1, utcnow())


def append_backdated(connection: Connection, victim: Victim) -> None:
    """Appended with the projection's head moved too, claiming to be older than the last checkpoint."""
    assert victim.signed_at is not None
    forge_event(connection, victim, EVENTS + 1, victim.signed_at - timedelta(hours=1))
    rehash(connection, victim)


@dataclass(frozen=True)
class Case:
    tamper: Callable[[Connection, Victim], None]
    checkpointed: bool  # a checkpoint was signed before the tampering
    seq: int
    reason: str
    offline: str | None  # what the offline verifier says of the batch's export; None: only the database can tell


CASES = [
    Case(swap_events, False, 3, "prev_hash does not match", "event seq 3: its canonical text belongs to batch"),
    # with every hash recomputed, only the checkpoint can tell: it signed the old seq 7
    Case(swap_and_rehash, True, 7, "rewritten after it was checkpointed", "the history was rewritten"),
    Case(insert_in_middle, False, 4, "prev_hash does not match", "event seq 4: its canonical text belongs to batch"),
    Case(insert_and_rehash, True, 7, "rewritten after it was checkpointed", "the history was rewritten"),
    # the projection's head (seq 7) still names the last genuine event; the export cannot show that
    Case(append_at_end, False, 8, "events added", None),
    Case(append_backdated, True, 8, "inserted afterwards", "event seq 8 claims to have been recorded before"),
]


# --- what verification says -------------------------------------------------------------------


def failures(lab, **query) -> list[tuple[str, int, str]]:
    report = lab.ok(lab.get("qa", "/audit/verify", **query), 200)
    found = [(f["din"], f["seq"], f["reason"]) for f in report["failures"]]
    assert report["ok"] is (not found)
    return found


def assert_named(lab, app, din: str, seq: int, reason: str, bystander: str) -> None:
    """The API (whole database and the one batch) and the CLI name exactly this batch and seq."""
    for query in ({}, {"din": din}):
        ((named, at, why),) = failures(lab, **query)
        assert (named, at) == (din, seq), why
        assert reason in why
    assert failures(lab, din=bystander) == []
    assert_cli_names_break(app, din, seq, reason, bystander)


def published_key(lab) -> str:
    """The lab's public key as ``GET /audit/public-key`` serves it (PEM)."""
    return lab.get("qa", "/audit/public-key").get_data(as_text=True)


def offline(tmp_path: Path, export: str, public_pem: str, capsys) -> tuple[int, str]:
    """``python -m labtrack.audit.verify`` run in-process (its entry point, as the subprocess test runs it)."""
    (tmp_path / "export.jsonl").write_text(export)
    (tmp_path / "published.pem").write_text(public_pem)
    code = verify.main([str(tmp_path / "export.jsonl"), "--public-key", str(tmp_path / "published.pem")])
    return code, capsys.readouterr().out


def tamper_with(lab, case: Case) -> tuple[Victim, str]:
    din, bystander = lab.processed(), lab.batch(mrn="MRN-2")
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["seq"] == EVENTS
    signed_at = datetime.fromisoformat(make_checkpoint(lab)["created_at"]) if case.checkpointed else None
    victim = Victim(batch_id(lab, din), din, signed_at)
    with triggers_bypassed(lab) as connection:
        case.tamper(connection, victim)
    return victim, bystander


@pytest.mark.parametrize("case", CASES, ids=[case.tamper.__name__ for case in CASES])
def test_r_aud_3_r_aud_4_reordered_and_inserted_events_are_named(lab, app, tmp_path, capsys, case):
    victim, bystander = tamper_with(lab, case)
    assert_named(lab, app, victim.din, case.seq, case.reason, bystander)
    # the next checkpoint (every 10 minutes) does not launder it
    make_checkpoint(lab)
    assert_named(lab, app, victim.din, case.seq, case.reason, bystander)

    code, out = offline(tmp_path, export_of(lab, victim.din), published_key(lab), capsys)
    if case.offline is None:
        assert code == 0, out
        assert f"WARNING: events seq {EVENTS + 1}..{EVENTS + 1} were recorded after checkpoint" in out
    else:
        assert code == 1, out
        assert any(line.startswith("FAIL: ") and case.offline in line for line in out.splitlines()), out


def test_r_aud_3_an_untouched_lab_passes_every_verifier(lab, app, tmp_path, capsys):
    """The same journey without tampering: nothing is reported, so the cases above can fail."""
    din, bystander = lab.processed(), lab.batch(mrn="MRN-2")
    make_checkpoint(lab)
    lab.ok(lab.qc(din, "viability_pct", 88))
    assert failures(lab) == []
    assert run_cli(app).exit_code == 0
    make_checkpoint(lab)
    code, out = offline(tmp_path, export_of(lab, din), published_key(lab), capsys)
    assert code == 0, out
    assert failures(lab, din=bystander) == []


def test_r_aud_4_an_event_stamped_just_before_a_checkpoint_it_missed_is_no_forgery(lab, app):
    """An event is stamped before its transaction commits: one stamped within ``COMMIT_MARGIN`` before
    a checkpoint that does not cover it committed late, and the next checkpoint signs it."""
    din = lab.processed()
    signed_at = datetime.fromisoformat(make_checkpoint(lab)["created_at"])
    victim = Victim(batch_id(lab, din), din, signed_at)
    with triggers_bypassed(lab) as connection:
        forge_event(connection, victim, EVENTS + 1, signed_at - statement.COMMIT_MARGIN + timedelta(seconds=5))
        rehash(connection, victim)
    assert failures(lab) == []
    later = make_checkpoint(lab)["id"]
    leaf = lab.sql("SELECT seq FROM checkpoint_leaves WHERE stream = :din AND checkpoint_id = :id", din=din, id=later)
    assert [row.seq for row in leaf] == [EVENTS + 1]
    assert run_cli(app).exit_code == 0


# --- forged and altered checkpoints -------------------------------------------------------------


def forge_checkpoint(db, key: LabKey, key_id: str | None = None) -> int:
    """A checkpoint row over the current heads, written straight into the database, signed with ``key``."""

    def work(session) -> int:
        heads = checkpoints.current_heads(session)
        forged = checkpoints.sign_root(MerkleTree([h.data for h in heads]).root.hex(), len(heads), key, "A9999")
        forged.key_id = key_id or key.key_id  # the key id is not part of the signed statement
        session.add(forged)
        session.flush()
        leaves = [{"stream": h.stream, "checkpoint_id": forged.id, "seq": h.seq, "hash": h.hash} for h in heads]
        session.execute(insert(CheckpointLeaf), leaves)
        tree.rebuild(session.connection(), heads)  # the newest checkpoint's kept leaves and tree, as the lab's own
        return forged.id

    return db.write(work)


def rewritten_lab(lab, db) -> tuple[str, str, int]:
    """A genuine checkpoint, then a consistent rewrite of the victim's harvest (every hash recomputed)."""
    din, bystander = lab.processed(), lab.batch(mrn="MRN-2")
    genuine = make_checkpoint(lab)["id"]
    rewrite_consistently(db, din, 2, {"volume_ml": 999})
    return din, bystander, genuine


def verification_findings(lab, app, *cli_args: str) -> set[tuple[str, int]]:
    """(din, seq) of every failure the CLI reports; without CLI options, the API must report the same."""
    result = run_cli(app, *cli_args)
    assert result.exit_code == 1, result.output
    found = {(din, int(seq)) for din, seq in re.findall(r"^FAIL (\S+) seq (\d+): ", result.output, re.MULTILINE)}
    if not cli_args:
        assert {(din, seq) for din, seq, _ in failures(lab)} == found
    return found


@pytest.mark.parametrize(
    ("claimed", "reason", "offline_reason"),
    [
        ("forger", "not this lab's key", "not by the key given"),
        ("lab", "its signature does not verify", "the signature does not verify"),
    ],
)
def test_r_aud_4_a_checkpoint_signed_with_another_key_is_rejected_and_cannot_hide_a_rewrite(
    lab, app, db, tmp_path, capsys, claimed, reason, offline_reason
):
    published = published_key(lab)
    din, bystander, genuine = rewritten_lab(lab, db)
    forger = LabKey(Ed25519PrivateKey.generate())
    forged = forge_checkpoint(
        db, forger, key_id=keys.load_or_create(app.config["INSTANCE_PATH"]).key_id if claimed == "lab" else None
    )

    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert (report["checkpoint"]["id"], report["checkpoint"]["ok"]) == (forged, False)
    assert report["checkpoint"]["anchored_on"] == genuine
    by_stream = {(f["din"], f["seq"]): f["reason"] for f in report["failures"]}
    assert set(by_stream) == {("checkpoint", forged), (din, EVENTS)}
    assert reason in by_stream[("checkpoint", forged)]
    assert "rewritten" in by_stream[(din, EVENTS)]
    assert verification_findings(lab, app) == set(by_stream)
    assert [(named, at) for named, at, _ in failures(lab, din=bystander)] == [("checkpoint", forged)]
    # the lab refuses to sign on top of it
    refused = lab.post("qa", "/audit/checkpoints")
    assert refused.status_code == 409
    assert "cannot be built on" in refused.get_json()["detail"]
    # the export carries the forged checkpoint (it covers the rewritten head); the auditor's published key rejects it
    code, out = offline(tmp_path, export_of(lab, din), published, capsys)
    assert code == 1
    assert offline_reason in out


@pytest.mark.parametrize(
    "alter",
    [{"root": "0" * 64}, {"tree_size": 2}, {"root": "0" * 64, "tree_size": 2}],
    ids=["root", "tree_size", "both"],
)
def test_r_aud_4_an_altered_checkpoint_is_rejected_and_the_one_before_it_still_anchors(
    lab, app, db, tmp_path, capsys, alter
):
    din, bystander, genuine = rewritten_lab(lab, db)
    carried = make_checkpoint(lab)["id"]  # signs the rewritten batch's old head again: no laundering
    with triggers_bypassed(lab) as connection:
        connection.execute(update(Checkpoint.__table__).where(Checkpoint.id == carried).values(**alter))
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["checkpoint"]["anchored_on"] == genuine
    by_stream = {(f["din"], f["seq"]): f["reason"] for f in report["failures"]}
    assert set(by_stream) == {("checkpoint", carried), (din, EVENTS)}
    assert "differ from the signed statement" in by_stream[("checkpoint", carried)]
    assert "rewritten" in by_stream[(din, EVENTS)]
    assert verification_findings(lab, app) == set(by_stream)
    # an export signs nothing (R-SCL-2): both carry the newest, altered checkpoint, which the auditor rejects
    for batch in (din, bystander):
        code, out = offline(tmp_path, export_of(lab, batch), published_key(lab), capsys)
        assert code == 1
        assert "its root or tree size differ from what the signed statement says" in out


# --- a replaced signing key ---------------------------------------------------------------------


@pytest.fixture
def restart():
    """The key is read once per process: clearing the cache is what a restart does. Cleared again after."""
    yield keys.load_or_create.cache_clear
    keys.load_or_create.cache_clear()


def test_r_aud_4_a_replaced_signing_key_is_caught_by_the_pinned_public_key(lab, app, db, tmp_path, restart):
    """The attacker rewrites a batch, puts their own key in the instance folder and signs a checkpoint
    with it. The key the lab published (fetched once by the auditor, or pinned in the configuration
    outside the instance folder) is the trust anchor; the served key and the key file are not."""
    published = tmp_path / "published.pem"
    published.write_text(published_key(lab))
    app.config["LABTRACK_CHECKPOINT_PUBLIC_KEY"] = str(published)
    din, bystander, genuine = rewritten_lab(lab, db)
    assert verification_findings(lab, app) == {(din, EVENTS)}  # pinned and genuine: the rewrite is named

    attacker = Ed25519PrivateKey.generate()
    key_file = Path(app.config["INSTANCE_PATH"]) / KEY_FILE
    key_file.write_bytes(
        attacker.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    restart()
    swapped = keys.load_or_create(app.config["INSTANCE_PATH"])
    attacker_key_id = keys.key_id_of(attacker.public_key())
    assert swapped.key_id == attacker_key_id != keys.key_id_of(keys.load_public_pem(published.read_bytes()))
    # the app itself will not sign on top of a checkpoint made with another key ...
    refused = lab.post("qa", "/audit/checkpoints")
    assert refused.status_code == 409
    # ... so the attacker writes one signed with their key, which is now the key file's
    forged = forge_checkpoint(db, swapped)

    # pinned: the forged checkpoint is rejected, the genuine one still names the rewritten batch
    assert verification_findings(lab, app) == {("checkpoint", forged), (din, EVENTS)}
    assert failures(lab, din=bystander) != []  # the forged checkpoint is reported on any run

    # not pinned: the attacker's checkpoint verifies under the attacker's key, but the checkpoints
    # signed before the swap carry the old key id, so the swap itself is reported
    app.config["LABTRACK_CHECKPOINT_PUBLIC_KEY"] = None
    ((named, at, why),) = failures(lab)
    assert (named, at) == ("checkpoint", genuine)
    assert "the lab's signing key was replaced" in why

    # the auditor's own copy of the published key, on the command line
    assert verification_findings(lab, app, "--public-key", str(published)) == {("checkpoint", forged), (din, EVENTS)}

    # offline, the real command: the export carries the attacker's checkpoint; the published key rejects it
    export = export_of(lab, din)
    assert json.loads(export.splitlines()[-2])["id"] == forged
    result = verify_offline(tmp_path, export, published.read_text())
    assert result.returncode == 1, result.stdout
    assert f"checkpoint {forged} was signed by key {attacker_key_id}, not by the key given" in result.stdout


@pytest.mark.parametrize("content", [None, "not a key", "private"], ids=["missing", "garbage", "private-key"])
def test_r_aud_4_a_pinned_key_that_is_no_public_key_stops_the_start(database_url, tmp_path, content):
    """A wrong pin must not surface later as a failed verification (or a 500): the app refuses to start."""
    pinned = tmp_path / "published.pem"
    if content == "private":
        content = (
            Ed25519PrivateKey.generate()
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
    if content is not None:
        pinned.write_text(content)
    config = Config.from_env(
        instance_path=tmp_path / "instance", DATABASE_URL=database_url, LABTRACK_CHECKPOINT_PUBLIC_KEY=str(pinned)
    )
    with pytest.raises(RuntimeError, match="LABTRACK_CHECKPOINT_PUBLIC_KEY"):
        create_app(config)
