"""R-SCL-5: two web servers, two workers and one beat on the same PostgreSQL and Redis. Writes through both
servers keep the chain gapless, each notification reaches each recipient once, one checkpoint per interval."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import pytest
import requests

from tests.workers.support import ROOT, free_port, wait_until, worker_env

pytestmark = pytest.mark.postgres

CHECKPOINT_SECONDS = 3
WRITES = 48


@contextmanager
def web_server(app, log_path) -> Iterator[str]:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a port of its own, serving the test's configuration."""
    port = free_port()
    reaper = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*reaper, sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
            cwd=ROOT, env=worker_env(app, PORT=str(port)), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def answering() -> bool:
            try:
                return requests.get(base + "/login", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        try:
            assert wait_until(answering, 60), log_path.read_text()[-3000:]
            yield base
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()


def test_r_scl_5_two_servers_two_workers_one_beat(app, lab, start_worker, tmp_path, monkeypatch):
    din = lab.at_lab()
    headers = {name: lab.headers(name) for name in ("tech", "qa")}
    monkeypatch.setenv("LABTRACK_CHECKPOINT_SECONDS", str(CHECKPOINT_SECONDS))
    with ExitStack() as stack:
        servers = [stack.enter_context(web_server(app, tmp_path / f"web-{i}.log")) for i in range(2)]
        started = time.monotonic()
        start_worker(beat=True)  # the one beat, inside the first worker
        start_worker(beat=False)

        def deviation(number: int) -> int:
            response = requests.post(
                f"{servers[number % 2]}/api/v1/batches/{din}/deviations",
                json={"description": f"write {number} through server {number % 2}"},
                headers=headers["tech" if number % 3 else "qa"],
                timeout=60,
            )
            return response.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(deviation, range(WRITES)))
        assert statuses == [201] * WRITES

        # the chain: gapless, and it verifies
        seqs = [row[0] for row in lab.sql("SELECT e.seq FROM batch_events e JOIN batches b ON b.id = e.batch_id "
                                          "WHERE b.din = :din ORDER BY e.seq", din=din)]  # fmt: skip
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) == 4 + WRITES
        report = requests.get(
            f"{servers[1]}/api/v1/audit/verify", params={"din": din}, headers=headers["qa"], timeout=60
        )
        assert report.json()["ok"] is True, report.json()

        # each notification reaches each recipient once, however many workers took the rows
        opened = "SELECT count(*) FROM outbox WHERE topic = 'deviation.opened'"
        assert lab.sql(opened)[0][0] == WRITES
        assert wait_until(lambda: lab.sql(opened + " AND notified_at IS NULL")[0][0] == 0, 60)
        per_recipient = lab.sql(
            "SELECT n.outbox_id, n.user_id, count(*) FROM notifications n JOIN outbox o ON o.id = n.outbox_id "
            "WHERE o.topic = 'deviation.opened' GROUP BY n.outbox_id, n.user_id"
        )
        assert {row[2] for row in per_recipient} == {1}
        recipients = {row[1] for row in per_recipient}
        assert len(per_recipient) == WRITES * len(recipients)

        # one checkpoint per interval from the one beat, not one per worker
        wait_until(lambda: time.monotonic() - started > 4 * CHECKPOINT_SECONDS, 60)
        times = [row[0] for row in lab.sql("SELECT created_at FROM checkpoints ORDER BY id")]
    elapsed = time.monotonic() - started
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert 2 <= len(times) <= elapsed / CHECKPOINT_SECONDS + 1, (len(times), elapsed, gaps)
    assert min(gaps) > CHECKPOINT_SECONDS * 0.6, gaps
