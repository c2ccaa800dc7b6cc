"""gunicorn settings for ``gunicorn -c gunicorn.conf.py wsgi:app`` (``python3 dev.py run`` uses it too).

Loopback on ``$PORT`` (default 8000) so a demo is not exposed to the network by
accident; a production host overrides with ``--bind`` (command-line options win
over this file). Each worker builds its own app and database engine: no
``preload_app``, since connections must never be shared across a fork.
"""

import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Argon2 sign-ins and SQLite writers queued on the busy timeout can take seconds; not minutes.
timeout = 60
graceful_timeout = 20
accesslog = "-"
# The heartbeat file lives in memory where possible: a slow disk must not get workers killed.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
# gunicorn's runtime control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl), which a
# second server on the same host would take over; nothing here uses gunicornc, so there is none.
control_socket_disable = True
