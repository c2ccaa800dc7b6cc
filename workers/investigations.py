"""Investigation watchers (R-ADV-2, R-LBK-3): thin adapters over their jobs (``labtrack.jobs``).

Idempotent: each notice is decided and recorded under the row's lock in one unit of work,
so two workers (or a run overlapping the next) send it once.
"""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from labtrack import jobs
from labtrack.extensions import TASK_LOOKBACK_WATCH, TASK_REACTION_WATCH


@shared_task(name=TASK_REACTION_WATCH)
def reaction_due_watch() -> dict[str, list[int]]:
    database = current_app.extensions["labtrack.db"]
    told = jobs.reaction_due_watch(database, zone=current_app.config["LABTRACK_TIMEZONE"])
    return {"due_soon": told.due_soon, "overdue": told.overdue}


@shared_task(name=TASK_LOOKBACK_WATCH)
def lookback_watch() -> dict[str, list[list]]:
    told = jobs.lookback_watch(current_app.extensions["labtrack.db"])
    return {"reminded": [list(r) for r in told.reminded], "escalated": [list(e) for e in told.escalated]}
