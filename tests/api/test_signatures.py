"""Electronic signatures through the HTTP API (R-SIG-1..3): password re-entry, failures and lockout,
the manifestation on every signed record, and the binding of a signature to its record's hash."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from labtrack.models import SignatureFailure
from tests.api.test_audit_trail import batch_id, set_event, triggers_bypassed
from tests.api.test_identity import assert_problem
from tests.api.test_qc import (
    UTC_Z,
    complete_qc,
    deviations,
    dispose,
    enter,
    manual_deviation,
    processed_with,
    qc_footprint,
    stream,
    view,
)
from tests.helpers import PASSWORD, USERS, now, signature

WRONG = "not-the-password"
MANIFESTATION_KEYS = {"printed_name", "username", "signed_at", "meaning", "record_hash"}


def reject(lab, din: str, *, by: str = "qa", password: str = PASSWORD, meaning: str = "rejected"):
    body = {"reason": "Container cracked during centrifugation.", "signature": signature(meaning, password)}
    return lab.post(by, f"/batches/{din}/reject", body)


def failures(lab, username: str) -> list[tuple]:
    return lab.sql(
        "SELECT f.meaning, b.din FROM signature_failures f JOIN users u ON u.id = f.user_id"
        " LEFT JOIN batches b ON b.id = f.batch_id WHERE u.username = :username ORDER BY f.id",
        username=username,
    )


def locked(lab, username: str) -> bool:
    users = lab.ok(lab.get("admin", "/users"), 200)
    return next(u["locked"] for u in users if u["username"] == username)


# Each signed action, prepared on a fresh batch: (signer, meaning, request given a password).
def _verification(lab) -> tuple[str, str, str, Callable[[str], Any]]:
    din = lab.processed()
    result = enter(lab, din, "viability_pct", 88)
    return din, "tech2", "verified", lambda password: lab.verify(din, result["id"], password=password)


def _disposition(lab) -> tuple[str, str, str, Callable[[str], Any]]:
    din = lab.processed()
    deviation = manual_deviation(lab, din)
    return din, "qa", "approved", lambda password: dispose(lab, deviation, password=password)


def _release(lab) -> tuple[str, str, str, Callable[[str], Any]]:
    din = lab.awaiting_release()
    return din, "qa", "approved", lambda password: lab.release(din, password=password)


def _rejection(lab) -> tuple[str, str, str, Callable[[str], Any]]:
    din = lab.processed()
    return din, "qa", "rejected", lambda password: reject(lab, din, password=password)


SIGNED_ACTIONS = {
    "verification": _verification,
    "disposition": _disposition,
    "release": _release,
    "rejection": _rejection,
}


# --- R-SIG-1: password re-entry, failures recorded, lockout --------------------------------------


@pytest.mark.parametrize("action", SIGNED_ACTIONS)
def test_r_sig_1_wrong_password_is_refused_recorded_and_changes_nothing_else(lab, action):
    din, signer, meaning, attempt = SIGNED_ACTIONS[action](lab)
    before_events = stream(lab, din)
    before = qc_footprint(lab)
    problem = assert_problem(attempt(WRONG), 401, "signature_invalid")
    assert "not applied" in problem["detail"]
    after_events = stream(lab, din)
    assert after_events[:-1] == before_events  # the only new event is the recorded failure
    failed = after_events[-1]
    assert (failed["type"], failed["actor"]["username"]) == ("signature_failed", signer)
    assert failed["data"] == {"meaning": meaning, "locked": False}
    assert failures(lab, signer) == [(meaning, din)]
    after = qc_footprint(lab)
    assert {k: v for k, v in after.items() if k != "signature_failures"} == {
        k: v for k, v in before.items() if k != "signature_failures"
    }
    assert lab.ok(lab.get("qa", "/audit/verify", din=din), 200)["ok"] is True
    assert attempt(PASSWORD).status_code == 200  # the right password still signs


def test_r_sig_1_five_failures_in_fifteen_minutes_lock_the_account(lab):
    din, signer, _, attempt = _verification(lab)
    for _ in range(4):
        assert_problem(attempt(WRONG), 401, "signature_invalid")
    assert locked(lab, signer) is False
    problem = assert_problem(attempt(WRONG), 423, "account_locked")
    assert "admin" in problem["detail"]
    assert len(failures(lab, signer)) == 5
    assert [e["data"]["locked"] for e in stream(lab, din, "signature_failed")] == [False] * 4 + [True]
    assert locked(lab, signer) is True
    assert lab.sql("SELECT type FROM admin_events WHERE type = 'user_locked'") == [("user_locked",)]
    # locked: even the right password no longer signs, and no new token is issued
    assert_problem(attempt(PASSWORD), 423, "account_locked")
    token = lab.client.post("/api/v1/auth/token", json={"username": signer, "password": PASSWORD})
    assert_problem(token, 423, "account_locked")
    assert_problem(lab.get(signer, "/batches"), 423, "account_locked")  # a live token says why, too
    assert view(lab, din)["qc"][0]["verified"] is False
    # other users sign on
    result = enter(lab, din, "tnc_total", 4e7)
    lab.ok(lab.verify(din, result["id"], by="qa"), 200)


def test_r_sig_1_admin_unlocks_and_old_failures_no_longer_count(lab):
    _, signer, _, attempt = _verification(lab)
    for _ in range(4):
        assert_problem(attempt(WRONG), 401, "signature_invalid")
    assert_problem(attempt(WRONG), 423, "account_locked")
    assert_problem(lab.patch("qa", f"/users/{signer}", {"unlock": True}), 403, "forbidden")
    unlocked = lab.ok(lab.patch("admin", f"/users/{signer}", {"unlock": True}), 200)
    assert unlocked["locked"] is False
    for _ in range(4):  # the five before the unlock are forgotten: four more do not lock
        assert_problem(attempt(WRONG), 401, "signature_invalid")
    assert locked(lab, signer) is False
    assert lab.ok(attempt(PASSWORD), 200)["verified"] is True
    assert len(failures(lab, signer)) == 9  # forgotten for the lockout, never deleted from the record


def test_r_sig_1_failures_older_than_fifteen_minutes_do_not_count(lab):
    _, signer, _, attempt = _verification(lab)
    for _ in range(4):
        assert_problem(attempt(WRONG), 401, "signature_invalid")
    earlier = now() - timedelta(minutes=16)
    lab.db.write(lambda s: s.execute(update(SignatureFailure).values(at=earlier)))
    assert_problem(attempt(WRONG), 401, "signature_invalid")  # only one within the window
    assert locked(lab, signer) is False


def test_r_sig_1_failures_count_across_actions_and_batches(lab):
    din, _, _, verify_attempt = _verification(lab)  # qa never signs here; failures are per signer
    other = processed_with(lab, mrn="MRN-2")
    deviation = manual_deviation(lab, other)
    for _ in range(2):
        assert_problem(lab.release(din, password=WRONG), 409, "release_blocked")  # blockers first: no signing
        assert_problem(reject(lab, din, password=WRONG), 401, "signature_invalid")
        assert_problem(dispose(lab, deviation, password=WRONG), 401, "signature_invalid")
    assert_problem(reject(lab, other, password=WRONG), 423, "account_locked")
    assert [din_ for _, din_ in failures(lab, "qa")] == [din, other, din, other, other]
    assert locked(lab, "qa") is True
    assert verify_attempt(PASSWORD).status_code == 200  # tech2 is not affected


def test_r_sig_1_the_password_is_never_stored(lab):
    _, _, _, attempt = _release(lab)
    assert_problem(attempt(WRONG), 401, "signature_invalid")
    lab.ok(attempt(PASSWORD), 200)
    dump = str(lab.sql("SELECT data, canonical FROM batch_events")) + str(lab.sql("SELECT payload FROM outbox"))
    assert PASSWORD not in dump
    assert WRONG not in dump


# --- R-SIG-2: the manifestation wherever a signature is shown -------------------------------------


def assert_manifestation(event: dict, signer: str, meaning: str) -> dict:
    manifestation = event["signature"]
    assert set(manifestation) == MANIFESTATION_KEYS
    assert manifestation["printed_name"] == USERS[signer][0]
    assert (manifestation["username"], manifestation["meaning"]) == (signer, meaning)
    assert UTC_Z.match(manifestation["signed_at"])
    assert manifestation["signed_at"] <= event["recorded_at"]
    assert event["data"]["signature"] == manifestation  # inside the hashed data, not beside it
    assert f'"meaning":"{meaning}"' in event["canonical"]
    return manifestation


def test_r_sig_2_every_signed_record_shows_its_manifestation(lab):
    din = processed_with(lab)
    complete_qc(lab, din, results={"viability_pct": 65})
    [deviation] = deviations(lab, din)
    lab.ok(dispose(lab, deviation["id"]), 200)
    lab.ok(lab.release(din, by="qa2"), 200)
    rejected = processed_with(lab, mrn="MRN-2")
    lab.ok(reject(lab, rejected), 200)

    for event in stream(lab, din, "qc_verified"):
        assert_manifestation(event, "tech2", "verified")
    [closed] = stream(lab, din, "deviation_closed")
    shown = assert_manifestation(closed, "qa", "approved")
    [released] = stream(lab, din, "released")
    assert_manifestation(released, "qa2", "approved")
    [rejection] = stream(lab, rejected, "rejected")
    assert_manifestation(rejection, "qa", "rejected")
    # on the deviation itself, in the list and in the batch detail
    assert deviations(lab, din)[0]["signature"] == shown
    assert view(lab, din, by="clinic")["deviations"][0]["signature"] == shown
    # unsigned events carry no manifestation
    assert {e["type"] for e in stream(lab, din) if e["signature"] is None} >= {"registered", "harvest", "qc_recorded"}


# --- R-SIG-3: bound to the signed record's hash ----------------------------------------------------


def test_r_sig_3_each_signature_names_the_hash_of_the_record_it_signs(lab):
    din = processed_with(lab)
    ids = complete_qc(lab, din, results={"viability_pct": 65})
    [deviation] = deviations(lab, din)
    lab.ok(dispose(lab, deviation["id"]), 200)
    head_before_release = view(lab, din)["head_hash"]
    lab.ok(lab.release(din), 200)
    events = stream(lab, din)
    by_seq = {e["seq"]: e for e in events}

    recorded = {e["data"]["test"]: e for e in events if e["type"] == "qc_recorded"}
    for event in (e for e in events if e["type"] == "qc_verified"):
        test = event["data"]["test"]
        assert event["data"]["qc_result_id"] == ids[test]
        assert (
            event["signature"]["record_hash"] == recorded[test]["hash"] == by_seq[event["data"]["record_seq"]]["hash"]
        )
    hashes = [e["signature"]["record_hash"] for e in events if e["type"] == "qc_verified"]
    assert len(set(hashes)) == len(hashes)  # no two verifications sign the same record

    opened = next(e for e in events if e["type"] == "deviation_opened")
    [closed] = [e for e in events if e["type"] == "deviation_closed"]
    assert closed["signature"]["record_hash"] == opened["hash"]
    assert deviations(lab, din)[0]["signature"]["record_hash"] == opened["hash"]

    [released] = [e for e in events if e["type"] == "released"]
    assert released["signature"]["record_hash"] == released["prev_hash"] == head_before_release


def test_r_sig_3_rejection_signs_the_batch_head(lab):
    din = lab.processed()
    head = view(lab, din)["head_hash"]
    lab.ok(reject(lab, din), 200)
    [rejected] = stream(lab, din, "rejected")
    assert rejected["signature"]["record_hash"] == rejected["prev_hash"] == head


def _rewrite_signature(lab, din: str, event_type: str, manifestation: dict) -> int:
    """Put another manifestation into a signed event, with the append-only triggers bypassed (R-AUD-2)."""
    [event] = stream(lab, din, event_type)
    with triggers_bypassed(lab) as connection:
        set_event(connection, batch_id(lab, din), event["seq"], data=event["data"] | {"signature": manifestation})
    return event["seq"]


@pytest.mark.parametrize("forgery", ["record_hash", "copied"])
def test_r_sig_3_a_changed_or_copied_signature_breaks_the_chain(lab, forgery):
    din = lab.released()
    other = processed_with(lab, mrn="MRN-2")
    complete_qc(lab, other)
    lab.ok(lab.release(other), 200)
    [released] = stream(lab, din, "released")
    [other_released] = stream(lab, other, "released")
    if forgery == "record_hash":
        forged = released["signature"] | {"record_hash": "0" * 64}
    else:  # the other batch's release signature moved onto this one
        forged = other_released["signature"]
    assert forged != released["signature"]
    seq = _rewrite_signature(lab, din, "released", forged)
    assert stream(lab, din, "released")[0]["signature"] == forged  # the forgery really is in place
    report = lab.ok(lab.get("qa", "/audit/verify", din=din), 200)
    assert report["ok"] is False
    assert [(f["din"], f["seq"]) for f in report["failures"]] == [(din, seq)]
    assert lab.ok(lab.get("qa", "/audit/verify", din=other), 200)["ok"] is True
