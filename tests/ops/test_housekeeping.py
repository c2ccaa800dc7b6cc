"""Nightly housekeeping (R-OPS-6): operational rows past their use go, in small batches; history never.

The task runs in-process through this app's Celery (as the beat would have it run), on
rows aged by SQL. It deletes exactly what the rules say, leaves every event, checkpoint and
authentication record, finds nothing the second time, and shares the work when two run at
once. On PostgreSQL it runs as the application role, which could not delete history if it tried.
The expiry watcher's "already warned" state is on the batch, so old outbox rows may go.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command

import workers.tasks  # noqa: F401  (registers the tasks)
from labtrack import jobs
from labtrack.extensions import TASK_HOUSEKEEPING, TASK_SWEEP
from labtrack.migrate import alembic_config
from labtrack.services import housekeeping
from tests.conftest import make_app
from tests.helpers import Lab, now
from tests.service.test_privileges import INSUFFICIENT_PRIVILEGE, deployment, refusal, set_up  # noqa: F401
from tests.workers.conftest import set_batch

HISTORY = ("batch_events", "admin_events", "auth_events", "checkpoints", "checkpoint_leaves")
PATIENT = {"family_name": "Doe", "given_name": "Jane", "birth_date": "1980-05-17"}


def counts(lab: Lab, tables) -> dict[str, int]:
    return {table: lab.sql(f"SELECT count(*) FROM {table}")[0][0] for table in tables}


def run_task(app) -> dict[str, int]:
    return app.extensions["celery"].tasks[TASK_HOUSEKEEPING]()


def stage(lab: Lab) -> dict[str, object]:
    """One row of each kind past its use and one not; what is expected to go."""
    moment = now()
    for key in ("old-key", "new-key"):
        lab.ok(lab.post("clinic", "/patients", {"mrn": key} | PATIENT, **{"Idempotency-Key": key}))
    lab.sql("UPDATE idempotency_keys SET created_at = :at WHERE key = 'old-key'", at=moment - timedelta(hours=25))
    lab.ok(lab.client.post("/api/v1/auth/token", json={"username": "tech2", "password": "correct-horse-battery"}), 200)
    lab.sql("UPDATE api_tokens SET expires_at = :at WHERE id = (SELECT max(id) FROM api_tokens)", at=moment)
    din = lab.at_lab()
    kept_din = lab.batch(mrn="MRN-KEPT")
    lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "old news"}))
    lab.ok(lab.post("tech", f"/batches/{kept_din}/deviations", {"kind": "manual", "description": "still unread"}))
    assert lab.app.extensions["celery"].tasks[TASK_SWEEP]() >= 2  # delivered in-app: notifications written
    old_row, kept_row = (
        lab.sql(
            "SELECT o.id FROM outbox o JOIN batches b ON b.id = o.batch_id "
            "WHERE o.topic = 'deviation.opened' AND b.din = :din",
            din=d,
        )[0][0]
        for d in (din, kept_din)
    )
    lab.sql("UPDATE outbox SET delivered_at = :at WHERE status = 'delivered'", at=moment - timedelta(days=31))
    lab.sql(
        "UPDATE notifications SET read_at = :at WHERE outbox_id = :row", at=moment - timedelta(days=91), row=old_row
    )
    lab.sql(
        "INSERT INTO outbox_deliveries (outbox_id, channel, attempt, target, at, ok, duration_ms, worker) "
        "VALUES (:row, 'webhook', 1, 'https://clinic.example/hook', :at, true, 5, 'test')",
        row=old_row,
        at=moment - timedelta(days=31),
    )
    read_notifications = lab.sql("SELECT count(*) FROM notifications WHERE outbox_id = :row", row=old_row)[0][0]
    assert read_notifications > 0
    return {"old_row": old_row, "kept_row": kept_row, "read_notifications": read_notifications}


def test_r_ops_6_housekeeping_deletes_what_outlived_its_use_and_never_history(lab: Lab):
    staged = stage(lab)
    lab.ok(lab.post("qa", "/audit/checkpoints"))
    history = counts(lab, HISTORY)
    deleted = run_task(lab.app)
    assert deleted["idempotency_keys"] == 1
    assert deleted["api_tokens"] == 1
    assert deleted["notifications"] == staged["read_notifications"]
    assert deleted["outbox"] >= 1
    outbox_ids = {row[0] for row in lab.sql("SELECT id FROM outbox")}
    assert staged["old_row"] not in outbox_ids
    assert staged["kept_row"] in outbox_ids  # its notifications are unread: the row stays with them
    assert lab.sql("SELECT count(*) FROM outbox_deliveries WHERE outbox_id = :row", row=staged["old_row"])[0][0] == 0
    assert [row[0] for row in lab.sql("SELECT key FROM idempotency_keys")] == ["new-key"]
    assert counts(lab, HISTORY) == history
    # the live tokens still work, and the chains still verify
    assert lab.ok(lab.get("qa", "/audit/verify"), 200)["ok"] is True
    # idempotent: a second run finds nothing
    assert sum(run_task(lab.app).values()) == 0


def test_r_ops_6_two_housekeepers_at_once_share_the_work(lab: Lab):
    user_id = lab.sql("SELECT id FROM users WHERE username = 'clinic'")[0][0]
    old = now() - timedelta(days=2)
    rows = housekeeping.BATCH * 2 + 37
    for start in range(0, rows, 500):
        lab.sql(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, response_body, created_at) "
            + " UNION ALL ".join(
                f"SELECT :user, 'bulk-{n}', 'h', 201, '{{}}', :at" for n in range(start, min(start + 500, rows))
            ),
            user=user_id,
            at=old,
        )
    results: list[int] = []
    errors: list[BaseException] = []
    retention = housekeeping.Retention(idempotency=timedelta(hours=24))

    def housekeeper() -> None:
        try:
            results.append(jobs.housekeeping(lab.db, retention).deleted["idempotency_keys"])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=housekeeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sum(results) == rows
    assert lab.sql("SELECT count(*) FROM idempotency_keys")[0][0] == 0


def test_r_ops_6_the_expiry_warning_is_kept_on_the_batch_and_migrated_from_outbox_rows(lab: Lab, database_url: str):
    din = lab.at_lab()
    set_batch(lab.db, din, expires_at=now() + timedelta(minutes=30))
    assert jobs.expiry_watch(lab.db, warning=timedelta(hours=2)).warned == [din]
    warned_at = lab.sql("SELECT expiry_warned_at FROM batches WHERE din = :din", din=din)[0][0]
    assert warned_at is not None
    # an installation before migration 0010 kept that state as the outbox row; the upgrade copies it over
    lab.db.dispose()
    command.downgrade(alembic_config(database_url), "0009")  # this migration only
    command.upgrade(alembic_config(database_url), "head")
    assert lab.sql("SELECT expiry_warned_at FROM batches WHERE din = :din", din=din)[0][0] is not None
    # with the outbox rows gone (housekeeping), the clinic is still not warned twice
    lab.sql("DELETE FROM notifications")
    lab.sql("DELETE FROM outbox")
    assert jobs.expiry_watch(lab.db, warning=timedelta(hours=2)).warned == []


@pytest.mark.postgres
def test_r_ops_6_housekeeping_runs_as_the_app_role_which_cannot_delete_history(deployment, tmp_path: Path):  # noqa: F811
    set_up(deployment, tmp_path)
    app = make_app(deployment.app_url, tmp_path / "app")
    try:
        lab = Lab.build(app, app.test_client())
        staged = stage(lab)
        deleted = run_task(app)
        assert deleted["outbox"] >= 1
        assert deleted["notifications"] == staged["read_notifications"]
    finally:
        app.extensions["labtrack.db"].dispose()
    for table in HISTORY:
        assert refusal(deployment.app_url, f"DELETE FROM {table}").orig.sqlstate == INSUFFICIENT_PRIVILEGE
