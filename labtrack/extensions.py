"""Extension objects, created unbound and bound to an app in ``create_app``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from celery import Celery, Task
from celery.schedules import crontab
from flask import Flask
from flask_smorest import Api
from flask_wtf.csrf import CSRFProtect

from labtrack.domain.actors import Actor
from labtrack.services import labels, outbox, outcomes

api = Api()
csrf = CSRFProtect()  # checked by the web pages only (labtrack.web); the API uses bearer tokens

# Longer than any task may run, so the broker never hands a running task to a second worker.
VISIBILITY_TIMEOUT_S = 3 * 3600
# Publishing after a commit must not hang a request on a dead Redis (the outbox sweep catches up).
BROKER_CONNECT_TIMEOUT_S = 2

# Task names (workers/tasks.py), stable so the web process can send them by name.
TASK_DISPATCH = "labtrack.outbox.dispatch"
TASK_SWEEP = "labtrack.outbox.sweep"
TASK_EXPIRY_WATCH = "labtrack.watch.expiry"
TASK_CUSTODY_WATCH = "labtrack.watch.custody"
TASK_CHECKPOINT = "labtrack.audit.checkpoint"
TASK_VERIFY = "labtrack.audit.verify"
TASK_RESUME_VERIFICATIONS = "labtrack.audit.resume_verifications"
TASK_PARTITIONS = "labtrack.audit.partitions"
TASK_HOUSEKEEPING = "labtrack.housekeeping"
HOUSEKEEPING_AT = crontab(hour=2, minute=30)  # nightly, UTC (R-OPS-6)
TASK_FOLLOWUP_WATCH = "labtrack.watch.follow_ups"  # workers/outcome_tasks.py
TASK_TREND_WATCH = "labtrack.watch.trends"
TASK_OUTCOME_STATISTICS = "labtrack.outcome_statistics"
TASK_REACTION_WATCH = "labtrack.watch.adverse_reactions"  # workers/investigations.py
TASK_LOOKBACK_WATCH = "labtrack.watch.lookbacks"
log = logging.getLogger(__name__)


def send_label_print(app: Flask) -> Callable[[int], None]:
    """What ``labels.request_print`` calls after commit: ask the broker to print that job."""
    celery = app.extensions["celery"]
    return lambda job_id: celery.send_task(labels.TASK_PRINT_LABEL, args=[job_id], retry=False)


def outcomes_report(app: Flask, actor: Actor, **filters: object) -> dict:
    """The outcomes report (R-OUT-5) with its statistics: those not stored yet are computed by a worker, which
    may load scipy (the web process may not), and waited for up to LABTRACK_STATISTICS_WAIT_SECONDS."""
    celery = app.extensions["celery"]
    return outcomes.with_statistics(
        app.extensions["labtrack.db"].reader,
        actor,
        lambda inputs: celery.send_task(TASK_OUTCOME_STATISTICS, args=[inputs], retry=False),
        float(app.config["LABTRACK_STATISTICS_WAIT_SECONDS"]),
        **filters,
    )


def hand_to_worker(app: Flask, run_id: int) -> bool:
    """Send a verification run (``audit.runs``) to a worker; False (logged) when the broker cannot take it:
    beat's resume task resends it."""
    try:
        app.extensions["celery"].send_task(TASK_VERIFY, args=[run_id], retry=False)
    except Exception as error:  # any broker failure: the run stays queued for the resume task
        log.warning("verification run %s: broker unavailable (%s); it will be resumed", run_id, error)
        return False
    return True


def _send_dispatch(celery: Celery, ids: list[int]) -> None:
    """The outbox's ``Send``: ask the broker to run the dispatch task for these rows."""
    celery.send_task(TASK_DISPATCH, args=[ids], retry=False)


def beat_schedule(sweep_seconds: float, checkpoint_seconds: float = 600.0) -> dict[str, dict[str, object]]:
    """requirements §6. Each run expires after its period, so a stopped worker does not come back to a backlog."""
    periods = {
        TASK_SWEEP: sweep_seconds,
        TASK_EXPIRY_WATCH: 60.0,
        TASK_CUSTODY_WATCH: 300.0,
        TASK_CHECKPOINT: checkpoint_seconds,
        TASK_RESUME_VERIFICATIONS: 60.0,
        TASK_PARTITIONS: 3600.0,
        TASK_FOLLOWUP_WATCH: 3600.0,
        TASK_TREND_WATCH: 300.0,
        TASK_REACTION_WATCH: 3600.0,
        TASK_LOOKBACK_WATCH: 300.0,
    }
    schedule: dict[str, dict[str, object]] = {
        name: {"task": name, "schedule": period, "options": {"expires": period}} for name, period in periods.items()
    }
    schedule[TASK_HOUSEKEEPING] = {"task": TASK_HOUSEKEEPING, "schedule": HOUSEKEEPING_AT, "options": {"expires": 3600}}
    return schedule


def celery_init_app(app: Flask) -> Celery:
    """Flask's Celery pattern: tasks run inside the app context; settings from the requirements (requirements §6)."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    broker_url = app.config["CELERY_BROKER_URL"]
    # kombu's SQLAlchemy transport hands every transport option to create_engine(), and has no
    # visibility timeout to set: a fetched message is marked invisible and never redelivered.
    transport_options = (
        {}
        if broker_url.startswith("sqla+")
        else {"visibility_timeout": VISIBILITY_TIMEOUT_S, "socket_connect_timeout": BROKER_CONNECT_TIMEOUT_S}
    )
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=broker_url,
        # Celery lets the CELERY_BROKER_URL environment variable beat broker_url; the read and write
        # URLs are looked up before it, so the app's own configuration is what counts.
        broker_read_url=broker_url,
        broker_write_url=broker_url,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        beat_schedule_filename=f"{app.config['INSTANCE_PATH']}/celerybeat-schedule",
        beat_schedule=beat_schedule(
            float(app.config["LABTRACK_OUTBOX_SWEEP_SECONDS"]),
            float(app.config.get("LABTRACK_CHECKPOINT_SECONDS", 600)),
        ),
        task_default_queue=app.config["LABTRACK_TASK_QUEUE"],
        broker_connection_timeout=BROKER_CONNECT_TIMEOUT_S,
        timezone="UTC",
        enable_utc=True,
    )
    celery.set_default()
    app.extensions["celery"] = celery
    app.extensions["labtrack.db"].session_info[outbox.DISPATCH] = partial(_send_dispatch, celery)
    return celery
