"""The pages' side of R-TMP-1, R-ZPL-1 and R-EXP-1: logger upload and curve on the card and in the record,
labels sent to a printer with the outcome on the page, lists downloaded as CSV."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta

from pypdf import PdfReader

from labtrack import jobs as background
from labtrack.services import labels
from tests.web.support import error_beside
from tests.workers.support import free_port


def _received(lab) -> tuple[str, datetime]:
    din = lab.batch()
    lab.ok(lab.harvest(din))
    handed = datetime.now(UTC) - timedelta(minutes=8)
    lab.ok(lab.handoff(din, occurred_at=handed.isoformat()))
    lab.ok(lab.receive(din))
    return din, handed


def _logger_csv(start: datetime, values: list[float]) -> bytes:
    rows = ["Date/Time,Temperature (°C)"] + [
        f"{(start + timedelta(minutes=2 * i)).strftime('%Y-%m-%d %H:%M:%S')},{v}" for i, v in enumerate(values)
    ]
    return "\n".join(rows).encode()


def _upload(browser, din: str, content: bytes, timezone: str = "UTC"):
    return browser.submit(
        f"/batches/{din}",
        {"action": "temperatures", "form_id": "temperatures", "leg": "1", "timezone": timezone,
         "file": (io.BytesIO(content), "box-7.csv")},
        content_type="multipart/form-data",
    )  # fmt: skip


def test_r_tmp_1_logger_file_uploaded_on_the_card_shows_its_summary_and_curve(lab, sign_in):
    din, handed = _received(lab)
    tech = sign_in("tech")
    card = tech.get(f"/batches/{din}").text
    assert "Import a temperature-logger file" in card
    assert 'enctype="multipart/form-data"' in card
    response = _upload(tech, din, _logger_csv(handed - timedelta(minutes=4), [5, 5, 5, 27, 28, 5, 5, 5]))
    assert response.status_code == 303
    page = tech.get(f"/batches/{din}").text
    assert 'class="alert error"' in page  # the excursion is bad news: never in green
    assert "temperature excursion deviation was opened" in html.unescape(page)
    section = re.search(r'data-role="temperatures".*?</section>', page, re.S).group(0)
    assert "<svg" in section
    assert "<script" not in section
    assert '<span class="bad">4 min</span>' in section
    assert "28 °C" in section
    assert "Import a temperature-logger file" not in section  # the only leg has its file
    record = sign_in("qa").get(f"/batches/{din}/record").text
    assert 'data-role="temperatures"' in record
    assert "<svg" in record
    pdf = sign_in("qa").get(f"/batches/{din}/record.pdf").data
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert "Transport temperatures" in text
    assert "box-7.csv" in text
    assert "4 min" in text


def test_r_tmp_1_a_bad_file_on_the_card_is_refused_beside_the_field_naming_the_line(lab, sign_in):
    din, _handed = _received(lab)
    tech = sign_in("tech")
    response = _upload(tech, din, b"Date/Time,Temperature\n2026-12-01 10:00,5\n2026-12-01 10:02,hot\n")
    assert response.status_code == 422
    assert "line 3" in html.unescape(error_beside(response.text, "temperatures", "file")).lower()
    assert lab.sql("SELECT count(*) FROM temperature_logs")[0][0] == 0


def test_r_zpl_1_the_card_offers_the_printer_when_one_is_set_and_shows_a_failed_print_in_red(app, lab, sign_in):
    din = lab.batch()
    clinic = sign_in("clinic")
    assert "to the printer" not in clinic.get(f"/batches/{din}").text
    silent = f"127.0.0.1:{free_port()}"
    app.config["LABTRACK_LABEL_PRINTER"] = silent
    assert f"Send collection label to the printer ({silent})" in clinic.get(f"/batches/{din}").text
    job = lab.ok(lab.post("clinic", f"/batches/{din}/label/print", {"kind": "collection"}), 202)
    assert background.print_label(lab.db, job["id"], labels.LabelSettings.of(app.config)) == "failed"  # the task's work
    jobs = re.search(r'<ul class="print-jobs">.*?</ul>', clinic.get(f"/batches/{din}").text, re.S).group(0)
    assert '<span class="bad">not printed: the printer at' in jobs
    assert "refused the connection" in jobs


def test_r_exp_1_list_downloads_as_csv_from_the_pages_with_the_filters(lab, sign_in):
    registered = lab.batch()
    qa = sign_in("qa")
    response = qa.get("/exports/batches.csv", query_string={"status": "registered"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff"))))
    assert [r["DIN"] for r in rows] == [registered]
    released = qa.get("/exports/batches.csv", query_string={"status": "released"}).get_data(as_text=True)
    assert released.removeprefix("\ufeff").splitlines() == [
        "DIN,DIN as printed,Product,Tissue source,Status,Held,"
        "Clinic,Patient MRN,Registered (UTC),Expires (UTC),Released (UTC),Conditional release,Custodian,"
        "Specification version"
    ]  # the header only: no batch is released
    assert sign_in("clinic").get("/exports/deviations.csv").status_code == 403
    assert qa.get("/exports/nothing.csv").status_code == 404
    assert qa.get("/exports/batches.csv", query_string={"status": "bogus"}).status_code == 422
