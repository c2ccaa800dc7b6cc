"""R-TMP-1 in the browser: a technician imports a logger file on the card, with the keyboard, and sees the curve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect


def test_r_tmp_1_logger_file_imported_on_the_card_shows_the_excursion_and_the_curve(people, lab, tmp_path):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    handed = datetime.now(UTC) - timedelta(minutes=8)
    lab.ok(lab.handoff(din, occurred_at=handed.isoformat()))
    lab.ok(lab.receive(din))
    start = handed - timedelta(minutes=4)
    values = [5.2, 5.4, 5.1, 26.5, 27.8, 6.0, 5.6, 5.5]
    lines = ["Logger;EL-USB-2", "No.;Date/Time;Temperature (°C)"] + [
        f"{i + 1};{(start + timedelta(minutes=2 * i)).strftime('%d.%m.%Y %H:%M:%S')};{str(v).replace('.', ',')}"
        for i, v in enumerate(values)
    ]
    logger = tmp_path / "box-7.csv"
    logger.write_text("\n".join(lines) + "\n", encoding="utf-8")

    tech = people("tech")
    tech.goto(f"/batches/{din}", "card-received")
    page = tech.page
    page.get_by_text("Import a temperature-logger file").click()
    form = tech.form("temperatures")
    form.get_by_label("Logger file (CSV: time and °C)").set_input_files(str(logger))
    form.get_by_label("Time zone of the file's times").fill("UTC")
    tech.snap("upload-filled")
    tech.submit(form.get_by_role("button", name="Import"), "imported")
    expect(page.locator(".alert.error").first).to_contain_text("temperature excursion deviation was opened")
    section = page.locator("[data-role=temperatures]")
    expect(section.locator("svg.temperature-curve")).to_be_visible()
    expect(section).to_contain_text("27.8 °C")
    expect(section.locator(".bad")).to_contain_text("4 min")
    for width in (390, 1024, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        tech.snap(f"imported-{width}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
