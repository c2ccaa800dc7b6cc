"""The unit of work owns the transaction (docs/architecture.md, "Unit of work"): services and audit never
commit or roll back, and the watchers and the outbox never open a unit of work of their own (their jobs,
``labtrack/jobs.py``, do)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("labtrack/services", "labtrack/audit")
ENDINGS = {"commit", "rollback"}
# Still to be moved to a job, like the watchers and the outbox: each opens its units of work itself.
KNOWN_UNITS = {
    "labtrack/services/investigation_watchers.py",
    "labtrack/services/followup_watch.py",
    "labtrack/services/trends.py",
    "labtrack/services/housekeeping.py",
    "labtrack/services/labels.py",
    "labtrack/audit/runs.py",
}


def _calls(source: str, names: set[str], on: str | None = None) -> list[str]:
    """``x.name(...)`` calls of any of ``names`` (on the variable ``on`` only, if given), as ``line: code``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names):
            continue
        if on is None or (isinstance(node.func.value, ast.Name) and node.func.value.id == on):
            found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def _modules() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text()
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*.py")
    }


def test_services_and_audit_never_commit_or_roll_back():
    offenders = {path: calls for path, source in _modules().items() if (calls := _calls(source, ENDINGS))}
    assert offenders == {}


def test_the_watchers_and_the_outbox_leave_their_transactions_to_the_jobs():
    opening = {path for path, source in _modules().items() if _calls(source, {"write"}, on="database")}
    assert "labtrack/services/watchers.py" not in opening
    assert "labtrack/services/outbox.py" not in opening
    assert opening <= KNOWN_UNITS, sorted(opening - KNOWN_UNITS)


def test_the_check_sees_a_commit_a_rollback_and_a_unit_of_work():
    """Not vacuous: the calls it looks for are found where they are written."""
    planted = "def f(session, database):\n    session.commit()\n    database.write(g)\n    s.rollback()\n"
    assert [line.split(":")[0] for line in _calls(planted, ENDINGS)] == ["2", "4"]
    assert _calls(planted + "    handle.write(pem)\n", {"write"}, on="database") == ["3: database.write(g)"]
