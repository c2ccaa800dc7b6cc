"""Release, rejection and readiness through the HTTP API (R-REL-1..3, R-RDY-1).

Each blocker code of R-REL-1 is provoked on a batch where it is, as far as the
lifecycle allows, the only reason not to release, so the list is checked exactly.
"""

from __future__ import annotations

import pytest

from tests.api.test_identity import assert_refused
from tests.api.test_qc import (
    assert_nothing_written,
    complete_qc,
    deviations,
    dispose,
    enter,
    expire,
    manual_deviation,
    outbox,
    stream,
    view,
)
from tests.api.test_signatures import reject
from tests.helpers import GOOD_RESULTS, signature

MISSING_ALL = {f"qc_missing:{test}" for test in GOOD_RESULTS["adipose"]}


def refused_release(lab, din: str, *, by: str = "qa") -> set[str]:
    """Release is refused with every blocker at once, each explained, and nothing is written."""
    problem = assert_nothing_written(lab, lambda: lab.release(din, by=by), 409, "release_blocked")
    codes = [b["code"] for b in problem["blockers"]]
    assert all(b["detail"] for b in problem["blockers"])
    assert len(codes) == len(set(codes))
    return set(codes)


def readiness(lab, din: str, by: str = "clinic") -> dict:
    return lab.ok(lab.get(by, f"/batches/{din}/readiness"), 200)


def readiness_codes(lab, din: str) -> set[str]:
    return {b["code"] for b in readiness(lab, din)["blockers"]}


# --- R-REL-1: every blocker, with its stable code ------------------------------------------------


def test_r_rel_1_not_ready_names_the_status(lab):
    din = lab.at_lab()
    assert refused_release(lab, din) == {"not_ready:received"} | MISSING_ALL
    lab.ok(lab.step(din, "digestion"))
    assert refused_release(lab, din) == {"not_ready:processing"} | MISSING_ALL


def test_r_rel_1_a_batch_is_released_once(lab):
    din = lab.released()
    assert refused_release(lab, din) == {"not_ready:released"}
    assert len(stream(lab, din, "released")) == 1


@pytest.mark.parametrize("test", ["sterility_culture", "cd34_pct", "endotoxin_eu_per_ml"])
def test_r_rel_1_qc_missing_names_the_test(lab, test):
    din = lab.processed()
    complete_qc(lab, din, omit=(test,))
    assert refused_release(lab, din) == {"not_ready:processed", f"qc_missing:{test}"}


@pytest.mark.parametrize("test", ["sterility_culture", "tnc_total"])
def test_r_rel_1_qc_unverified_names_the_test(lab, test):
    din = lab.processed()
    complete_qc(lab, din, unverified=(test,))
    assert refused_release(lab, din) == {"not_ready:processed", f"qc_unverified:{test}"}


def test_r_rel_1_qc_out_of_spec_names_the_test_and_its_open_deviation(lab):
    din = lab.processed()
    complete_qc(lab, din, results={"viability_pct": 65, "gram_stain": "organisms_seen"})
    first, second = deviations(lab, din)
    assert view(lab, din)["status"] == "awaiting_release"
    assert refused_release(lab, din) == {
        "qc_out_of_spec:viability_pct",
        "qc_out_of_spec:gram_stain",
        f"open_deviation:{first['id']}",
        f"open_deviation:{second['id']}",
    }


def test_r_rel_1_open_deviation_names_each_deviation(lab):
    din = lab.awaiting_release()
    first = manual_deviation(lab, din)
    assert refused_release(lab, din) == {f"open_deviation:{first}"}
    second = manual_deviation(lab, din, by="qa")
    assert refused_release(lab, din) == {f"open_deviation:{first}", f"open_deviation:{second}"}
    lab.ok(dispose(lab, first), 200)
    assert refused_release(lab, din) == {f"open_deviation:{second}"}


def test_r_rel_1_custody_not_at_lab_while_a_lab_handoff_is_pending(lab):
    din = lab.awaiting_release()
    # before release the product may not leave the lab at all
    problem = assert_refused(lab, lambda: lab.handoff(din, by="tech", to="clinic"), 409, "invalid_transition")
    assert "release" in problem["allowed_actions"]
    lab.ok(lab.handoff(din, by="tech", to="tech2", seal="SEAL-L"))
    assert view(lab, din)["status"] == "awaiting_release"
    assert refused_release(lab, din) == {"custody_not_at_lab"}
    lab.ok(lab.receive(din, by="tech2", seal="SEAL-L"))
    assert lab.ok(lab.release(din), 200)["status"] == "released"


def test_r_rel_1_expired(lab):
    din = lab.awaiting_release()
    expire(lab, din)
    assert refused_release(lab, din) == {"expired"}


@pytest.mark.parametrize("part", ["entered", "verified", "corrected"])
def test_r_rel_1_segregation_of_duties(lab, part):
    din = lab.processed()
    complete_qc(lab, din, omit=("cd34_pct",))
    if part == "entered":
        lab.ok(lab.verify(din, enter(lab, din, "cd34_pct", 2.5, by="qa2")["id"]), 200)
    else:
        lab.ok(
            lab.verify(din, enter(lab, din, "cd34_pct", 2.5)["id"], by="qa2" if part == "verified" else "tech2"), 200
        )
    if part == "corrected":
        digestion = stream(lab, din, "digestion")[0]["seq"]
        body = {"event_seq": digestion, "reason": "Incubator display misread.", "data": {"temperature_c": 36.5}}
        lab.ok(lab.post("qa2", f"/batches/{din}/corrections", body))
    assert view(lab, din)["status"] == "awaiting_release"
    assert refused_release(lab, din, by="qa2") == {"segregation_of_duties"}
    released = lab.ok(lab.release(din, by="qa"), 200)  # a QA who took no part
    assert released["status"] == "released"


def test_r_rel_1_every_kind_of_blocker_at_once(lab):
    din = lab.processed()
    lab.ok(lab.qc(din, "viability_pct", 50, by="qa"))  # out of spec, unverified, entered by the releaser
    [deviation] = deviations(lab, din)
    lab.ok(lab.handoff(din, by="tech", to="tech2", seal="SEAL-L"))
    expire(lab, din)
    assert refused_release(lab, din) == {
        "not_ready:processed",
        *(MISSING_ALL - {"qc_missing:viability_pct"}),
        "qc_out_of_spec:viability_pct",
        "qc_unverified:viability_pct",
        f"open_deviation:{deviation['id']}",
        "custody_not_at_lab",
        "expired",
        "segregation_of_duties",
    }


@pytest.mark.parametrize("meaning", ["verified", "rejected"])
def test_r_rel_1_release_is_signed_with_meaning_approved(lab, meaning):
    din = lab.awaiting_release()
    body = {"signature": signature(meaning)}
    problem = assert_nothing_written(
        lab, lambda: lab.post("qa", f"/batches/{din}/release", body), 422, "validation_error"
    )
    assert "signature.meaning" in problem["errors"]
    assert_nothing_written(lab, lambda: lab.post("qa", f"/batches/{din}/release", {}), 422, "validation_error")


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("tech", 403, "forbidden"),
        ("tech2", 403, "forbidden"),
        ("admin", 403, "forbidden"),
        ("clinic", 403, "forbidden"),
        ("other", 404, "not_found"),
    ],
)
def test_r_rel_1_only_qa_releases(lab, who, status, code):
    din = lab.awaiting_release()
    assert_nothing_written(lab, lambda: lab.release(din, by=who), status, code)
    assert view(lab, din)["status"] == "awaiting_release"


def test_r_rel_1_release_records_the_signed_decision_and_notifies(lab):
    din = lab.awaiting_release()
    released = lab.ok(lab.release(din), 200)
    assert (released["status"], released["custodian"]["username"]) == ("released", "tech")
    [event] = stream(lab, din, "released")
    assert (event["actor"]["username"], event["signature"]["meaning"]) == ("qa", "approved")
    assert released["released_at"] == event["recorded_at"]
    assert (released["seq"], released["head_hash"]) == (event["seq"], event["hash"])
    [message] = outbox(lab, "batch.released", din)
    assert message["seq"] == event["seq"]
    assert view(lab, din)["next_actions"] == ["handoff"]


# --- R-REL-2: conditional release while sterility is pending ---------------------------------------


def test_r_rel_2_release_with_sterility_pending_is_conditional_everywhere(lab):
    din = lab.awaiting_release()
    assert lab.ok(lab.release(din), 200)["conditional_release"] is True
    assert view(lab, din)["conditional_release"] is True
    assert view(lab, din, by="clinic")["conditional_release"] is True
    assert readiness(lab, din)["conditional_release"] is True
    assert stream(lab, din, "released")[0]["data"]["conditional_release"] is True
    assert outbox(lab, "batch.released", din)[0]["conditional_release"] is True


def test_r_rel_2_release_after_a_verified_negative_culture_is_unconditional(lab):
    din = lab.awaiting_release()
    final = enter(lab, din, "sterility_culture", "no_growth")
    lab.ok(lab.verify(din, final["id"]), 200)
    released = lab.ok(lab.release(din), 200)
    assert released["conditional_release"] is False
    assert readiness(lab, din)["conditional_release"] is False
    assert stream(lab, din, "released")[0]["data"]["conditional_release"] is False


def test_r_rel_2_an_unverified_negative_culture_leaves_the_release_conditional(lab):
    din = lab.awaiting_release()
    enter(lab, din, "sterility_culture", "no_growth")
    assert lab.ok(lab.release(din), 200)["conditional_release"] is True


# --- R-REL-3: rejection is terminal ----------------------------------------------------------------


def test_r_rel_3_rejection_is_terminal_and_notified(lab):
    din = lab.processed()
    rejected = lab.ok(reject(lab, din), 200)
    assert rejected["status"] == "rejected"
    assert rejected["next_actions"] == []
    [event] = stream(lab, din, "rejected")
    assert event["data"]["reason"] == "Container cracked during centrifugation."
    assert (event["actor"]["username"], event["signature"]["meaning"]) == ("qa", "rejected")
    [message] = outbox(lab, "batch.rejected", din)
    assert (message["seq"], message["reason"]) == (event["seq"], event["data"]["reason"])
    # nothing moves any more
    assert_refused(lab, lambda: lab.qc(din, "viability_pct", 88), 409, "invalid_transition")
    assert_refused(lab, lambda: lab.handoff(din, by="tech", to="tech2"), 409, "invalid_transition")
    assert "not_ready:rejected" in refused_release(lab, din)
    assert_nothing_written(lab, lambda: reject(lab, din, by="qa2"), 409, "invalid_transition")
    assert readiness_codes(lab, din) == {"not_ready:rejected"}


def test_r_rel_3_a_batch_in_processing_is_rejected_and_processing_stops(lab):
    din = lab.at_lab()
    lab.ok(lab.step(din, "digestion"))
    lab.ok(reject(lab, din), 200)
    problem = assert_refused(lab, lambda: lab.step(din, "isolation"), 409, "invalid_transition")
    assert problem["allowed_actions"] == []


def test_r_rel_3_a_released_batch_can_be_recalled_but_not_an_administered_one(lab):
    din = lab.released()
    assert lab.ok(reject(lab, din), 200)["status"] == "rejected"
    assert_refused(lab, lambda: lab.handoff(din, by="tech", to="clinic"), 409, "invalid_transition")
    assert readiness(lab, din)["ready"] is False


def test_r_rel_3_rejection_after_administration_is_refused(lab):
    din = lab.delivered()
    lab.ok(lab.administration(din))
    assert_nothing_written(lab, lambda: reject(lab, din), 409, "invalid_transition")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "bad", "signature": signature("approved")}, "signature.meaning"),
        ({"reason": "   ", "signature": signature("rejected")}, "reason"),
        ({"signature": signature("rejected")}, "reason"),
        ({"reason": "bad"}, "signature"),
    ],
)
def test_r_rel_3_rejection_needs_a_reason_and_meaning_rejected(lab, body, field):
    din = lab.processed()
    problem = assert_nothing_written(
        lab, lambda: lab.post("qa", f"/batches/{din}/reject", body), 422, "validation_error"
    )
    assert field in problem["errors"]


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("tech", 403, "forbidden"),
        ("admin", 403, "forbidden"),
        ("clinic", 403, "forbidden"),
        ("other", 404, "not_found"),
    ],
)
def test_r_rel_3_only_qa_rejects(lab, who, status, code):
    din = lab.processed()
    assert_nothing_written(lab, lambda: reject(lab, din, by=who), status, code)


# --- R-RDY-1: readiness for the clinic --------------------------------------------------------------


def test_r_rdy_1_ready_when_released_dispatched_or_delivered(lab):
    din = lab.awaiting_release()
    assert readiness_codes(lab, din) == {"not_ready:awaiting_release"}
    lab.ok(lab.release(din), 200)
    shown = readiness(lab, din)
    assert (shown["din"], shown["status"], shown["ready"], shown["blockers"]) == (din, "released", True, [])
    batch = view(lab, din)
    assert (shown["released_at"], shown["expires_at"]) == (batch["released_at"], batch["expires_at"])
    assert shown["custodian"]["username"] == "tech"
    lab.ok(lab.handoff(din, by="tech", to="clinic", seal="SEAL-2"))
    shown = readiness(lab, din)
    assert (shown["status"], shown["ready"]) == ("dispatched", True)
    lab.ok(lab.receive(din, by="clinic", seal="SEAL-2"))
    shown = readiness(lab, din, by="clinic_b")
    assert (shown["status"], shown["ready"], shown["custodian"]["username"]) == ("delivered", True, "clinic")
    lab.ok(lab.administration(din))
    assert readiness_codes(lab, din) == {"not_ready:administered"}


def test_r_rdy_1_gives_the_same_blocker_codes_as_release(lab):
    din = lab.processed()
    complete_qc(lab, din, results={"viability_pct": 65}, unverified=("tnc_total",))
    [deviation] = deviations(lab, din)
    shared = {"qc_out_of_spec:viability_pct", "qc_unverified:tnc_total", f"open_deviation:{deviation['id']}"}
    assert readiness_codes(lab, din) == {"not_ready:processed"} | shared
    assert refused_release(lab, din) == {"not_ready:processed"} | shared


def test_r_rdy_1_a_released_batch_that_is_held_or_expired_is_not_ready(lab):
    din = lab.released()
    deviation = manual_deviation(lab, din)
    shown = readiness(lab, din)
    assert (shown["ready"], shown["held"]) == (False, True)
    assert readiness_codes(lab, din) == {f"open_deviation:{deviation}"}
    lab.ok(dispose(lab, deviation), 200)
    assert readiness(lab, din)["ready"] is True
    expire(lab, din)
    assert readiness_codes(lab, din) == {"expired"}


def test_r_rdy_1_another_clinics_batch_is_not_found(lab):
    din = lab.released()
    assert_refused(lab, lambda: lab.get("other", f"/batches/{din}/readiness"), 404, "not_found")
    for who in ("clinic", "clinic_b", "tech", "qa", "admin"):
        assert readiness(lab, din, by=who)["ready"] is True
