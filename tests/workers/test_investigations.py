"""Investigation watchers and notices (R-ADV-2, R-LBK-2, R-LBK-3): each notice once, to whom it concerns.

Dispatch runs in this process (its worker path is test_outbox_delivery's), against a real HTTP
receiver checking the HMAC and a real SMTP conversation; the beat tasks run in real worker processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest

from labtrack import jobs
from labtrack.extensions import TASK_LOOKBACK_WATCH, TASK_REACTION_WATCH
from labtrack.services import investigation_watchers, outbox
from tests.helpers import signature
from tests.investigation_support import Batches, reaction
from tests.workers.conftest import set_webhook
from tests.workers.support import SECRET, SmtpSink, wait_until
from tests.workers.test_watchers import at_once

ZONE = "UTC"
REPORTABLE = {"life_threatening": True, "communicable_disease_suspected": True}


def notices(lab, topic: str) -> list[dict]:
    rows = lab.sql("SELECT payload FROM outbox WHERE topic = :topic ORDER BY id", topic=topic)
    return [payload if isinstance(payload, dict) else json.loads(payload) for (payload,) in rows]


def recipients(lab, topic: str) -> set[str]:
    rows = lab.sql(
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.topic = :topic", topic=topic
    )
    return {row.username for row in rows}


@pytest.fixture
def made(lab) -> Batches:
    return Batches(lab)


def reportable(made: Batches) -> dict:
    din = made.administered()
    return made.lab.ok(made.lab.post("clinic", f"/batches/{din}/adverse-reactions", reaction(**REPORTABLE)))


def at_noon(day: date) -> datetime:
    return datetime.fromisoformat(f"{day.isoformat()}T12:00:00+00:00")


def test_r_adv_2_qa_is_told_five_days_before_the_due_day_and_when_overdue_once_each(lab, made, app, db):
    reported = reportable(made)
    due = date.fromisoformat(reported["report_due_on"])
    watch = jobs.reaction_due_watch
    assert watch(db, zone=ZONE, now=at_noon(due - timedelta(days=6))).due_soon == []
    assert watch(db, zone=ZONE, now=at_noon(due - timedelta(days=5))).due_soon == [reported["id"]]
    assert watch(db, zone=ZONE, now=at_noon(due - timedelta(days=1))).due_soon == []
    assert watch(db, zone=ZONE, now=at_noon(due)).overdue == []  # the due day itself is still on time
    assert watch(db, zone=ZONE, now=at_noon(due + timedelta(days=1))).overdue == [reported["id"]]
    assert watch(db, zone=ZONE, now=at_noon(due + timedelta(days=9))).overdue == []
    assert [n["reaction_id"] for n in notices(lab, "adverse_reaction.due_soon")] == [reported["id"]]
    assert [n["report_due_on"] for n in notices(lab, "adverse_reaction.overdue")] == [reported["report_due_on"]]
    jobs.dispatch(db, outbox.Settings.of(app.config))
    assert recipients(lab, "adverse_reaction.overdue") == {"qa", "qa2"}


def test_r_adv_2_a_closed_or_unreportable_reaction_is_not_chased(lab, made, db):
    reported = reportable(made)
    body = {
        "conclusion": "Reported.",
        "related_to_product": "unknown",
        "reported_to_authority_on": date.today().isoformat(),
        "signature": signature("reviewed"),
    }
    lab.ok(lab.post("qa", f"/adverse-reactions/{reported['id']}/close", body), 200)
    later = at_noon(date.fromisoformat(reported["report_due_on"]) + timedelta(days=1))
    assert jobs.reaction_due_watch(db, zone=ZONE, now=later) == investigation_watchers.Told()


@pytest.mark.postgres
def test_r_adv_2_two_watches_at_once_tell_qa_once(lab, made, db):
    reported = [reportable(made) for _ in range(2)]
    overdue = at_noon(date.fromisoformat(reported[-1]["report_due_on"]) + timedelta(days=1))
    told = at_once(2, lambda: jobs.reaction_due_watch(db, zone=ZONE, now=overdue))
    assert sorted(i for t in told for i in t.overdue) == sorted(m["id"] for m in reported)
    assert sorted(n["reaction_id"] for n in notices(lab, "adverse_reaction.overdue")) == sorted(
        m["id"] for m in reported
    )
    assert notices(lab, "adverse_reaction.due_soon") == []


def lookback_of_two_clinics(made: Batches) -> tuple[dict, str, str]:
    lab = made.lab
    ours = made.at_lab()
    patient = lab.patient("MRN-O", by="other")
    theirs = lab.ok(lab.post("other", "/batches", {"patient_id": patient["id"], "tissue_source": "adipose"}))["din"]
    lab.ok(lab.harvest(theirs, by="other", patient_mrn="MRN-O"))
    lab.ok(lab.handoff(theirs, by="other"))
    lab.ok(lab.receive(theirs))
    for din in (ours, theirs):
        lab.ok(lab.step(din, "digestion"))
    body = {"reason": "Endotoxin above limit in the collagenase lot", "seed": {"kind": "reagent_lot", "value": "1"}}
    return lab.ok(lab.post("qa", "/lookbacks", body)), ours, theirs


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp_url(smtp) -> str:
    return smtp.url


def test_r_lbk_2_each_clinic_hears_of_its_own_dins_in_app_by_email_and_signed_webhook(
    lab, made, app, db, receiver, smtp
):
    set_webhook(lab, "C1", receiver.url, SECRET)
    set_webhook(lab, "C2", receiver.url + "/c2", SECRET)
    lab.ok(lab.patch("admin", "/users/clinic", {"email": "clara@clinic.example"}), 200)
    lab.ok(lab.patch("admin", "/users/other", {"email": "olga@elsewhere.example"}), 200)
    lookback, ours, theirs = lookback_of_two_clinics(made)
    jobs.sweep(db, outbox.Settings.of(app.config))
    hooks = {r["path"]: r for r in receiver.requests if r["body"]["topic"] == "lookback.opened"}
    assert set(hooks) == {"/hooks/labtrack", "/hooks/labtrack/c2"}
    assert all(r["signature_ok"] for r in hooks.values())
    assert hooks["/hooks/labtrack"]["body"]["data"]["dins"] == [ours]
    assert hooks["/hooks/labtrack/c2"]["body"]["data"]["dins"] == [theirs]
    assert ours not in json.dumps(hooks["/hooks/labtrack/c2"]["body"])
    assert hooks["/hooks/labtrack/c2"]["body"]["data"]["lookback_id"] == lookback["id"]
    in_app = lab.sql(
        "SELECT u.username, n.message FROM notifications n JOIN users u ON u.id = n.user_id "
        "WHERE n.topic = 'lookback.opened'"
    )
    assert {row.username for row in in_app} == {"clinic", "clinic_b", "other"}
    assert all(theirs not in row.message for row in in_app if row.username != "other")
    mails = [m for m in smtp.messages if "names your batches" in m["data"]]
    assert sorted(address for m in mails for address in m["to"]) == ["clara@clinic.example", "olga@elsewhere.example"]
    assert all(not (ours in m["data"] and theirs in m["data"]) for m in mails)


def test_r_lbk_3_a_reminder_at_24_hours_and_qa_told_at_72_which_clinics_have_not_answered(lab, made, app, db):
    lookback, _ours, theirs = lookback_of_two_clinics(made)
    lab.ok(lab.post("clinic", f"/lookbacks/{lookback['id']}/acknowledge"), 200)
    opened = datetime.fromisoformat(lookback["opened_at"])
    watch = jobs.lookback_watch
    assert watch(db, now=opened + timedelta(hours=23)) == investigation_watchers.Told()
    assert watch(db, now=opened + timedelta(hours=25)).reminded == [(lookback["id"], "C2")]
    assert watch(db, now=opened + timedelta(hours=30)) == investigation_watchers.Told()
    late = watch(db, now=opened + timedelta(hours=73))
    assert (late.reminded, late.escalated) == ([], [(lookback["id"], "C2")])
    assert watch(db, now=opened + timedelta(hours=99)) == investigation_watchers.Told()
    (reminder,) = notices(lab, "lookback.reminder")
    assert reminder["dins"] == [theirs]
    (unanswered,) = notices(lab, "lookback.unanswered")
    assert unanswered["clinics"] == ["C2"]
    jobs.dispatch(db, outbox.Settings.of(app.config))
    assert recipients(lab, "lookback.reminder") == {"other"}
    assert recipients(lab, "lookback.unanswered") == {"qa", "qa2"}
    shown = lab.ok(lab.get("qa", f"/lookbacks/{lookback['id']}"), 200)
    c2 = next(c for c in shown["clinics"] if c["clinic"] == "C2")
    assert c2["reminded_at"] is not None
    assert c2["escalated_at"] is not None
    assert c2["acknowledged_at"] is None


@pytest.mark.postgres
def test_r_lbk_3_two_watches_at_once_remind_and_escalate_once(lab, made, db):
    lookback, _ours, _theirs = lookback_of_two_clinics(made)
    later = datetime.fromisoformat(lookback["opened_at"]) + timedelta(hours=80)
    told = at_once(2, lambda: jobs.lookback_watch(db, now=later))
    assert sorted(r for t in told for r in t.reminded) == [(lookback["id"], "C1"), (lookback["id"], "C2")]
    assert sorted(e for t in told for e in t.escalated) == [(lookback["id"], "C1"), (lookback["id"], "C2")]
    assert len(notices(lab, "lookback.reminder")) == 2
    (unanswered,) = notices(lab, "lookback.unanswered")
    assert unanswered["clinics"] == ["C1", "C2"]


def test_r_adv_2_r_lbk_3_the_beat_tasks_run_in_real_workers_with_one_effect(lab, made, app, db, start_worker):
    reported = reportable(made)
    lookback, _ours, _theirs = lookback_of_two_clinics(made)
    lab.sql("UPDATE adverse_reactions SET report_due_on = :day", day=date.today() - timedelta(days=1))
    lab.sql("UPDATE lookback_clinics SET notified_at = :at", at=datetime.now().astimezone() - timedelta(hours=30))
    celery = app.extensions["celery"]
    for name in (TASK_REACTION_WATCH, TASK_REACTION_WATCH, TASK_LOOKBACK_WATCH, TASK_LOOKBACK_WATCH):
        celery.send_task(name)
    start_worker(concurrency=2, beat=False)
    assert wait_until(lambda: notices(lab, "adverse_reaction.overdue"), 30)
    assert wait_until(lambda: len(notices(lab, "lookback.reminder")) == 2, 30)
    wait_until(lambda: False, 2)  # let any second run finish
    assert [n["reaction_id"] for n in notices(lab, "adverse_reaction.overdue")] == [reported["id"]]
    reminded = sorted(din for n in notices(lab, "lookback.reminder") for din in n["dins"])
    assert reminded == sorted(a["din"] for a in lookback["affected"])
