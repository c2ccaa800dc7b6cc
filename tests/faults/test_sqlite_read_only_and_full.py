"""SQLite read-only and full: writes answer 503 saying which, reads go on, nothing is half-written.

Read-only: the same database file opened ``mode=ro`` (as root, a chmod would not stop us; the app sees
SQLITE_READONLY either way). Full: ``PRAGMA max_page_count`` caps the file, so SQLite itself refuses to
grow it with SQLITE_FULL, "database or disk is full", exactly as on a full disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from tests.conftest import ON_POSTGRES, make_app
from tests.faults.conftest import assert_nothing_half_written, descriptions, deviations_until_refused, unavailable
from tests.helpers import LAB_STEPS, PASSWORD

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite faults: the SQLite pass runs these")


@pytest.fixture
def read_only_client(database_url: str, tmp_path: Path) -> Iterator:
    """The app once more, on the same file opened read-only."""
    read_only = make_app(f"sqlite:///file:{database_url.removeprefix('sqlite:///')}?mode=ro&uri=true", tmp_path / "ro")
    yield read_only.test_client()
    read_only.extensions["labtrack.db"].dispose()


def test_read_only_database_file_refuses_writes_with_503_and_serves_reads(lab, read_only_client):
    din = lab.at_lab()
    headers = {"tech": lab.headers("tech"), "qa": lab.headers("qa")}
    step = read_only_client.post(
        f"/api/v1/batches/{din}/steps",
        json={"step": "digestion", "scanned_din": din, **LAB_STEPS["digestion"]},
        headers=headers["tech"],
    )
    assert unavailable(step, "read_only"), step.get_json()
    assert "read-only" in step.get_json()["detail"]
    login = read_only_client.post("/api/v1/auth/token", json={"username": "qa2", "password": PASSWORD})
    assert unavailable(login, "read_only")  # a sign-in writes its token
    batch = read_only_client.get(f"/api/v1/batches/{din}", headers=headers["qa"])
    assert batch.status_code == 200
    assert batch.get_json()["status"] == "received"

    lab.ok(lab.step(din, "digestion"))  # the writable app records it, once
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert [e["type"] for e in events][-2:] == ["receipt", "digestion"]
    assert_nothing_half_written(lab)


class PageCap:
    """``PRAGMA max_page_count`` on every connection of the app's engine: the file may grow no more."""

    def __init__(self, db) -> None:
        self.db = db
        self.pages = 0

    def _on_connect(self, dbapi_connection, _record) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {self.pages}")

    def cap(self, headroom: int = 4) -> None:
        with self.db.engine.connect() as connection:
            self.pages = connection.exec_driver_sql("PRAGMA page_count").scalar() + headroom
        event.listen(self.db.engine, "connect", self._on_connect)
        self.db.engine.dispose()  # every connection from now on is capped

    def lift(self) -> None:
        if event.contains(self.db.engine, "connect", self._on_connect):
            event.remove(self.db.engine, "connect", self._on_connect)
            self.db.engine.dispose()


@pytest.fixture
def page_cap(db) -> Iterator[PageCap]:
    cap = PageCap(db)
    yield cap
    cap.lift()


def test_full_database_refuses_writes_with_503_full_and_the_refused_write_left_nothing(lab, page_cap):
    din = lab.at_lab()
    lab.headers("qa")
    page_cap.cap()
    accepted, refused, description = deviations_until_refused(lab, din)
    assert unavailable(refused, "full"), refused.get_json()
    assert "out of storage space" in refused.get_json()["detail"]
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["status"] == "received"  # reads are served
    assert descriptions(lab, din) == accepted

    page_cap.lift()  # space freed
    lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": description}))
    assert descriptions(lab, din) == [*accepted, description]
    assert_nothing_half_written(lab)
