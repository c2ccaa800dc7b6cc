"""Redis stopped: reads, pages and notifications are still served, without waiting on the broker.

Writes during the outage (201, and every notification delivered once Redis is back) are covered by
tests/workers/test_outbox_delivery.py::TestRedisOutage; this adds what a user reading sees meanwhile.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from tests.faults.conftest import cannot_run
from tests.workers.support import PrivateRedis

READ_BUDGET_S = 2.0


@pytest.fixture
def redis(tmp_path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        cannot_run("redis-server is not installed: no private Redis to stop")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker_url(redis: PrivateRedis) -> str:
    return redis.url


def test_with_redis_stopped_the_api_and_the_pages_keep_serving_reads(lab, redis, sign_in):
    din = lab.at_lab()
    lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "before the outage"}))
    qa = sign_in("qa")
    lab.headers("qa"), lab.headers("clinic")
    reads = [
        lambda: lab.get("qa", f"/batches/{din}"),
        lambda: lab.get("qa", f"/batches/{din}/events"),
        lambda: lab.get("clinic", f"/batches/{din}/readiness"),
        lambda: lab.get("qa", "/batches"),
        lambda: lab.get("qa", "/deviations", din=din),
        lambda: lab.get("clinic", "/notifications"),
        lambda: lab.get("qa", "/audit/verify"),
        lambda: qa.get(f"/batches/{din}"),
        lambda: qa.get("/qa"),
    ]
    for read in reads:  # once with Redis up: a first render's cost (compiling its templates) is not a wait
        assert read().status_code == 200
    redis.stop()

    for read in reads:
        started = time.monotonic()
        response = read()
        took = time.monotonic() - started
        assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:300])
        assert took < READ_BUDGET_S, f"a read took {took:.1f} s with Redis down"
    # the deviation recorded before the outage, as the page words a description: a sentence (API: as typed)
    assert "Before the outage" in qa.get(f"/batches/{din}").text
    assert lab.ok(lab.get("qa", "/deviations", din=din), 200)["items"][0]["description"] == "before the outage"
