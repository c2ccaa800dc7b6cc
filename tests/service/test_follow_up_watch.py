"""The follow-up watcher (R-OUT-4): a reminder 7 days before a visit, missed when its window closes,
each once, with two watchers at once too."""

from __future__ import annotations

import json
import threading
from datetime import date, timedelta

import pytest

from labtrack import jobs
from labtrack.services import outbox
from tests.conftest import ON_POSTGRES
from tests.outcome_support import administered


def visits(lab, din: str) -> dict[str, dict]:
    return {v["visit"]: v for v in lab.ok(lab.get("qa", f"/batches/{din}/follow-ups"), 200)}


def topics(lab, topic: str) -> list[dict]:
    rows = lab.sql("SELECT payload FROM outbox WHERE topic = :topic ORDER BY id", topic=topic)
    return [json.loads(payload) if isinstance(payload, str) else payload for (payload,) in rows]


def due_date(visit: dict) -> tuple[date, date]:
    return date.fromisoformat(visit["due_on"]), date.fromisoformat(visit["window_to"])


def test_r_out_4_the_clinic_is_reminded_once_7_days_before_a_visit(lab):
    din = administered(lab, "MRN-1")
    due, _ = due_date(visits(lab, din)["m3"])
    assert jobs.followup_watch(lab.db, today=due - timedelta(days=8)).reminded == []
    assert len(jobs.followup_watch(lab.db, today=due - timedelta(days=7)).reminded) == 1
    assert jobs.followup_watch(lab.db, today=due - timedelta(days=6)).reminded == []
    sent = topics(lab, "follow_up.due")
    assert len(sent) == 1
    assert sent[0]["visit"] == "m3"
    jobs.dispatch(lab.db, outbox.Settings.of(lab.app.config))
    told = lab.sql(
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.topic = 'follow_up.due'"
    )
    assert sorted(name for (name,) in told) == ["clinic", "clinic_b"]  # the batch's clinic, not the other one


def test_r_out_4_a_visit_is_missed_when_its_window_closes_telling_clinic_and_qa(lab):
    din = administered(lab, "MRN-1")
    _, closes = due_date(visits(lab, din)["m3"])
    lab.ok(lab.post("clinic", f"/batches/{din}/follow-ups/baseline", {
        "measured_on": visits(lab, din)["baseline"]["due_on"], "hair_density_per_cm2": 90,
        "patient_global_assessment": 0, "investigator_global_assessment": 0, "adverse_reaction": False,
    }))  # fmt: skip
    assert jobs.followup_watch(lab.db, today=closes).missed == []
    assert len(jobs.followup_watch(lab.db, today=closes + timedelta(days=1)).missed) == 1
    assert jobs.followup_watch(lab.db, today=closes + timedelta(days=2)).missed == []
    now = visits(lab, din)
    assert (now["baseline"]["status"], now["m3"]["status"], now["m6"]["status"]) == ("done", "missed", "due")
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert events[-1]["type"] == "follow_up_missed"
    assert events[-1]["data"]["visit"] == "m3"
    assert events[-1]["actor"]["username"] == "system"
    jobs.dispatch(lab.db, outbox.Settings.of(lab.app.config))
    told = lab.sql(
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.topic = 'follow_up.missed'"
    )
    assert sorted(name for (name,) in told) == ["clinic", "clinic_b", "qa", "qa2"]


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="needs PostgreSQL")
def test_r_out_4_two_watchers_at_once_remind_and_mark_each_visit_once(lab):
    dins = [administered(lab, f"MRN-{i}") for i in range(3)]
    _, closes = due_date(visits(lab, dins[0])["m3"])
    start = threading.Barrier(2)
    found = []

    def run() -> None:
        start.wait()
        found.append(jobs.followup_watch(lab.db, today=closes + timedelta(days=1)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missed = sorted(m for outcome in found for m in outcome.missed)
    assert len(missed) == len(set(missed)) == 6  # baseline and m3 of each of the three batches
    assert len(topics(lab, "follow_up.missed")) == 6
    counted = lab.sql("SELECT COUNT(*) FROM batch_events WHERE type = 'follow_up_missed'")
    assert counted[0][0] == 6
