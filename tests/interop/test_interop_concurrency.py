"""Racing on PostgreSQL: one logger file per leg however many uploads race, one send per print job."""

from __future__ import annotations

import io
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from labtrack import jobs
from labtrack.services import labels
from tests.helpers import Lab
from tests.interop.printer import Printer
from tests.workers.support import wait_until

pytestmark = pytest.mark.postgres


def _race(count: int, work) -> list:
    barrier = threading.Barrier(count)

    def run(index: int):
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_r_tmp_1_racing_uploads_of_one_leg_store_one_log_and_one_event(app, lab: Lab):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    handed = datetime.now(UTC) - timedelta(minutes=8)
    lab.ok(lab.handoff(din, occurred_at=handed.isoformat()))
    lab.ok(lab.receive(din))
    rows = ["time,temperature"] + [
        f"{(handed - timedelta(minutes=10) + timedelta(minutes=2 * i)).isoformat()},{5 + i % 3}" for i in range(12)
    ]
    files = [("\n".join(rows) + "\n" + "\n" * i).encode() for i in range(6)]  # six different files for one leg
    users = ["tech", "tech2", "qa", "clinic", "tech", "qa"]
    headers = [lab.headers(user) for user in users]

    def upload(index: int) -> int:
        return (
            app.test_client()
            .post(
                f"/api/v1/batches/{din}/custody/legs/1/temperatures",
                data={"file": (io.BytesIO(files[index]), "log.csv"), "timezone": "UTC"},
                headers=headers[index],
                content_type="multipart/form-data",
            )
            .status_code
        )

    assert Counter(_race(6, upload)) == {201: 1, 409: 5}
    assert lab.sql("SELECT count(*) FROM temperature_logs")[0][0] == 1
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert [e["type"] for e in events].count("temperature_log") == 1
    assert lab.ok(lab.get("qa", "/audit/verify"), 200)["ok"] is True


def test_r_zpl_1_a_print_job_delivered_to_two_workers_at_once_is_sent_once(app, lab: Lab):
    printer = Printer()
    try:
        app.config["LABTRACK_LABEL_PRINTER"] = printer.address
        din = lab.batch()
        job = lab.ok(lab.post("clinic", f"/batches/{din}/label/print", {"kind": "collection"}), 202)
        settings = labels.LabelSettings.of(app.config)
        outcomes = _race(4, lambda _i: jobs.print_label(lab.db, job["id"], settings))
        assert outcomes.count("printed") == 1
        assert wait_until(lambda: printer.received, 5)
        assert len(printer.received) == 1
        events = lab.ok(lab.get("clinic", f"/batches/{din}/events"), 200)
        assert [e["type"] for e in events].count("label_printed") == 1
    finally:
        printer.close()
