"""Liveness, readiness and who may scrape the metrics (R-OPS-1, R-OPS-2), against real outages:
a broker address nothing listens on, and the session's private PostgreSQL cluster stopped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config import Config
from labtrack import create_app
from tests.conftest import make_app
from tests.faults.conftest import PrivateCluster, private_cluster, private_database  # noqa: F401
from tests.workers.support import free_port, wait_until


def ready(app) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    return response.status_code, response.get_json(), time.monotonic() - started


def test_r_ops_1_healthz_answers_and_readyz_is_ready_when_both_answer(app):
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok"}
    status, body, _ = ready(app)
    assert status == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True


def test_r_ops_1_a_broker_nobody_listens_on_makes_readyz_503_naming_the_broker(database_url: str, tmp_path: Path):
    app = create_app(
        Config.from_env(
            instance_path=tmp_path / "instance",
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
            SECRET_KEY="test-secret",
            TESTING=True,
        )
    )
    try:
        status, body, took = ready(app)
        assert status == 503
        assert body["down"] == ["broker"]
        assert body["checks"]["database"]["ok"] is True
        assert "Connection" in body["checks"]["broker"]["detail"]
        assert took < 1.5
        assert app.test_client().get("/healthz").status_code == 200  # liveness asks nobody
    finally:
        app.extensions["labtrack.db"].dispose()


def test_r_ops_1_a_database_that_does_not_answer_is_named_within_a_second(tmp_path: Path):
    # 10.255.255.1 is routed nowhere: the connection neither succeeds nor fails, it hangs
    app = make_app("postgresql://labtrack@10.255.255.1:5432/labtrack", tmp_path)
    try:
        status, body, took = ready(app)
        assert status == 503
        assert "database" in body["down"]
        assert took < 1.5
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        app.extensions["labtrack.db"].dispose()


@pytest.mark.postgres
def test_r_ops_1_a_stopped_database_makes_readyz_503_until_it_is_back(
    private_cluster: PrivateCluster,  # noqa: F811
    private_database: str,  # noqa: F811
    tmp_path: Path,
):
    app = make_app(private_database, tmp_path)
    try:
        assert ready(app)[0] == 200
        private_cluster.stop()
        try:
            status, body, took = ready(app)
            assert status == 503
            assert body["down"] == ["database"]
            assert body["checks"]["broker"]["ok"] is True
            assert took < 1.5
            assert app.test_client().get("/healthz").status_code == 200
        finally:
            private_cluster.start()
        assert wait_until(lambda: ready(app)[0] == 200, 10)  # back without restarting the app
    finally:
        app.extensions["labtrack.db"].dispose()


def test_r_ops_2_metrics_answer_only_the_allowed_addresses(app, database_url: str, tmp_path: Path):
    loopback = app.test_client().get("/metrics")
    assert loopback.status_code == 200
    assert loopback.mimetype == "text/plain"
    assert app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    monitoring = make_app(database_url, tmp_path / "monitoring", LABTRACK_METRICS_ALLOW="10.0.0.0/8, 192.0.2.7")
    try:
        client = monitoring.test_client()
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 403
        assert client.get("/metrics").status_code == 403  # loopback is no longer in the list
    finally:
        monitoring.extensions["labtrack.db"].dispose()
