"""Operations (R-OPS-1..3): health and readiness, metrics, request ids and the access log.

``init_app`` installs, for every request: its ``X-Request-ID`` (the client's when valid,
else a new one; answered on the response; stored on the outbox rows the request
writes), the log context (request id, user, DIN), one JSON access line, and the
request's duration in ``labtrack_http_request_duration_seconds``. Their cost is a few tens
of microseconds per request: two clock reads, a histogram observation (a memory-mapped
write in multiprocess mode) and one log record, made and formatted by a short path
(``logs.log_access``) and not at all when the access logger's level is off.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, abort, current_app, g, json, jsonify, request

from labtrack.ops import health, logs, metrics
from labtrack.problems import PROBLEM_JSON

bp = Blueprint("ops", __name__)
log = logging.getLogger(logs.ACCESS_LOGGER)
REQUEST_ID_HEADER = "X-Request-ID"
QUIET_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz", "ops.metrics_view"})  # probes: logged at DEBUG only
FULL_VERIFICATION_ENDPOINT = "audit.verify"
_TOKENS = "labtrack_log_context"


def init_app(app: Flask) -> None:
    app.config.setdefault("LABTRACK_METRICS_ALLOW", metrics.DEFAULT_ALLOW)
    app.extensions["labtrack.metrics_allow"] = metrics.allowed_networks(app.config["LABTRACK_METRICS_ALLOW"])
    metrics.count_committed_events()
    app.register_blueprint(bp)
    # First among the before_request functions: the id and the clock cover authentication too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
    app.teardown_request(_end_context)


def _start() -> None:
    g.started = time.perf_counter()
    g.request_id = logs.request_id_from(request.headers.get(REQUEST_ID_HEADER))
    din = request.view_args.get("din") if request.view_args else None
    g.setdefault(_TOKENS, [])
    g.get(_TOKENS).extend(
        (variable, variable.set(value)) for variable, value in ((logs.REQUEST_ID, g.request_id), (logs.DIN, din))
    )


def _finish(response: Response) -> Response:
    started = g.get("started")
    if started is None:  # the request failed before _start (a routing error raised earlier)
        return response
    elapsed = time.perf_counter() - started
    response.headers[REQUEST_ID_HEADER] = g.request_id
    endpoint = request.endpoint or "unrouted"
    status = response.status_code
    metrics.REQUESTS.labels(endpoint, request.method, str(status)).observe(elapsed)
    if response.mimetype == PROBLEM_JSON and not response.is_streamed:
        metrics.REFUSALS.labels((response.get_json(silent=True) or {}).get("code", "unknown"), str(status)).inc()
    if endpoint == FULL_VERIFICATION_ENDPOINT and status == 200 and not request.args.get("din"):
        metrics.verification_finished(bool((response.get_json(silent=True) or {}).get("ok")))
    level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
    if log.isEnabledFor(level):
        logs.log_access(log, level, request.method, request.path, status, elapsed)
    return response


def _end_context(_error: BaseException | None = None) -> None:
    for variable, token in reversed(g.pop(_TOKENS, [])):
        variable.reset(token)


@bp.get("/healthz")
def healthz():
    """The process answers (R-OPS-1); nothing else is asked."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """200 when the database and the broker answer within a second, else 503 naming which did not."""
    extensions = current_app.extensions
    checks = health.readiness(extensions["labtrack.db"], extensions["celery"], current_app.config["CELERY_BROKER_URL"])
    ready = all(check.ok for check in checks)
    body = {"status": "ready" if ready else "unavailable", "checks": {c.name: c.as_dict() for c in checks}}
    if not ready:
        down = [check.name for check in checks if not check.ok]
        body["down"] = down
        for check in checks:
            if not check.ok:
                logging.getLogger(__name__).warning("not ready: %s: %s", check.name, check.detail)
    return Response(json.dumps(body), status=200 if ready else 503, mimetype="application/json")


@bp.get("/metrics")
def metrics_view():
    """Prometheus text format, for the addresses in ``LABTRACK_METRICS_ALLOW`` only (R-OPS-2)."""
    if not metrics.may_scrape(request.remote_addr, current_app.extensions["labtrack.metrics_allow"]):
        abort(403, description="Metrics are served to the monitoring addresses only (LABTRACK_METRICS_ALLOW).")
    return Response(metrics.exposition(current_app.extensions["labtrack.db"]), mimetype=metrics.CONTENT_TYPE)
