"""The audit trail: hash chains recomputable by anyone (R-AUD-1), refused rewrites in the database
itself (R-AUD-2), and verification that names the first broken link (R-AUD-3)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta, timezone

import pytest
import rfc8785
from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import DBAPIError

from labtrack.models import AdminEvent, BatchEvent
from tests.helpers import now

GENESIS = "0" * 64
UTC_MICROS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def sha256(text_: str) -> str:
    return hashlib.sha256(text_.encode("utf-8")).hexdigest()


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else json.loads(value)


# --- R-AUD-1 ----------------------------------------------------------------------------------


def test_r_aud_1_each_event_hash_is_recomputable_from_the_api_alone(lab):
    din = lab.at_lab()
    moment = now()
    lab.ok(lab.step(din, "digestion", occurred_at=moment.astimezone(timezone(timedelta(hours=2))).isoformat()))
    events = lab.ok(lab.get("clinic", f"/batches/{din}/events"), 200)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    previous = GENESIS
    for event in events:
        assert UTC_MICROS.match(event["occurred_at"]), event["occurred_at"]
        assert UTC_MICROS.match(event["recorded_at"]), event["recorded_at"]
        body = {
            "batch": din,
            "seq": event["seq"],
            "type": event["type"],
            "occurred_at": event["occurred_at"],
            "recorded_at": event["recorded_at"],
            "actor": event["actor"]["username"],
            "data": event["data"],
        }
        assert event["canonical"] == rfc8785.dumps(body).decode("utf-8")
        assert event["prev_hash"] == previous
        assert event["hash"] == sha256(f"{previous}\n{event['canonical']}")
        previous = event["hash"]
    digestion = events[-1]
    # an offset given by the client is hashed as the same instant in UTC with Z and microseconds
    assert digestion["occurred_at"] == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert (batch["seq"], batch["head_hash"]) == (len(events), previous)


def test_r_aud_1_the_admin_chain_is_hashed_the_same_way(lab):
    rows = lab.sql("SELECT seq, type, actor, data, prev_hash, hash, canonical FROM admin_events ORDER BY seq")
    assert len(rows) >= 10  # two clinics, eight users, lots and equipment of the test lab
    previous = GENESIS
    for position, row in enumerate(rows, start=1):
        body = json.loads(row.canonical)
        assert (body["stream"], body["seq"], body["type"], body["actor"]) == ("admin", position, row.type, row.actor)
        assert body["data"] == as_dict(row.data)
        assert row.canonical == rfc8785.dumps(body).decode("utf-8")
        assert row.prev_hash == previous
        assert row.hash == sha256(f"{previous}\n{row.canonical}")
        previous = row.hash


# --- R-AUD-2 ----------------------------------------------------------------------------------

REFUSED = [
    "UPDATE batch_events SET type = 'forged'",
    "UPDATE batch_events SET data = data",
    "DELETE FROM batch_events",
    "DELETE FROM batch_events WHERE seq = (SELECT max(seq) FROM batch_events)",
    "UPDATE admin_events SET actor = 'mallory'",
    "DELETE FROM admin_events",
]


def event_counts(lab) -> tuple[int, int]:
    return (lab.sql("SELECT count(*) FROM batch_events")[0][0], lab.sql("SELECT count(*) FROM admin_events")[0][0])


def assert_intact(lab) -> None:
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"] is True, report["failures"]


@pytest.mark.parametrize("statement", REFUSED)
def test_r_aud_2_the_database_refuses_update_and_delete_on_event_tables(lab, statement):
    lab.at_lab()
    before = event_counts(lab)
    with pytest.raises(DBAPIError, match="append-only"):
        lab.sql(statement)
    assert event_counts(lab) == before
    assert_intact(lab)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE checkpoints SET root = 'f'",
        "DELETE FROM checkpoints",
        "UPDATE checkpoint_leaves SET seq = 1",
        "DELETE FROM checkpoint_leaves",
    ],
)
def test_r_aud_2_r_aud_4_the_database_refuses_update_and_delete_on_signed_checkpoints(lab, statement):
    lab.at_lab()
    lab.ok(lab.post("qa", "/audit/checkpoints"), 201)
    stored = lab.sql("SELECT id, root FROM checkpoints"), lab.sql("SELECT * FROM checkpoint_leaves")
    with pytest.raises(DBAPIError, match="append-only"):
        lab.sql(statement)
    assert (lab.sql("SELECT id, root FROM checkpoints"), lab.sql("SELECT * FROM checkpoint_leaves")) == stored
    assert_intact(lab)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE batch_events",
        "TRUNCATE admin_events",
        "TRUNCATE checkpoints CASCADE",
        "TRUNCATE batches CASCADE",
        "TRUNCATE users CASCADE",
    ],
)
def test_r_aud_2_postgres_refuses_truncate_on_event_tables(lab, statement):
    lab.at_lab()
    before = event_counts(lab)
    with pytest.raises(DBAPIError, match="append-only"):
        lab.sql(statement)
    assert event_counts(lab) == before
    assert_intact(lab)


# --- R-AUD-3 ----------------------------------------------------------------------------------


@contextmanager
def triggers_bypassed(lab) -> Iterator[Connection]:
    """What someone with database rights could do: drop the SQLite triggers, or skip them in
    PostgreSQL's replica mode for one transaction. Verification must still catch the change."""
    with lab.db.engine.begin() as connection:
        if lab.db.is_sqlite:
            guards = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%append-only%'"
            for name in connection.execute(text(guards)).scalars().all():
                connection.execute(text(f'DROP TRIGGER "{name}"'))
        else:
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        yield connection


def batch_id(lab, din: str) -> int:
    return lab.sql("SELECT id FROM batches WHERE din = :din", din=din)[0][0]


def event_of(connection: Connection, batch: int, seq: int) -> BatchEvent:
    return connection.execute(select(BatchEvent).where(BatchEvent.batch_id == batch, BatchEvent.seq == seq)).one()


def set_event(connection: Connection, batch: int, seq: int, **values) -> None:
    connection.execute(update(BatchEvent).where(BatchEvent.batch_id == batch, BatchEvent.seq == seq).values(**values))


def change_data(connection: Connection, batch: int) -> None:
    row = event_of(connection, batch, 5)
    forged = as_dict(row.data)
    forged["values"]["temperature_c"] = 41
    set_event(connection, batch, 5, data=forged)


def change_actor(connection: Connection, batch: int) -> None:
    other = connection.execute(text("SELECT id FROM users WHERE username = 'clinic_b'")).scalar_one()
    set_event(connection, batch, 2, actor_id=other)


def backdate(connection: Connection, batch: int) -> None:
    row = event_of(connection, batch, 4)
    set_event(connection, batch, 4, occurred_at=row.occurred_at - timedelta(hours=1))


def change_canonical(connection: Connection, batch: int) -> None:
    row = event_of(connection, batch, 3)
    set_event(connection, batch, 3, canonical=row.canonical.replace('"seal_id":"SEAL-1"', '"seal_id":"SEAL-9"'))


def change_hash(connection: Connection, batch: int) -> None:
    set_event(connection, batch, 4, hash="f" * 64)


def rewrite_consistently(connection: Connection, batch: int) -> None:
    """A careful forger rewrites data, canonical text and hash together; the next link still breaks."""
    row = event_of(connection, batch, 5)
    body = json.loads(row.canonical)
    body["data"]["values"]["temperature_c"] = 41
    canonical = rfc8785.dumps(body).decode("utf-8")
    set_event(
        connection, batch, 5, data=body["data"], canonical=canonical, hash=sha256(f"{row.prev_hash}\n{canonical}")
    )


def delete_last(connection: Connection, batch: int) -> None:
    connection.execute(delete(BatchEvent).where(BatchEvent.batch_id == batch, BatchEvent.seq == 7))


def delete_middle(connection: Connection, batch: int) -> None:
    connection.execute(delete(BatchEvent).where(BatchEvent.batch_id == batch, BatchEvent.seq == 3))


TAMPERING: list[tuple[Callable[[Connection, int], None], int, str]] = [
    (change_data, 5, "canonical text does not match"),
    (change_actor, 2, "canonical text does not match"),
    (backdate, 4, "canonical text does not match"),
    (change_canonical, 3, "canonical text does not match"),
    (change_hash, 4, "hash does not match"),
    (rewrite_consistently, 6, "prev_hash does not match"),
    (delete_last, 7, "head does not match"),
    (delete_middle, 3, "sequence gap"),
]


def tampered_lab(lab, tamper: Callable[[Connection, int], None]) -> tuple[str, str]:
    """A processed batch (seven events) is tampered with; another patient's batch is not."""
    victim, bystander = lab.processed(), lab.batch(mrn="MRN-2")
    assert lab.ok(lab.get("qa", f"/batches/{victim}"), 200)["seq"] == 7
    with triggers_bypassed(lab) as connection:
        tamper(connection, batch_id(lab, victim))
    return victim, bystander


def run_cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["labtrack", "audit", "verify", *args])


@pytest.mark.parametrize(("tamper", "seq", "reason"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING])
def test_r_aud_3_api_names_the_first_broken_link(lab, tamper, seq, reason):
    victim, bystander = tampered_lab(lab, tamper)
    for query in ({}, {"din": victim}):
        report = lab.ok(lab.get("qa", "/audit/verify", **query), 200)
        assert report["ok"] is False
        assert len(report["failures"]) == 1, report["failures"]
        failure = report["failures"][0]
        assert (failure["din"], failure["seq"]) == (victim, seq)
        assert reason in failure["reason"]
    whole = lab.ok(lab.get("admin", "/audit/verify"), 200)
    assert whole["batches_checked"] == 2
    assert lab.ok(lab.get("qa", "/audit/verify", din=bystander), 200)["ok"] is True


def assert_cli_names_break(app, din: str, seq: int, reason: str, bystander: str) -> None:
    """``audit verify``, full and for ``din``, exits 1 naming the break at ``seq``, and not the bystander."""
    for args in ((), ("--din", din)):
        result = run_cli(app, *args)
        assert result.exit_code == 1, result.output
        assert f"FAIL {din} seq {seq}: " in result.output
        assert reason in result.output
        assert bystander not in result.output


@pytest.mark.parametrize(("tamper", "seq", "reason"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING])
def test_r_aud_3_cli_exits_1_naming_the_first_broken_link(app, lab, tamper, seq, reason):
    victim, bystander = tampered_lab(lab, tamper)
    assert_cli_names_break(app, victim, seq, reason, bystander)
    result = run_cli(app, "--din", bystander)
    assert result.exit_code == 0, result.output


def test_r_aud_3_only_the_first_broken_link_of_a_batch_is_reported(lab):
    def break_twice(connection: Connection, batch: int) -> None:
        change_hash(connection, batch)
        change_data(connection, batch)

    victim, _ = tampered_lab(lab, break_twice)
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert [(f["din"], f["seq"]) for f in report["failures"]] == [(victim, 4)]


def test_r_aud_3_a_tampered_admin_chain_is_reported(app, lab):
    with triggers_bypassed(lab) as connection:
        row = connection.execute(select(AdminEvent).where(AdminEvent.seq == 4)).one()
        data = as_dict(row.data)
        assert (data["key"], data["new"]["role"]) == ("tech", "technician")
        forged = data | {"new": data["new"] | {"role": "admin"}}
        connection.execute(update(AdminEvent).where(AdminEvent.seq == 4).values(data=forged))
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"] is False
    assert [(f["din"], f["seq"]) for f in report["failures"]] == [("admin", 4)]
    result = run_cli(app)
    assert result.exit_code == 1
    assert "FAIL admin seq 4: " in result.output


def test_r_aud_3_an_intact_database_verifies(app, lab):
    dins = [lab.processed(), lab.batch("bone_marrow", mrn="MRN-2"), lab.batch(mrn="MRN-3")]
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert {key: report[key] for key in ("ok", "batches_checked", "events_checked", "failures")} == {
        "ok": True,
        "batches_checked": 3,
        "events_checked": 7 + 1 + 1 + lab.sql("SELECT count(*) FROM admin_events")[0][0],
        "failures": [],
    }
    result = run_cli(app)
    assert result.exit_code == 0, result.output
    assert "OK: 3 batch(es)" in result.output
    assert run_cli(app, "--din", dins[1]).exit_code == 0


def test_r_aud_3_verification_is_for_qa_and_admin(lab):
    din = lab.batch()
    for username in ("tech", "clinic"):
        assert lab.get(username, "/audit/verify").status_code == 403
        assert lab.get(username, "/audit/verify", din=din).status_code == 403
    assert lab.get("qa", "/audit/verify", din=f"{din[:7]}999999").status_code == 404
