"""Hot paths cost what they must (R-SCL-4 and the step and read bars): database round trips per request,
counted, each held to a stated budget. A round trip is a statement, a COMMIT or ROLLBACK, or the
pre-ping of a pool checkout. The budgets are what each request needs today; a change that adds one
fails here and has to say why in the budget."""

from __future__ import annotations

import pytest

from tests.round_trips import counting


@pytest.fixture
def round_trips(db):
    """``with round_trips() as trips:`` counts what the app's engine sends to the database meanwhile."""
    return lambda: counting(db.engine)


# Per request, on PostgreSQL (SQLite has no pre-ping: a file has nothing to ping). Measured 2026-12-03.
BUDGETS = {
    # one checkout for authentication and work: pre-ping, token (in the write's transaction), batch ⋈ custodian
    # FOR UPDATE, lot, equipment, batch UPDATE, event INSERT, the records of use in one multi-row INSERT, COMMIT
    # (13 before: a second checkout's pre-ping, the token connection's reset, one use INSERT per material)
    "step": 9,
    # pre-ping, token, batch ⋈ custodian ⋈ specification, QC ∪ open deviations, the connection's reset
    "readiness": 5,
    # the same connection as the token (autocommit_read): pre-ping, token, batch ⋈ custodian ⋈ specification ⋈
    # patient ⋈ clinic, deviations, QC results, the facts behind the actor's decisions in one statement (signed
    # results ∪ open deviations ∪ who took part: 3 before), the connection's reset (11 before round 4: a second
    # checkout, its BEGIN and ROLLBACK, three lazy loads)
    "detail": 7,
    # autocommit_read, one checkout for the page: pre-ping, session's token and user, batch ⋈ custodian ⋈ specification
    # ⋈ patient ⋈ clinic; the chain on its own snapshot connection (pre-ping, newest checkpoint, its anchor, tree size,
    # root, leaves, heads ×2, the batch, its head, its events, reset: labtrack.audit); the newest checkpoint, events ⋈
    # actors, QC, deviations, temperature logs, custody legs, notifications in the header, reset. (30 before: the
    # token connection's reset and a second checkout, the batch read twice since the record's assembly moved to
    # audit/records.py in the merge of issues 13-17, its patient, clinic, specification and event actors lazily.)
    "record page": 23,
}


@pytest.mark.postgres
def test_r_scl_4_hot_paths_stay_within_their_round_trip_budgets(lab, sign_in, round_trips):
    din = lab.at_lab()
    lab.headers("tech"), lab.headers("clinic")  # tokens issued before counting
    qa = sign_in("qa")
    lab.ok(lab.post("qa", "/audit/checkpoints"))
    measured = {}
    with round_trips() as trips:
        lab.ok(lab.step(din, "digestion"))
    measured["step"] = trips
    with round_trips() as trips:
        lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)
    measured["readiness"] = trips
    with round_trips() as trips:
        lab.ok(lab.get("qa", f"/batches/{din}"), 200)
    measured["detail"] = trips
    with round_trips() as trips:
        assert qa.get(f"/batches/{din}/record").status_code == 200
    measured["record page"] = trips
    report = {name: (trips.total, dict(trips.kinds)) for name, trips in measured.items()}
    print(report)
    over = {name: report[name] for name, budget in BUDGETS.items() if measured[name].total > budget}
    assert not over, (over, {name: measured[name].statements for name in over})
    # no eager join chains (the old lazy="joined" default made ten-table queries): five tables at most
    assert max(sql.count(" JOIN ") for trips in measured.values() for sql in trips.statements) <= 4
