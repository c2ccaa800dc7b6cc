"""Metrics and logs of a real deployment (R-OPS-2, R-OPS-3): gunicorn with two workers and a Celery
worker sharing one metrics directory, a clinic's webhook receiver, and a journey through HTTP from
sign-in to a signed release announced by webhook.

The scrape is parsed with prometheus_client's own parser; the request counts must add up over
both web workers (each served part of the journey). Every log line the server and the worker wrote
is JSON with the request id where there is one; the release request's own id comes back, is stored
on its outbox row and is in the worker's line for the webhook that announced it; and no line holds a
password, a bearer token, the webhook secret or the app's secret key.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from labtrack.extensions import TASK_CUSTODY_WATCH
from tests.faults.conftest import HttpClient, gunicorn  # noqa: F401  (a fixture)
from tests.helpers import PASSWORD, Lab, signature
from tests.workers.conftest import set_webhook
from tests.workers.support import SECRET, wait_until

RELEASE_REQUEST_ID = "journey-release-0001"


@pytest.fixture
def app(worker_app):
    """The app a real worker serves (tests/fixtures.py)."""
    return worker_app


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One directory for the web and the Celery workers, as ``dev.py run`` sets it up (before they start)."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    return directory


def scrape(base: str) -> dict[str, list]:
    """Every sample of a scrape, by family name."""
    text = HttpClient(base).get("/metrics").text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict[str, list], name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in families.values()
        for sample in family
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def json_lines(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def test_r_ops_2_r_ops_3_metrics_add_up_over_workers_and_logs_are_json_without_secrets(
    metrics_dir: Path,
    lab: Lab,
    gunicorn: str,  # noqa: F811
    start_worker,
    receiver,
    tmp_path: Path,
):
    set_webhook(lab, "C1", receiver.url, SECRET)
    worker = start_worker(concurrency=1)
    http = HttpClient(gunicorn)
    http.session.headers["Connection"] = "close"  # a connection per request: both web workers serve the journey
    web = replace(lab, client=http, tokens={})  # signs in again, over HTTP

    din = web.awaiting_release()
    steps_sent = 4  # the harvest and PROCESS_ORDER["adipose"]
    refused = web.step(din, "digestion")  # done already
    assert refused.status_code == 409
    refusal_code = refused.get_json()["code"]
    released = web.post(
        "qa", f"/batches/{din}/release", {"signature": signature("approved")}, **{"X-Request-ID": RELEASE_REQUEST_ID}
    )
    assert released.status_code == 200, released.get_json()
    assert released.headers["X-Request-ID"] == RELEASE_REQUEST_ID
    made_up = web.get("qa", f"/batches/{din}")
    assert len(made_up.headers["X-Request-ID"]) == 32  # none sent: one made
    hostile = http.get("/healthz", headers={"X-Request-ID": "no spaces\tor tabs"})
    assert hostile.headers["X-Request-ID"] != "no spaces\tor tabs"
    assert web.ok(web.get("qa", "/audit/verify"), 200)["ok"] is True
    app_ = lab.app
    app_.extensions["celery"].send_task(TASK_CUSTODY_WATCH, args=["unexpected"])  # this task takes none: it fails

    row = lab.sql("SELECT id, request_id FROM outbox WHERE topic = 'batch.released'")
    assert [r.request_id for r in row] == [RELEASE_REQUEST_ID]
    assert receiver.wait_for([row[0].id], timeout=60)

    families = {}

    def worker_figures_in() -> bool:
        families.update(scrape(gunicorn))
        return (
            value(families, "labtrack_task_failures_total", task=TASK_CUSTODY_WATCH) >= 1
            and value(families, "labtrack_task_duration_seconds_count", task="labtrack.outbox.dispatch") >= 1
        )

    assert wait_until(worker_figures_in, 30)
    second = scrape(gunicorn)  # whichever worker answers, the same totals
    counted = {
        "steps": value(second, "labtrack_steps_total"),
        "step requests": value(
            second, "labtrack_http_request_duration_seconds_count", endpoint="batches.log_step", status="201"
        ),
    }
    assert counted == {"steps": steps_sent, "step requests": steps_sent}
    assert value(second, "labtrack_http_request_duration_seconds_count", endpoint="batches.log_step", status="409") == 1
    assert value(second, "labtrack_refusals_total", code=refusal_code, status="409") == 1
    assert value(second, "labtrack_releases_total", kind="conditional") == 1  # sterility culture pending
    assert value(second, "labtrack_audit_verification_ok") == 1
    assert value(second, "labtrack_batches", status="released") == 1
    assert value(second, "labtrack_deviations_open") == 0
    assert value(second, "labtrack_metrics_database_up") == 1
    assert "labtrack_outbox_backlog" in second
    assert "labtrack_outbox_oldest_age_seconds" in second
    assert "labtrack_checkpoint_age_seconds" in second
    assert value(second, "labtrack_task_failures_total", task=TASK_CUSTODY_WATCH) == 1

    # --- the logs ---
    server_log, worker_log = tmp_path / "gunicorn.log", worker.log_path
    server_lines = server_log.read_text().splitlines()
    assert all(line.startswith("{") for line in server_lines), [
        line for line in server_lines if not line.startswith("{")
    ][:5]
    server_records = [json.loads(line) for line in server_lines]
    access = [r for r in server_records if r["logger"] == "labtrack.access"]
    assert {"time", "level", "logger", "message", "request_id"} <= set(access[0])
    steps = [r for r in access if r.get("path", "").endswith("/steps") and r["status"] == 201]
    assert len(steps) == steps_sent
    assert len({r["process"] for r in access}) == 2, "both web workers served the journey"
    assert [(r["din"], r["username"]) for r in steps] == [(din, "clinic")] + [(din, "tech")] * 3
    (release_line,) = [r for r in access if r["request_id"] == RELEASE_REQUEST_ID]
    assert release_line["username"] == "qa"
    worker_records = json_lines(worker_log)
    delivered = [r for r in worker_records if r.get("request_id") == RELEASE_REQUEST_ID]
    assert delivered, "the worker's delivery line carries the request's id"
    assert any("delivered (webhook)" in r["message"] for r in delivered)
    assert all(r.get("din") == din for r in delivered)

    secrets = {PASSWORD, SECRET, lab.app.config["SECRET_KEY"], *web.tokens.values(), *lab.tokens.values()}
    for path in (server_log, worker_log):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            leaked = [secret for secret in secrets if secret in line]
            assert leaked == [], f"{path.name} line {number} holds a secret"
