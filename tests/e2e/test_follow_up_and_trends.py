"""Browser tests: the clinic's visit form and QA's trends page (R-OUT-2, R-SPC-3), at phone, tablet and
desktop widths, with no sideways scrolling and nothing refused by the Content-Security-Policy."""

from __future__ import annotations

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.test_content_security_policy import violations, watch
from tests.outcome_support import administered, released

WIDTHS = (390, 1024, 1440)
NO_SIDEWAYS = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def at_widths(person, label: str) -> None:
    for width in WIDTHS:
        person.page.set_viewport_size({"width": width, "height": 900})
        assert person.page.evaluate(NO_SIDEWAYS), f"{label} scrolls sideways at {width} px"
        person.snap(f"{label}-{width}")


def test_r_out_2_the_clinic_records_a_visit_with_a_photo_on_the_form(people, lab, tmp_path):
    din = administered(lab, "MRN-1")
    picture = tmp_path / "scalp.jpg"
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    Image.new("RGB", (320, 240), (170, 120, 95)).save(picture, "JPEG", exif=exif.tobytes())
    clinic = people("clinic", sign_in=False)
    refused = watch(clinic.page)
    clinic.sign_in()
    clinic.goto("/clinic/follow-ups", "follow-ups")
    at_widths(clinic, "follow-ups")
    clinic.page.get_by_role("link", name="Record this visit").first.click()
    expect(clinic.page.get_by_role("heading", name="Baseline (before the harvest)")).to_be_visible()
    at_widths(clinic, "visit-form")
    clinic.page.set_viewport_size({"width": 390, "height": 900})
    clinic.page.get_by_label("Hair density").fill("612")  # beyond the scale: refused beside the field
    clinic.page.get_by_label("Patient's global assessment").select_option("1")
    clinic.page.get_by_label("Investigator's global assessment").select_option("0")
    clinic.submit(clinic.page.get_by_role("button", name="Record the visit"), "visit-refused")
    expect(clinic.page.locator(".field-error").first).to_contain_text("500")
    expect(clinic.page.get_by_label("Patient's global assessment")).to_have_value("1")  # kept after the refusal
    clinic.page.get_by_label("Hair density").fill("118.5")
    clinic.page.get_by_label("Adverse reaction since the last visit?").select_option("yes")
    clinic.page.locator("input[type=file][name=photos]").set_input_files(str(picture))
    clinic.submit(clinic.page.get_by_role("button", name="Record the visit"), "visit-recorded")
    expect(clinic.page.locator(".alert.success")).to_contain_text("adverse reaction")
    # R-ADV-1: the flag opens the reaction report on this very batch
    expect(clinic.page.get_by_role("heading", name="Report an adverse reaction")).to_be_visible()
    assert clinic.page.url.endswith(f"/batches/{din}/adverse-reaction")
    at_widths(clinic, "reaction-offered")
    clinic.goto(f"/batches/{din}", "card-with-follow-ups")
    panel = clinic.page.locator("[data-panel=follow-ups]")
    expect(panel.locator("[data-visit=baseline]")).to_contain_text("118.5 hairs/cm²")
    expect(panel.locator("[data-visit=baseline] img")).to_have_count(1)
    assert clinic.page.evaluate("document.querySelector('[data-panel=follow-ups] img').naturalWidth") == 320
    at_widths(clinic, "card")
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    recorded = events[-1]
    assert recorded["type"] == "follow_up_recorded"
    assert recorded["data"]["adverse_reaction"] is True
    assert recorded["data"]["photos"][0]["sha256"] == events[-2]["data"]["sha256"]
    stored = lab.client.get(
        f"/api/v1/batches/{din}/attachments/{recorded['data']['photos'][0]['id']}", headers=lab.headers("qa")
    ).data
    assert b"PhoneMaker" not in stored
    assert violations(clinic.page) == []
    assert refused == []


@pytest.fixture
def trending(lab):
    """21 released adipose batches whose last viability is far below the others: one Nelson flag."""
    values = [88, 89, 87, 90, 88, 86, 89, 88, 87, 91, 88, 89, 86, 88, 90, 87, 89, 88, 87, 89, 71]
    return [released(lab, f"MRN-{i}", {"viability_pct": v}) for i, v in enumerate(values)]


def test_r_spc_3_qa_sees_the_charts_as_images_without_scripts_under_the_policy(people, lab, trending):
    qa = people("qa", sign_in=False)
    refused = watch(qa.page)
    qa.sign_in()
    qa.goto("/qa/trends", "trends")
    chart = qa.page.locator("[data-chart='adipose/viability_pct']")
    expect(chart).to_contain_text("1 flagged")
    expect(chart.locator("table")).to_contain_text("rule 1: a point beyond 3 σ")
    images = qa.page.locator("[data-chart='adipose/viability_pct'] img")
    expect(images).to_have_count(2)
    for index in range(2):
        images.nth(index).scroll_into_view_if_needed()
        qa.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=images.nth(index).element_handle())
    assert qa.page.locator("script[src*='//']").count() == 0
    at_widths(qa, "trends")
    svg = lab.client.get("/qa/trends/adipose/viability_pct.svg")  # signed out: not served
    assert svg.status_code == 302
    answer = qa.page.request.get("/qa/trends/adipose/viability_pct.svg")
    assert answer.headers["content-type"].startswith("image/svg+xml")
    source = answer.text()
    assert "<script" not in source
    assert "http" not in source.replace("http://www.w3.org/", "")  # namespaces only: nothing fetched
    assert "url(" not in source
    qa.goto("/outcomes", "outcomes")
    at_widths(qa, "outcomes")
    assert violations(qa.page) == []
    assert refused == []
