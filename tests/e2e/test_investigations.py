"""Investigations in the browser (R-ADV-1, R-ADV-3, R-ADV-4, R-LBK-3): a clinic reports an infection, the
lookback it opens holds a sibling batch, the clinic acknowledges from its banner, QA closes both, signed.

Each page is photographed at a phone (390 px), a tablet (1024 px) and a desktop (1440 px) width, and
none of them may scroll sideways.
"""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from tests.investigation_support import Batches

WIDTHS = (390, 1024, 1440)


def at_every_width(person, label: str) -> None:
    """Photograph the page at each width; none may need sideways scrolling."""
    for width in WIDTHS:
        person.page.set_viewport_size({"width": width, "height": 900})
        person.snap(f"{label}-{width}px")
        overflow = person.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{label} scrolls sideways by {overflow} px at {width} px"
    person.page.set_viewport_size({"width": 1280, "height": 800})


def test_r_adv_1_r_adv_4_r_lbk_3_a_reported_infection_is_followed_back_acknowledged_and_closed(people, lab):
    made = Batches(lab)
    used = made.administered()
    sibling = made.processed()  # the same collagenase lot and equipment: the lookback holds it
    clinic = people("clinic")
    clinic.goto(f"/batches/{used}", "card-administered")
    clinic.page.get_by_role("link", name="Report an adverse reaction").click()
    clinic.snap("report-form")
    form = clinic.form("report")
    form.get_by_label("When it began").fill(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    form.get_by_label("Kind of reaction").select_option("infection")
    form.get_by_label("Outcome so far").select_option("recovering")
    form.get_by_label("Description").fill("Abscess at the vertex injection site; drained, cultures sent.")
    form.get_by_label("Needed medical or surgical intervention?").select_option("yes")
    at_every_width(clinic, "report-form-filled")
    clinic.submit(form.get_by_role("button", name="Report the reaction"), "reported")
    page = clinic.page
    expect(page.get_by_role("status").first).to_contain_text("reportable to the FDA")
    expect(page.locator("[data-section=investigations]")).to_contain_text("Adverse reaction 1")
    banner = page.locator("[data-role=lookback-banner]")
    expect(banner).to_contain_text("Lookback 1 names 1 of your batches")
    expect(banner).to_contain_text("(held)")
    at_every_width(clinic, "card-with-banner")

    clinic.goto(f"/batches/{sibling}", "sibling-held")
    expect(page.locator("[data-section=investigations]")).to_contain_text("held by a lookback deviation")
    banner.get_by_role("button", name="Acknowledge for your clinic").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")  # keyboard only
    clinic.snap("acknowledged")
    expect(page.get_by_role("status").first).to_contain_text("Lookback 1 acknowledged")
    expect(page.locator("[data-role=lookback-banner]")).to_have_count(0)

    qa = people("qa")
    qa.goto("/investigations", "investigations")
    reactions = qa.page.locator("[data-section=reactions]")
    expect(reactions).to_contain_text("reportable")
    expect(reactions.locator("[data-role=due]")).to_have_text("15 days left")
    lookback = qa.page.locator("[data-lookback='1']")
    expect(lookback).to_contain_text("acknowledged by Clara Clinic")
    at_every_width(qa, "investigations")
    qa.page.locator("[data-reaction='1']").get_by_role("button", name="Close…").click()
    dialog = qa.page.locator("dialog[open]")
    dialog.get_by_label("Conclusion").fill("Not related: skin flora; reported to the FDA.")
    dialog.get_by_label("Related to the product?").select_option("no")
    dialog.get_by_label("Reported to the FDA on").fill(datetime.now(UTC).date().isoformat())
    dialog.get_by_label("Your password").fill("correct-horse-battery")
    qa.snap("close-reaction-dialog")
    qa.submit(dialog.get_by_role("button", name="Sign: reviewed"), "reaction-closed")
    expect(qa.page.get_by_role("status").first).to_contain_text("Adverse reaction 1 closed and signed")
    qa.page.locator("[data-lookback='1']").get_by_role("button", name="Close lookback…").click()
    dialog = qa.page.locator("dialog[open]")
    dialog.get_by_label("Conclusion").fill("No other patient received the lot; the sibling is disposed of on its card.")
    dialog.get_by_label("Your password").fill("correct-horse-battery")
    qa.submit(dialog.get_by_role("button", name="Sign: reviewed"), "lookback-closed")
    expect(qa.page.locator("[data-lookback='1']")).to_contain_text("Closed: No other patient")
    at_every_width(qa, "investigations-closed")
    assert lab.ok(lab.get("qa", f"/batches/{sibling}"), 200)["held"] is True
