"""gunicorn settings for ``gunicorn -c gunicorn.conf.py wsgi:app`` (``python3 dev.py run`` uses it too).

Loopback on ``$PORT`` (default 8000) so a demo is not exposed to the network by
accident; a production host overrides with ``--bind`` (command-line options win
over this file). Each worker builds its own app and database engine: no
``preload_app``, since connections must never be shared across a fork.
"""

import os
import shutil
import tempfile

# Metrics (labtrack/ops/metrics.py): prometheus_client's multiprocess mode, set before any worker imports
# it. Each worker writes its figures to files here and a scrape of any worker adds them all up. A
# directory given by the environment (``dev.py run`` shares one with the Celery worker) is its
# owner's to clean; one made here is emptied of a dead worker's live gauges and removed at exit.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="labtrack-metrics-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Argon2 sign-ins and SQLite writers queued on the busy timeout can take seconds; not minutes.
timeout = 60
graceful_timeout = 20
# No gunicorn access log: the app writes one JSON line per request, with its request id and user
# (labtrack/ops); gunicorn's own lines are JSON too.
accesslog = None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "labtrack.ops.logs.Formatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
# The heartbeat file lives in memory where possible: a slow disk must not get workers killed.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
# gunicorn's runtime control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which a
# second server on the same host would take over; nothing here uses gunicornc, so there is none.
control_socket_disable = True


def child_exit(_server, worker) -> None:
    """A worker gone (restarted, killed): its live gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(_server) -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
