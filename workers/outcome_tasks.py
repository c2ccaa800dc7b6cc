"""Celery tasks for follow-up, outcomes and trends (R-OUT-4, R-OUT-5, R-SPC-2): thin adapters over jobs and services."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from labtrack import jobs
from labtrack.extensions import TASK_FOLLOWUP_WATCH, TASK_OUTCOME_STATISTICS, TASK_TREND_WATCH


@shared_task(name=TASK_FOLLOWUP_WATCH)
def follow_up_watch() -> dict[str, list[str]]:
    outcome = jobs.followup_watch(current_app.extensions["labtrack.db"])
    return {"reminded": outcome.reminded, "missed": outcome.missed}


@shared_task(name=TASK_TREND_WATCH)
def trend_watch() -> list[str]:
    return jobs.trend_watch(current_app.extensions["labtrack.db"])


@shared_task(name=TASK_OUTCOME_STATISTICS)
def outcome_statistics(inputs: list[dict]) -> list[str]:
    """Compute and store the statistics of each cohort's inputs (scipy is loaded here, in the worker only)."""
    return jobs.outcome_statistics(current_app.extensions["labtrack.db"], inputs)
