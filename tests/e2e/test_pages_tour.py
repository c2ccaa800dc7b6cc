"""Every page a role uses, opened in the browser with the keyboard's focus where the work starts."""

from __future__ import annotations

from playwright.sync_api import expect

UNLABELLED = """() => Array.from(document.querySelectorAll(
    'main input:not([type=hidden]), main select, main textarea, dialog input:not([type=hidden]), dialog textarea'
)).filter(el => el.labels.length === 0).map(el => el.name)"""


def test_every_page_renders_for_its_role_with_labelled_fields(people, lab):
    din = lab.released()
    pages = {
        "admin": [
            "/admin/users",
            "/admin/clinics",
            "/admin/lots",
            "/admin/equipment",
            "/admin/specifications",
            "/audit?run=1",
        ],
        "qa": ["/qa", f"/batches/{din}", f"/batches/{din}/record", "/notifications"],
        "clinic": ["/clinic", "/clinic/patients", f"/batches/{din}"],
        "tech": ["/bench", f"/batches/{din}"],
    }
    for username, paths in pages.items():
        person = people(username)
        for path in paths:
            response = person.goto(path, path.strip("/").replace("/", "-").replace("?", "-"))
            assert response.status == 200, path
            # every visible field has a label a screen reader and get_by_label can find
            unlabelled = person.page.evaluate(UNLABELLED)
            assert unlabelled == [], (path, unlabelled)
    expect(person.page.get_by_text("Ready for the clinic")).to_have_count(0)  # a technician is not asked that
