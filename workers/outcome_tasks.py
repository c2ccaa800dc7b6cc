"""Celery tasks for follow-up and trends (R-OUT-4, R-SPC-2): thin adapters over their watchers."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from labtrack.extensions import TASK_FOLLOWUP_WATCH, TASK_TREND_WATCH
from labtrack.services import followup_watch, trends


@shared_task(name=TASK_FOLLOWUP_WATCH)
def follow_up_watch() -> dict[str, list[str]]:
    outcome = followup_watch.followup_watch(current_app.extensions["labtrack.db"])
    return {"reminded": outcome.reminded, "missed": outcome.missed}


@shared_task(name=TASK_TREND_WATCH)
def trend_watch() -> list[str]:
    return trends.trend_watch(current_app.extensions["labtrack.db"])
