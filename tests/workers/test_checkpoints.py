"""Signed checkpoints, audit exports and the offline verifier (R-AUD-3, R-AUD-4)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import select, text, update

from labtrack.audit import checkpoints, verify
from labtrack.audit.keys import KEY_FILE, load_or_create
from labtrack.domain.hashing import GENESIS_HASH, canonical_body, link_hash
from labtrack.domain.merkle import MerkleTree
from labtrack.models import Batch, BatchEvent, CheckpointLeaf, User
from tests.api.test_audit_trail import triggers_bypassed
from tests.helpers import unimportable
from tests.workers.support import ROOT


def make_checkpoint(lab) -> dict:
    return lab.ok(lab.post("qa", "/audit/checkpoints"))


def rewrite_consistently(db, din: str, seq: int, data_change: dict) -> None:
    """What an attacker with database access does: change one event's data, recompute its hash and
    every later one, move the projection's head, with the append-only triggers out of the way."""
    with db.engine.begin() as connection:
        if db.is_sqlite:
            triggers = connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'batch_events'")
            ).all()
            for trigger in triggers:
                connection.execute(text(f"DROP TRIGGER {trigger.name}"))
        else:
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        batch_id = connection.execute(select(Batch.id).where(Batch.din == din)).scalar_one()
        events = connection.execute(
            select(BatchEvent, User.username)
            .join(User, User.id == BatchEvent.actor_id)
            .where(BatchEvent.batch_id == batch_id)
            .order_by(BatchEvent.seq)
        ).all()
        prev = GENESIS_HASH if seq == 1 else events[seq - 2].hash
        for event in events[seq - 1 :]:
            data = event.data | data_change if event.seq == seq else event.data
            canonical = canonical_body(
                stream_key=din,
                seq=event.seq,
                type=event.type,
                occurred_at=event.occurred_at,
                recorded_at=event.recorded_at,
                actor=event.username,
                data=data,
            )
            digest = link_hash(prev, canonical)
            connection.execute(
                update(BatchEvent.__table__)
                .where(BatchEvent.id == event.id)
                .values(data=data, canonical=canonical, prev_hash=prev, hash=digest)
            )
            prev = digest
        connection.execute(update(Batch.__table__).where(Batch.id == batch_id).values(head_hash=prev))
        if db.is_sqlite:
            for trigger in triggers:
                connection.execute(text(trigger.sql))


def verify_offline(tmp_path: Path, export: str, public_key: str) -> subprocess.CompletedProcess:
    """``python -m labtrack.audit.verify`` with no database configured, nothing to reach, and
    neither SQLAlchemy nor Flask (nor the rest of the app's stack) importable."""
    (tmp_path / "export.jsonl").write_text(export)
    (tmp_path / "lab.pem").write_text(public_key)
    path = f"{unimportable(tmp_path)}{os.pathsep}{ROOT}"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": path, "DATABASE_URL": "postgresql://nobody@192.0.2.1/none"}
    return subprocess.run(
        [sys.executable, "-m", "labtrack.audit.verify", str(tmp_path / "export.jsonl"), "--public-key", "lab.pem"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def export_of(lab, din: str, by: str = "qa") -> str:
    response = lab.get(by, f"/batches/{din}/audit-export")
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/x-ndjson"
    return response.get_data(as_text=True)


def test_r_aud_4_checkpoint_signs_the_rfc6962_root_of_every_stream_head(lab, app, db):
    dins = [lab.at_lab(), lab.batch(mrn="MRN-2")]
    made = make_checkpoint(lab)
    assert lab.get("tech", "/audit/checkpoints").status_code == 403
    assert lab.post("clinic", "/audit/checkpoints").status_code == 403
    assert [c["id"] for c in lab.ok(lab.get("admin", "/audit/checkpoints"), 200)] == [made["id"]]
    pem = lab.get("clinic", "/audit/public-key")
    assert pem.status_code == 200
    assert pem.mimetype == "application/x-pem-file"
    public_key = load_pem_public_key(pem.get_data())
    public_key.verify(bytes.fromhex(made["signature"]), made["statement"].encode())  # raises if forged
    assert made["statement"].split("\n")[1:4] == [app.config["LABTRACK_FIN"], str(made["tree_size"]), made["root"]]

    session = db.reader()
    heads = checkpoints.current_heads(session)
    session.close()
    assert [leaf.stream for leaf in heads] == [*sorted(dins), "admin"]
    assert made["tree_size"] == 3
    assert MerkleTree([leaf.data for leaf in heads]).root.hex() == made["root"]
    key_file = Path(app.config["INSTANCE_PATH"]) / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_r_aud_4_only_changed_heads_are_stored_and_older_checkpoints_keep_their_leaves(lab, db):
    first_din = lab.at_lab()
    lab.batch(mrn="MRN-2")
    first = make_checkpoint(lab)
    lab.ok(lab.step(first_din, "digestion"))
    second = make_checkpoint(lab)
    stored = lab.sql("SELECT checkpoint_id, stream FROM checkpoint_leaves WHERE checkpoint_id = :id", id=second["id"])
    assert [row.stream for row in stored] == [first_din]
    session = db.reader()
    try:
        for made in (first, second):
            leaves = checkpoints.leaves_of(session, made["id"])
            assert MerkleTree([leaf.data for leaf in leaves]).root.hex() == made["root"]
    finally:
        session.close()


def test_r_aud_3_r_aud_4_consistent_rewrite_with_recomputed_hashes_is_caught_by_the_checkpoint(lab, app, db):
    din = lab.at_lab()
    other = lab.batch(mrn="MRN-2")
    make_checkpoint(lab)
    rewrite_consistently(db, din, 2, {"volume_ml": 999})  # the harvest's volume
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"] is False
    assert report["checkpoint"]["ok"] is True
    (failure,) = report["failures"]
    assert failure["din"] == din
    assert failure["seq"] == 4  # the head the checkpoint signed: registered, harvest, hand-off, receipt
    assert "rewritten" in failure["reason"]
    assert other not in {f["din"] for f in report["failures"]}
    assert lab.ok(lab.get("qa", "/audit/verify", din=din), 200)["ok"] is False

    # the next checkpoint does not launder the rewrite: it carries the signed head forward
    make_checkpoint(lab)
    again = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert [f["din"] for f in again["failures"]] == [din]
    result = app.test_cli_runner().invoke(args=["labtrack", "audit", "verify"])
    assert result.exit_code == 1
    assert f"FAIL {din} seq 4" in result.output


def test_r_aud_4_altered_checkpoint_data_is_reported_and_not_built_on(lab, db):
    din = lab.at_lab()
    make_checkpoint(lab)
    with triggers_bypassed(lab) as connection:
        connection.execute(update(CheckpointLeaf.__table__).where(CheckpointLeaf.stream == din).values(seq=1))
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"] is False
    assert report["checkpoint"]["ok"] is False
    assert any(f["din"] == "checkpoint" and "leaves" in f["reason"] for f in report["failures"])
    refused = lab.post("qa", "/audit/checkpoints")
    assert refused.status_code == 409
    assert "cannot be built on" in refused.get_json()["detail"]


def test_r_aud_4_export_verifies_offline_with_no_database(lab, tmp_path):
    din = lab.at_lab()
    make_checkpoint(lab)
    lab.ok(lab.step(din, "digestion"))
    make_checkpoint(lab)  # an export signs nothing (R-SCL-2): the next checkpoint covers the step
    export = export_of(lab, din)
    records = [json.loads(line) for line in export.splitlines()]
    assert [r["record"] for r in records] == ["header"] + ["event"] * 5 + ["checkpoint", "inclusion_proof"]
    assert records[-1]["leaf"] == f"{din}:5:{records[5]['hash']}"
    public_key = lab.get("qa", "/audit/public-key").get_data(as_text=True)
    result = verify_offline(tmp_path, export, public_key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"OK: {din}: 5 event(s), checkpoint {records[-2]['id']}")
    assert "WARNING" not in result.stdout


def test_r_scl_2_an_export_signs_nothing_and_waits_for_the_next_checkpoint(lab):
    din = lab.at_lab()
    refused = lab.get("clinic", f"/batches/{din}/audit-export")
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "not_checkpointed_yet"
    assert lab.sql("SELECT count(*) FROM checkpoints")[0][0] == 0
    make_checkpoint(lab)
    lab.ok(lab.step(din, "digestion"))
    records = [json.loads(line) for line in export_of(lab, din, by="clinic").splitlines()]
    assert lab.sql("SELECT count(*) FROM checkpoints")[0][0] == 1
    assert records[-1]["leaf"].startswith(f"{din}:4:")  # the checkpoint covers the head before the step
    assert [r["seq"] for r in records if r["record"] == "event"] == [1, 2, 3, 4, 5]


def test_r_aud_4_offline_verifier_explains_what_was_tampered(lab, tmp_path, capsys):
    din = lab.at_lab()
    make_checkpoint(lab)
    export = export_of(lab, din)
    public_key = lab.get("qa", "/audit/public-key").get_data(as_text=True)
    lines = export.splitlines()

    def tampered(index: int, change) -> str:
        record = json.loads(lines[index])
        change(record)
        return "\n".join([*lines[:index], json.dumps(record), *lines[index + 1 :]]) + "\n"

    (tmp_path / "lab.pem").write_text(public_key)

    def run(text: str) -> str:
        (tmp_path / "tampered.jsonl").write_text(text)
        assert verify.main([str(tmp_path / "tampered.jsonl"), "--public-key", str(tmp_path / "lab.pem")]) == 1
        return capsys.readouterr().out

    # a changed canonical text: its hash no longer matches (the command itself, as an auditor runs it)
    edited = tampered(2, lambda r: r.update(canonical=r["canonical"].replace('"volume_ml":150', '"volume_ml":999')))
    result = verify_offline(tmp_path, edited, public_key)
    assert result.returncode == 1
    assert "event seq 2: hash does not match the canonical text" in result.stdout

    # the same change with every hash recomputed: only the checkpoint can tell
    records = [json.loads(line) for line in lines]
    prev = GENESIS_HASH
    for record in records[1:-2]:
        record["canonical"] = record["canonical"].replace('"volume_ml":150', '"volume_ml":999')
        record["prev_hash"], record["hash"] = prev, link_hash(prev, record["canonical"])
        prev = record["hash"]
    forged = "\n".join(json.dumps(r) for r in records) + "\n"
    assert "the history was rewritten after the checkpoint" in run(forged)

    # a checkpoint whose root was changed: in the readable field, then in the signed statement too
    assert "differ from what the signed statement says" in run(tampered(-2, lambda r: r.update(root="0" * 64)))

    def forge(record: dict) -> None:
        record["statement"] = record["statement"].replace(record["root"], "0" * 64)
        record["root"] = "0" * 64

    assert "signature does not verify" in run(tampered(-2, forge))
    # the readable copy edited, the hashed text left alone
    assert "readable actor differ" in run(tampered(1, lambda r: r.update(actor="somebody")))
    # events cut from the end
    assert "events were cut from the export" in run("\n".join([*lines[:-3], *lines[-2:]]) + "\n")
    # another lab's key
    (tmp_path / "lab.pem").write_text(load_or_create(str(tmp_path / "another-lab")).public_pem)
    assert "not by the key given" in run(export)


@pytest.mark.parametrize(("who", "status"), [("qa", 200), ("clinic", 200), ("other", 404), ("tech", 200)])
def test_r_aud_4_r_acc_1_audit_export_is_for_qa_and_the_batchs_own_clinic(lab, who, status):
    din = lab.batch()
    make_checkpoint(lab)
    assert lab.get(who, f"/batches/{din}/audit-export").status_code == status


def test_r_aud_4_cli_audit_checkpoint_signs_one_now(lab, app):
    lab.batch()
    result = app.test_cli_runner().invoke(args=["labtrack", "audit", "checkpoint"])
    assert result.exit_code == 0, result.output
    (made,) = lab.ok(lab.get("qa", "/audit/checkpoints"), 200)
    assert result.output.startswith(f"Checkpoint {made['id']}: 2 stream(s), root {made['root']}")
