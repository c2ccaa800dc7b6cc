"""Backups while the app is under write load, and the restore check that proves a copy (R-OPS-5).

Writers log steps and open deviations on their own batches through the API while
``labtrack backup`` runs; the copy must restore and verify (every chain, every
checkpoint), hold a prefix of what the live database holds, and a tampered copy must fail
the check. On SQLite the copy is the online backup; on PostgreSQL it is pg_dump's.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from labtrack.migrate import alembic_config
from tests.conftest import ON_POSTGRES
from tests.helpers import PROCESS_ORDER, Lab
from tests.workers.support import wait_until

WRITERS = 3


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["labtrack", *args])


def event_count(lab: Lab) -> int:
    """Every event a full verification checks: the batch streams and the admin chain."""
    return lab.sql("SELECT (SELECT count(*) FROM batch_events) + (SELECT count(*) FROM admin_events)")[0][0]


class Load:
    """Threads writing steps, then deviations, each on a batch of its own, until stopped."""

    def __init__(self, lab: Lab, dins: list[str]) -> None:
        self.stop = threading.Event()
        self.written = 0
        self.wrong: list[tuple[int, object]] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.write, args=(replace(lab, client=lab.app.test_client()), din)) for din in dins
        ]

    def note(self, response, expected: int = 201) -> None:
        with self.lock:
            if response.status_code == expected:
                self.written += 1
            else:
                self.wrong.append((response.status_code, response.get_json(silent=True)))

    def write(self, lab: Lab, din: str) -> None:
        for step in PROCESS_ORDER["adipose"]:
            self.note(lab.step(din, step))
        number = 0
        while not self.stop.is_set():
            number += 1
            self.note(
                lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": f"load {number}"})
            )

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def at_lab(lab: Lab, mrn: str) -> str:
    din = lab.batch(mrn=mrn)
    lab.ok(lab.harvest(din, patient_mrn=mrn))
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    return din


@pytest.fixture
def busy_lab(lab: Lab) -> Lab:
    lab.dins = [at_lab(lab, f"MRN-{n}") for n in range(WRITERS)]  # type: ignore[attr-defined]
    return lab


def test_r_ops_5_backup_under_write_load_restores_and_verifies(busy_lab: Lab, tmp_path: Path):
    lab = busy_lab
    copy = tmp_path / "labtrack.backup"
    before = event_count(lab)
    with Load(lab, lab.dins) as load:  # type: ignore[attr-defined]
        assert wait_until(lambda: load.written >= 10, 60), load.wrong
        made = cli(lab.app, "backup", str(copy))
        written_during = load.written
        assert wait_until(lambda: load.written >= written_during + 5, 60), load.wrong
    assert load.wrong == []
    assert made.exit_code == 0, made.output
    assert ("pg_dump (custom format, one snapshot)" if ON_POSTGRES else "SQLite online backup") in made.output
    assert copy.exists()

    checked = cli(lab.app, "restore-check", str(copy))
    assert checked.exit_code == 0, checked.output
    assert checked.output.startswith("OK: the copy at"), checked.output
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert f"schema revision {head}" in checked.output
    verified = int(checked.output.split(" event(s) verified")[0].rsplit(" ", 1)[1])
    # the copy is one moment's snapshot: more than before the load, fewer than the live database now
    assert before < verified < event_count(lab)


def test_r_ops_5_backup_never_overwrites_and_a_missing_copy_is_refused(lab: Lab, tmp_path: Path):
    existing = tmp_path / "existing.backup"
    existing.write_bytes(b"keep me")
    refused = cli(lab.app, "backup", str(existing))
    assert refused.exit_code != 0
    assert "never overwrites" in refused.output
    assert existing.read_bytes() == b"keep me"
    missing = cli(lab.app, "restore-check", str(tmp_path / "nothing-here"))
    assert missing.exit_code != 0
    assert "is not a file" in missing.output
    not_a_copy = cli(lab.app, "restore-check", str(existing))
    assert not_a_copy.exit_code != 0
    assert "neither a SQLite database nor a pg_dump" in not_a_copy.output


@pytest.mark.skipif(ON_POSTGRES, reason="the tampering is done on a SQLite copy")
def test_r_ops_5_restore_check_fails_a_tampered_copy(lab: Lab, tmp_path: Path):
    din = lab.at_lab()
    copy = tmp_path / "copy.sqlite"
    assert cli(lab.app, "backup", str(copy)).exit_code == 0
    connection = sqlite3.connect(copy)
    with connection:
        connection.execute("DROP TRIGGER batch_events_no_update")
        connection.execute(
            "UPDATE batch_events SET canonical = replace(canonical, 'SEAL-1', 'SEAL-9') "
            "WHERE type = 'handoff' AND batch_id = (SELECT id FROM batches WHERE din = ?)",
            (din,),
        )
    connection.close()
    checked = cli(lab.app, "restore-check", str(copy))
    assert checked.exit_code == 1, checked.output
    assert f"FAIL {din}" in checked.output
    assert "FAILED: the copy at" in checked.output


@pytest.mark.postgres
def test_r_ops_5_without_pg_dump_the_backup_says_so_and_writes_nothing(lab: Lab, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH where no pg_dump is
    copy = tmp_path / "copy.dump"
    result = cli(lab.app, "backup", str(copy))
    assert result.exit_code != 0
    assert "pg_dump is not installed" in result.output
    assert "no backup was written" in result.output
    assert not copy.exists()
