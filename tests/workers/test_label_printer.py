"""R-ZPL-1: a label sent to a thermal printer by a real worker over raw TCP; a local listener is the printer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import PASSWORD, Lab
from tests.interop import zpl
from tests.interop.printer import Printer
from tests.web.support import csrf_token
from tests.workers.support import free_port, wait_until


@pytest.fixture
def printer() -> Iterator[Printer]:
    running = Printer()
    yield running
    running.close()


def _job(lab: Lab, din: str, job_id: int, user: str = "clinic") -> dict:
    return lab.ok(lab.get(user, f"/batches/{din}/label/prints/{job_id}"), 200)


def _printed_events(lab: Lab, din: str) -> list[dict]:
    return [e for e in lab.ok(lab.get("clinic", f"/batches/{din}/events"), 200) if e["type"] == "label_printed"]


def test_r_zpl_1_a_worker_sends_the_label_and_records_the_print_once_the_printer_took_it(
    app, client, start_worker, printer
):
    lab = Lab.build(app, client)
    app.config["LABTRACK_LABEL_PRINTER"] = printer.address
    din = lab.batch("adipose")
    start_worker(beat=False)
    job = lab.ok(lab.post("clinic", f"/batches/{din}/label/print", {"kind": "collection"}), 202)
    assert job["status"] == "queued"
    assert job["printer"] == printer.address
    done = wait_until(lambda: _job(lab, din, job["id"])["status"] in ("printed", "failed"), 30)
    assert done, "the worker did not finish the job"
    finished = _job(lab, din, job["id"])
    assert finished["status"] == "printed", finished
    assert wait_until(lambda: printer.received, 5)
    (received,) = printer.received
    label = zpl.parse(received.decode("ascii"))
    assert label.symbol("BC").data == f"={din}00"
    assert label.symbol("BX").commands["BX"].split(",")[2] == "200"
    assert "FOR AUTOLOGOUS USE ONLY" in label.texts()
    (event,) = _printed_events(lab, din)
    assert event["seq"] == finished["event_seq"]
    assert event["data"] == {"kind": "collection", "format": "zpl", "printer": printer.address, "job": job["id"]}
    assert event["actor"]["username"] == "clinic"


def test_r_zpl_1_a_printer_that_does_not_answer_fails_the_job_clearly_and_records_no_print(
    app, client, start_worker, tmp_path
):
    lab = Lab.build(app, client)
    silent = f"127.0.0.1:{free_port()}"  # nothing listens there
    app.config["LABTRACK_LABEL_PRINTER"] = silent
    din = lab.batch("adipose")
    worker = start_worker(beat=False)
    job = lab.ok(lab.post("clinic", f"/batches/{din}/label/print", {"kind": "collection"}), 202)
    assert wait_until(lambda: _job(lab, din, job["id"])["status"] == "failed", 30)
    failed = _job(lab, din, job["id"])
    assert "refused the connection" in failed["error"]
    assert silent in failed["error"]
    assert failed["event_seq"] is None
    assert _printed_events(lab, din) == []
    assert wait_until(lambda: f"label print {job['id']} failed" in worker.log_path.read_text(), 10)


def test_r_zpl_1_the_card_sends_the_label_and_says_it_was_printed(app, client, start_worker, printer):
    lab = Lab.build(app, client)
    app.config["LABTRACK_LABEL_PRINTER"] = printer.address
    din = lab.batch("adipose")
    start_worker(beat=False)
    browser = app.test_client()
    token = csrf_token(browser.get("/login").text)
    browser.post("/login", data={"username": "clinic", "password": PASSWORD, "csrf_token": token})
    card = browser.get(f"/batches/{din}").text
    response = browser.post(
        f"/batches/{din}",
        data={"action": "print_label", "form_id": "print_label", "kind": "collection", "csrf_token": csrf_token(card)},
    )
    assert response.status_code == 303
    page = browser.get(f"/batches/{din}").text
    assert f"The collection label was sent to the printer at {printer.address} and recorded." in page
    assert 'class="alert success"' in page
    assert wait_until(lambda: printer.received, 5)
    assert len(printer.received) == 1
    assert len(_printed_events(lab, din)) == 1
