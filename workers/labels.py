"""Celery task sending a label to the thermal printer (R-ZPL-1); a thin adapter over ``jobs.print_label``."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from labtrack import jobs
from labtrack.services import labels


@shared_task(name=labels.TASK_PRINT_LABEL)
def print_label(job_id: int) -> str:
    """Send one print job; its outcome (printed or failed, with the reason) is on the job and in the log."""
    return jobs.print_label(current_app.extensions["labtrack.db"], job_id, labels.LabelSettings.of(current_app.config))
