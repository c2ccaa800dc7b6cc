"""Full verification on PostgreSQL streams the events through a reader thread, in chunks, and
checks the common case without building a link object per event (R-AUD-3, performance issue 7).

Chunks far smaller than a batch's chain make every chain straddle chunk boundaries; a broken
link must still be named exactly as the per-event path names it, and an event the database
cannot compare (its canonical text is not JSON) must still send the run down the Python path.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from labtrack.audit import chains
from labtrack.models import BatchEvent
from tests.api.test_audit_trail import batch_id, change_data, change_hash, set_event, triggers_bypassed
from tests.helpers import PROCESS_ORDER

pytestmark = pytest.mark.postgres

EVENTS = 7  # a processed batch


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(chains, "PREFETCH_ROWS", 3)


def at_lab(lab, count: int, mrn: str = "MRN-1") -> list[str]:
    """``count`` batches of one (new) patient, harvested, handed to the lab and received: four events each."""
    patient = lab.patient(mrn)
    dins = []
    for _ in range(count):
        din = lab.ok(lab.post("clinic", "/batches", {"patient_id": patient["id"], "tissue_source": "adipose"}))["din"]
        lab.ok(lab.harvest(din, patient_mrn=mrn))
        lab.ok(lab.handoff(din))
        lab.ok(lab.receive(din))
        dins.append(din)
    return dins


def processed(lab, count: int, mrn: str = "MRN-1") -> list[str]:
    """``count`` processed batches of one (new) patient, seven events each."""
    dins = at_lab(lab, count, mrn)
    for din in dins:
        for name in PROCESS_ORDER["adipose"]:
            lab.ok(lab.step(din, name))
    return dins


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "audit-verify-reader"]


def test_r_aud_3_intact_chains_verify_across_chunk_boundaries(lab, small_chunks):
    dins = processed(lab, 3)
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"] is True, report["failures"]
    assert report["batches_checked"] == len(dins)
    assert report["events_checked"] >= len(dins) * EVENTS
    assert readers() == []


@pytest.mark.parametrize(("tamper", "seq", "reason"), [(change_data, 5, "canonical text"), (change_hash, 4, "hash")])
def test_r_aud_3_a_break_in_a_middle_chunk_is_named(lab, small_chunks, tamper, seq, reason):
    first, victim, last = processed(lab, 3)
    with triggers_bypassed(lab) as connection:
        tamper(connection, batch_id(lab, victim))
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert [(f["din"], f["seq"]) for f in report["failures"]] == [(victim, seq)]
    assert reason in report["failures"][0]["reason"]
    assert report["batches_checked"] == 3
    assert {first, last}.isdisjoint(f["din"] for f in report["failures"])


def test_r_aud_3_a_canonical_text_that_is_not_json_is_named(lab, small_chunks):
    """The database refuses the comparison in the reader thread; the error reaches verify, which
    falls back to the Python path and names the event."""
    _, victim = processed(lab, 2)
    with triggers_bypassed(lab) as connection:
        set_event(connection, batch_id(lab, victim), 3, canonical="{not json")
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert [(f["din"], f["seq"]) for f in report["failures"]] == [(victim, 3)]
    assert "canonical text does not match" in report["failures"][0]["reason"]
    assert readers() == []


def test_the_reader_stops_when_the_caller_stops_early(lab, small_chunks):
    processed(lab, 2)
    with lab.db.engine.connect() as connection:
        query = select(BatchEvent.batch_id, BatchEvent.seq).order_by(BatchEvent.batch_id, BatchEvent.seq)
        with chains._prefetched(connection, [query.execution_options(yield_per=chains.PREFETCH_ROWS)]) as rows:
            assert next(rows).seq == 1
        # the caller gave up after one row: the reader must not stay blocked on the queue
        assert readers() == []
        assert connection.execute(query.limit(1)).one().seq == 1  # the connection is usable
