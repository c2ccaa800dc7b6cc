"""Extension objects, created unbound and bound to an app in ``create_app``."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask
from flask_smorest import Api

api = Api()

# Longer than any task may run, so the broker never hands a running task to a second worker.
VISIBILITY_TIMEOUT_S = 3 * 3600


def celery_init_app(app: Flask) -> Celery:
    """Flask's Celery pattern: tasks run inside the app context; settings from the spec (§6)."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    broker_url = app.config["CELERY_BROKER_URL"]
    # kombu's SQLAlchemy transport hands every transport option to create_engine(), and has no
    # visibility timeout to set: a fetched message is marked invisible and never redelivered.
    transport_options = {} if broker_url.startswith("sqla+") else {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=broker_url,
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
        timezone="UTC",
        enable_utc=True,
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
