"""A worker SIGKILLed in the middle of a task leaves nothing of it, and a new worker does it exactly once.

tests/workers/test_outbox_delivery.py covers a worker killed mid-delivery (webhooks at least once with
a stable delivery id, in-app notifications exactly once). Here: the checkpoint task (R-AUD-4) and the
expiry watcher (R-SEQ-3). The test holds a lock the task needs, so the task is caught part-way: on
PostgreSQL inside its transaction, after its first writes (the kept tree's current leaves and nodes and
the checkpoint row; the ``expired`` event), blocked on a table it writes last; on SQLite at its write
transaction's start (SQLite writers are serial). The worker is killed there, the lock released, and a new
worker runs the task; the expiry watch is sent twice: once for the message the dead worker never
acknowledged (``task_acks_late``), once for beat's next tick.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import text

from labtrack.extensions import TASK_CHECKPOINT, TASK_EXPIRY_WATCH
from labtrack.services import outbox
from tests.faults.conftest import assert_nothing_half_written
from tests.workers.conftest import set_batch
from tests.workers.support import wait_until

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@contextlib.contextmanager
def holding(db, table: str) -> Iterator:
    """Hold what a writer of ``table`` waits for: the table's lock on PostgreSQL (reads still go on),
    the database's write lock on SQLite."""
    if db.is_sqlite:
        connection = sqlite3.connect(db.engine.url.database, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    with db.engine.connect() as connection:
        connection.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()


def waiting_on(db, worker, task: str, table: str) -> bool:
    """The task has started and is blocked: on PostgreSQL, a lock on ``table`` is waited for."""
    if task.encode() + b"[" not in worker.log_path.read_bytes():
        return False
    if db.is_sqlite:
        return True  # received, and no write can begin while the lock is held
    query = f"SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass"
    with db.engine.connect() as connection:
        return connection.execute(text(query)).scalar() > 0


def kill_mid_task(lab, start_worker, task: str, table: str) -> None:
    """Catch ``task`` part-way and kill its worker. The worker takes one task at a time: the deliveries the
    test's own requests queued (hand-off notifications) are done first, else the task waits behind them."""
    app, db = lab.app, lab.db
    worker = start_worker(concurrency=1, beat=False)
    outbox.drain_publisher(5)
    assert wait_until(lambda: count(lab, "SELECT count(*) FROM outbox WHERE status = 'pending'") == 0, 30)
    with holding(db, table):
        app.extensions["celery"].send_task(task)
        assert wait_until(lambda: waiting_on(db, worker, task, table), 30), "the task never got under way"
        if db.is_sqlite:
            wait_until(lambda: False, 1)  # into its busy wait for the write lock
        worker.kill()


def count(lab, query: str, **params) -> int:
    return lab.sql(query, **params)[0][0]


def test_r_aud_4_worker_killed_mid_checkpoint_leaves_none_and_a_new_worker_makes_one(lab, app, db, start_worker):
    dins = [lab.at_lab(), lab.batch(mrn="MRN-2")]
    kill_mid_task(lab, start_worker, TASK_CHECKPOINT, "checkpoint_leaves")
    # the kept tree (current leaves and nodes) was written before it was caught: rolled back with the rest
    for table in ("checkpoints", "checkpoint_leaves", "checkpoint_heads", "checkpoint_nodes"):
        assert count(lab, f"SELECT count(*) FROM {table}") == 0, table

    start_worker(concurrency=1, beat=False)
    app.extensions["celery"].send_task(TASK_CHECKPOINT)
    assert wait_until(lambda: lab.ok(lab.get("qa", "/audit/checkpoints"), 200), 30)
    (made,) = lab.ok(lab.get("qa", "/audit/checkpoints"), 200)
    assert made["tree_size"] == len(dins) + 1  # every batch and the admin chain
    assert count(lab, "SELECT count(*) FROM checkpoint_leaves") == made["tree_size"]
    assert count(lab, "SELECT count(*) FROM checkpoint_heads") == made["tree_size"]
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"], report["failures"]
    assert report["checkpoint"]["ok"]


def test_r_seq_3_worker_killed_mid_expiry_watch_a_new_worker_expires_the_batch_once(lab, app, db, start_worker):
    din = lab.at_lab()
    set_batch(db, din, expires_at=LONG_AGO)
    kill_mid_task(lab, start_worker, TASK_EXPIRY_WATCH, "outbox")
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["status"] == "received"
    assert count(lab, "SELECT count(*) FROM batch_events WHERE type = 'expired'") == 0

    start_worker(concurrency=1, beat=False)
    for _ in range(2):  # the unacknowledged message coming back, and beat's next tick
        app.extensions["celery"].send_task(TASK_EXPIRY_WATCH)
    assert wait_until(lambda: lab.ok(lab.get("qa", f"/batches/{din}"), 200)["status"] == "expired", 30)
    wait_until(lambda: False, 2)  # let the second run finish
    assert count(lab, "SELECT count(*) FROM batch_events WHERE type = 'expired'") == 1
    assert count(lab, "SELECT count(*) FROM outbox WHERE topic = 'batch.expired'") == 1
    assert_nothing_half_written(lab)
