"""Celery entry point: ``celery -A workers worker --beat`` (embedded) or separate worker/beat.

The Flask app is created here, in the worker process, not at import of the
services; tasks are defined with ``@shared_task`` and take ids, never ORM objects.
"""

from labtrack import create_app
from labtrack.ops import worker

worker.install()  # before the worker sets up logging: JSON lines, task metrics (labtrack/ops/worker.py)
flask_app = create_app()
celery_app = flask_app.extensions["celery"]

from workers import investigations, labels, outcome_tasks, tasks  # noqa: E402, F401  (registers the tasks with celery_app)
