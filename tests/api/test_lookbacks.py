"""Lookbacks and recalls (R-LBK-1..5, R-MAT-1, R-DEV-1): from a seed to every batch it may touch."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from labtrack import db as db_module
from labtrack.domain.investigations import SeedKind, Window
from labtrack.services import lookbacks, reference
from labtrack.services.auth import actor_of
from tests.helpers import LAB_STEPS, Lab, iso, now, signature
from tests.investigation_support import Batches
from tests.round_trips import counting
from tests.workers.test_watchers import chains_verify


@pytest.fixture
def made(lab) -> Batches:
    return Batches(lab)


def other_clinics_batch_at_lab(lab: Lab) -> str:
    """A second clinic's (C2) batch, received by the lab."""
    patient = lab.patient("MRN-O", by="other")
    din = lab.ok(lab.post("other", "/batches", {"patient_id": patient["id"], "tissue_source": "adipose"}))["din"]
    lab.ok(lab.harvest(din, by="other", patient_mrn="MRN-O"))
    lab.ok(lab.handoff(din, by="other"))
    lab.ok(lab.receive(din))
    return din


def open_lookback(lab: Lab, kind: str, value, *, by: str = "qa", **window):
    body = {"reason": "Supplier notice: endotoxin above limit", "seed": {"kind": kind, "value": str(value)}} | window
    return lab.post(by, "/lookbacks", body)


def rows(lab: Lab, table: str) -> int:
    return lab.sql(f"SELECT count(*) FROM {table}")[0][0]


def affected(lookback: dict) -> dict[str, str]:
    return {a["din"]: a["action"] for a in lookback["affected"]}


def test_r_lbk_1_a_reagent_lot_seed_finds_the_batches_whose_steps_used_it(lab, made):
    digested = made.at_lab()
    lab.ok(lab.step(digested, "digestion"))  # collagenase lot 1
    marrow = made.processed("bone_marrow")  # separation kit lot 2: not affected
    body = lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase")))
    assert body["status"] == "open"
    assert body["seed"] == {"kind": "reagent_lot", "value": str(lab.lot("collagenase"))}
    assert affected(body) == {digested: "held"}
    assert marrow not in affected(body)
    assert body["affected"][0]["clinic"] == "C1"
    assert body["affected"][0]["administered"] is False


def test_r_lbk_1_equipment_and_operator_seeds_search_their_window(lab, made):
    din = made.processed()  # INC-1 and CEN-1 by tech, now
    inside = {"from": iso(now() - timedelta(hours=1)), "to": iso(now() + timedelta(minutes=1))}
    before = {"from": iso(now() - timedelta(days=3)), "to": iso(now() - timedelta(days=2))}
    assert affected(lab.ok(open_lookback(lab, "equipment", "CEN-1", **inside))) == {din: "held"}
    assert affected(lab.ok(open_lookback(lab, "equipment", "CEN-1", **before))) == {}
    assert affected(lab.ok(open_lookback(lab, "operator", "tech", **inside))) == {din: "held"}
    assert affected(lab.ok(open_lookback(lab, "operator", "tech2"))) == {}


def test_r_lbk_1_an_operator_seed_finds_qc_entries_and_verifications(lab, made):
    din = made.awaiting_release()  # QC entered by tech, verified by tech2
    verifier = lab.ok(open_lookback(lab, "operator", "tech2"))
    assert affected(verifier) == {din: "held"}
    activities = lab.sql("SELECT DISTINCT activity FROM batch_uses WHERE user_id = "
                         "(SELECT id FROM users WHERE username = 'tech2')")  # fmt: skip
    assert {a for (a,) in activities} == {"qc_verification"}


def earlier_use(lab: Lab, din: str, code: str, ago: timedelta) -> None:
    """A centrifuge use recorded in the batch's history ``ago`` before now (as a late entry would be)."""
    lab.sql(
        "INSERT INTO batch_uses (batch_id, seq, event_type, activity, occurred_at, equipment_code) "
        "SELECT id, seq, 'isolation', 'step', :at, :code FROM batches WHERE din = :din",
        at=now() - ago,
        code=code,
        din=din,
    )


def test_r_lbk_1_a_batch_seed_finds_shared_lots_and_equipment_within_24_hours(lab, made):
    seed = made.processed()  # collagenase lot 1, INC-1 and CEN-1, now
    shares_lot = made.at_lab()
    lab.ok(lab.step(shares_lot, "digestion"))
    near, far = made.at_lab("bone_marrow"), made.at_lab("bone_marrow")
    earlier_use(lab, near, "CEN-1", timedelta(hours=23))
    earlier_use(lab, far, "CEN-1", timedelta(hours=25))
    body = lab.ok(open_lookback(lab, "batch", seed))
    assert affected(body) == {shares_lot: "held", near: "held"}
    assert seed not in affected(body)


def test_r_lbk_1_a_seed_that_does_not_exist_is_422_naming_it_and_writes_nothing(lab):
    no_batch = lab.batch()[:7] + "999999"
    before = (rows(lab, "lookbacks"), rows(lab, "admin_events"), rows(lab, "deviations"))
    for kind, value in (("reagent_lot", 987654), ("reagent_lot", "CG-1"), ("equipment", "CEN-9"),
                        ("operator", "nobody"), ("batch", no_batch), ("batch", "not-a-din")):  # fmt: skip
        response = open_lookback(lab, kind, value)
        assert response.status_code == 422, (kind, value, response.get_json())
        assert response.mimetype == "application/problem+json"
        assert "seed.value" in response.get_json()["errors"], response.get_json()
        assert str(value) in response.get_json()["errors"]["seed.value"][0] or value == "not-a-din"
    assert (rows(lab, "lookbacks"), rows(lab, "admin_events"), rows(lab, "deviations")) == before


def test_r_lbk_1_bad_windows_and_kinds_are_422(lab):
    later, earlier = iso(now()), iso(now() - timedelta(days=1))
    assert open_lookback(lab, "equipment", "CEN-1", **{"from": later, "to": earlier}).status_code == 422
    din = lab.batch()
    assert open_lookback(lab, "batch", din, **{"from": earlier}).status_code == 422
    assert open_lookback(lab, "patient", "MRN-1").status_code == 422
    assert lab.post("qa", "/lookbacks", {"seed": {"kind": "equipment", "value": "CEN-1"}}).status_code == 422
    assert rows(lab, "lookbacks") == 0


def test_r_lbk_1_only_qa_opens_lookbacks(lab):
    for user in ("tech", "admin", "clinic"):
        assert open_lookback(lab, "equipment", "CEN-1", by=user).status_code == 403
    assert rows(lab, "lookbacks") == 0


def test_r_lbk_2_r_dev_1_unadministered_batches_are_held_by_a_lookback_deviation_until_disposed(lab, made):
    held = made.awaiting_release()
    used = made.administered()
    body = lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase")))
    assert affected(body) == {held: "held", used: "follow_up"}
    deviation = next(d for d in lab.ok(lab.get("qa", f"/batches/{held}"), 200)["deviations"] if d["kind"] == "lookback")
    assert f"Lookback {body['id']}" in deviation["description"]
    opened = next(e for e in lab.ok(lab.get("qa", f"/batches/{held}/events"), 200) if e["type"] == "deviation_opened")
    assert opened["data"]["lookback_id"] == body["id"]
    refused = lab.release(held)
    assert refused.status_code == 409
    assert f"open_deviation:{deviation['id']}" in {b["code"] for b in refused.get_json()["blockers"]}
    assert not [d for d in lab.ok(lab.get("qa", f"/batches/{used}"), 200)["deviations"] if d["kind"] == "lookback"]
    disposition = {"decision": "accept", "justification": "Lot cleared by the supplier."} | {
        "signature": signature("approved")
    }
    lab.ok(lab.post("qa", f"/deviations/{deviation['id']}/disposition", disposition), 200)
    lab.ok(lab.release(held), 200)


def test_r_lbk_2_each_clinic_is_told_of_its_own_dins_only(lab, made):
    ours = made.at_lab()
    theirs = other_clinics_batch_at_lab(lab)
    for din in (ours, theirs):
        lab.ok(lab.step(din, "digestion"))
    body = lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase")))
    messages = lab.sql(
        "SELECT c.code, o.payload FROM outbox o JOIN clinics c ON c.id = o.clinic_id WHERE o.topic = 'lookback.opened'"
    )
    told = {code: payload if isinstance(payload, dict) else json.loads(payload) for code, payload in messages}
    assert told["C1"]["dins"] == [ours]
    assert told["C2"]["dins"] == [theirs]
    assert told["C2"]["lookback_id"] == body["id"]
    mine = lab.ok(lab.get("other", f"/lookbacks/{body['id']}"), 200)
    assert affected(mine) == {theirs: "held"}
    assert [c["clinic"] for c in mine["clinics"]] == ["C2"]
    assert ours not in str(lab.ok(lab.get("other", "/lookbacks"), 200))


def test_r_lbk_3_a_clinic_acknowledges_once_and_a_second_time_changes_nothing(lab, made):
    din = made.at_lab()
    lab.ok(lab.step(din, "digestion"))
    body = lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase")))
    first = lab.ok(lab.post("clinic", f"/lookbacks/{body['id']}/acknowledge"), 200)
    [answer] = first["clinics"]
    assert answer["acknowledged_by"]["username"] == "clinic"
    events = rows(lab, "admin_events")
    second = lab.ok(lab.post("clinic_b", f"/lookbacks/{body['id']}/acknowledge"), 200)
    assert second["clinics"] == first["clinics"]
    assert rows(lab, "admin_events") == events
    assert lab.post("other", f"/lookbacks/{body['id']}/acknowledge").status_code == 404
    assert lab.post("qa", f"/lookbacks/{body['id']}/acknowledge").status_code == 403
    seen = lab.ok(lab.get("qa", f"/lookbacks/{body['id']}"), 200)
    assert seen["clinics"][0]["acknowledged_at"] == answer["acknowledged_at"]


def test_r_lbk_4_qa_closes_with_a_signed_conclusion_and_the_holds_stay(lab, made):
    din = made.at_lab()
    lab.ok(lab.step(din, "digestion"))
    body = lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase")))
    path = f"/lookbacks/{body['id']}/close"
    close = {"conclusion": "No product reached a patient; batches disposed of individually."}
    assert lab.post("qa", path, close | {"signature": signature("approved")}).status_code == 422
    wrong = lab.post("qa", path, close | {"signature": signature("reviewed", "not-my-password")})
    assert wrong.get_json()["code"] == "signature_invalid"
    assert lab.post("clinic", path, close | {"signature": signature("reviewed")}).status_code == 403
    closed = lab.ok(lab.post("qa", path, close | {"signature": signature("reviewed")}), 200)
    assert closed["status"] == "closed"
    assert closed["signature"]["meaning"] == "reviewed"
    opened_hash = lab.sql("SELECT opened_hash FROM lookbacks WHERE id = :id", id=body["id"])[0][0]
    assert closed["signature"]["record_hash"] == opened_hash
    assert lab.sql("SELECT type FROM admin_events ORDER BY seq DESC LIMIT 1")[0][0] == "lookback_closed"
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["held"] is True
    assert lab.post("qa", path, close | {"signature": signature("reviewed")}).status_code == 409
    assert [lb["id"] for lb in lab.ok(lab.get("qa", "/lookbacks", status="closed"), 200)] == [body["id"]]


def test_r_lbk_5_r_mat_1_a_recalled_lot_opens_a_lookback_and_is_refused_in_steps(lab, made):
    din = made.at_lab()
    lab.ok(lab.step(din, "digestion"))
    lot = lab.lot("collagenase")
    assert lab.post("admin", f"/reagent-lots/{lot}/recall", {"reason": " "}).status_code == 422
    assert lab.post("qa", f"/reagent-lots/{lot}/recall", {"reason": "supplier recall"}).status_code == 403
    recall = lab.ok(lab.post("admin", f"/reagent-lots/{lot}/recall", {"reason": "Supplier recall R-2611"}), 200)
    assert recall["status"] == "recalled"
    assert recall["affected"] == 1
    lookback = lab.ok(lab.get("qa", f"/lookbacks/{recall['lookback_id']}"), 200)
    assert lookback["trigger"] == "recall"
    assert lookback["requested_by"] == "admin"
    assert lookback["opened_by"]["username"] == "system"
    assert affected(lookback) == {din: "held"}
    assert "Supplier recall R-2611" in lookback["reason"]
    assert lab.post("admin", f"/reagent-lots/{lot}/recall", {"reason": "again"}).status_code == 409
    assert lab.patch("admin", f"/reagent-lots/{lot}", {"status": "released"}).status_code == 409
    assert lab.patch("admin", f"/reagent-lots/{lot}", {"status": "recalled"}).status_code == 422
    fresh = made.at_lab()
    refused = lab.step(fresh, "digestion")
    assert refused.status_code == 422
    assert refused.get_json()["code"] == "reagent_not_usable"
    assert "recalled" in refused.get_json()["detail"]
    assert lab.post("admin", "/reagent-lots/987654/recall", {"reason": "x"}).status_code == 404


def test_r_lbk_1_every_step_qc_entry_and_verification_records_its_uses_in_its_transaction(lab, made):
    din = made.awaiting_release()
    uses = lab.sql(
        "SELECT u.event_type, u.activity, u.reagent_lot_id, u.equipment_code, us.username, "
        "e.occurred_at, u.occurred_at "
        "FROM batch_uses u JOIN batches b ON b.id = u.batch_id "
        "JOIN batch_events e ON e.batch_id = u.batch_id AND e.seq = u.seq "
        "LEFT JOIN users us ON us.id = u.user_id WHERE b.din = :din",
        din=din,
    )
    steps = {(t, lot, code, user) for t, a, lot, code, user, *_ in uses if a == "step"}
    assert ("digestion", LAB_STEPS["digestion"]["reagent_lots"][0], None, None) in steps
    assert ("digestion", None, "INC-1", None) in steps
    assert ("harvest", None, None, "clinic") in steps
    qc = {(t, user) for t, a, _l, _c, user, *_ in uses if a != "step"}
    assert qc == {("qc_recorded", "tech"), ("qc_verified", "tech2")}
    assert all(str(event_at)[:19] == str(use_at)[:19] for *_, event_at, use_at in uses)


@pytest.mark.postgres
def test_r_lbk_2_two_lookbacks_opened_at_once_on_the_same_batches_each_hold_them(lab, made):
    """Both lock the same batches in id order: no deadlock, two deviations per batch, gapless chains."""
    dins = [made.processed() for _ in range(3)]
    qa = lab.db.write(lambda s: actor_of(reference.user_by_username(s, "qa")))
    seeds = [{"kind": "reagent_lot", "value": str(lab.lot("collagenase"))}, {"kind": "equipment", "value": "CEN-1"}]
    barrier = threading.Barrier(2)

    def open_one(seed: dict) -> int:
        barrier.wait()
        return lab.db.write(lambda s: lookbacks.open_by_qa(s, qa, reason="at once", seed=seed)).id

    with ThreadPoolExecutor(2) as pool:
        opened = list(pool.map(open_one, seeds))
    assert len(set(opened)) == 2
    for din in dins:
        kinds = [d["kind"] for d in lab.ok(lab.get("qa", f"/batches/{din}"), 200)["deviations"]]
        assert kinds == ["lookback", "lookback"]
    assert chains_verify(lab.app, lab.db).ok


# Opening a lookback through the API, on PostgreSQL: pre-ping, token and the connection's reset; pre-ping, seed,
# lookback INSERT, affected set, lock of the holdable ones, one multi-row INSERT each for their events, deviations,
# outbox rows and lookback rows, one executemany UPDATE of their heads (two when some were held already), the
# admin-chain lock, head and INSERT, the opening hash, the clinics' rows and notices, the answer's three reads, COMMIT:
# the same for one batch as for many (an INSERT carries up to 1,000 rows).
# (Before: 25 for one held batch, 50 for six, five more per held batch and one more per clinic.)
OPEN_BUDGET = 23


def test_r_lbk_2_opening_costs_the_same_round_trips_for_one_held_batch_as_for_five_at_two_clinics(lab, made):
    """Holding, recording and telling are multi-row statements: the count does not grow with the batches."""

    def digested(din: str) -> str:
        lab.ok(lab.step(din, "digestion"))  # collagenase lot
        return din

    first = digested(made.at_lab())
    lab.headers("qa")  # the token is issued before counting
    with counting(lab.db.engine) as one:
        assert affected(lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase")))) == {first: "held"}
    since = iso(now())
    five = [digested(made.at_lab()) for _ in range(4)] + [digested(other_clinics_batch_at_lab(lab))]
    with counting(lab.db.engine) as many:
        body = lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase"), **{"from": since}))
    assert affected(body) == dict.fromkeys(five, "held")
    assert {c["clinic"] for c in body["clinics"]} == {"C1", "C2"}
    if lab.db.engine.dialect.name == "postgresql":
        assert many.kinds == one.kinds, (one.statements, many.statements)
        assert one.total <= OPEN_BUDGET, one.statements
    else:  # SQLite's RETURNING has no set order: rows whose generated id is needed (event, deviation, outbox row)
        # are inserted one by one, calls into the library in process; the other statements stay the same
        per_row = Counter(INSERT=3 * (len(five) - 1) + 1)  # and the second clinic's notice
        assert many.kinds == one.kinds + per_row, (one.statements, many.statements)


def test_r_lbk_1_the_batches_found_are_read_by_id_in_slices_and_all_come_back_in_id_order(lab, made, monkeypatch):
    """A large finding is read by primary key a slice at a time (never hashed against every batch recorded):
    with slices of two, five batches still come back whole and in the order they are locked in."""
    monkeypatch.setattr(db_module, "IDS_PER_STATEMENT", 2)
    dins = [made.at_lab() for _ in range(5)]
    for din in dins:
        lab.ok(lab.step(din, "digestion"))
    session = lab.db.reader()
    try:
        seed = lookbacks.resolve_seed(session, SeedKind.REAGENT_LOT, str(lab.lot("collagenase")))
        found = lookbacks.find_affected(session, seed, Window(None, None))
    finally:
        session.close()
    assert [row[1] for row in found] == dins
    assert [row[0] for row in found] == sorted(row[0] for row in found)
    assert affected(lab.ok(open_lookback(lab, "reagent_lot", lab.lot("collagenase")))) == dict.fromkeys(dins, "held")
