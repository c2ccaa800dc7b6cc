"""The unit of work owns the transaction (docs/architecture.md, "Who owns a transaction"): services and audit
never commit or roll back, never open a unit of work and never take the ``Database`` (their jobs,
``labtrack/jobs.py``, do), and know no web framework or task queue. Read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("labtrack/services", "labtrack/audit")
ENDINGS = {"commit", "rollback"}
DATABASE = "labtrack.db.Database"
FRAMEWORKS = ("flask", "celery", "kombu")  # and flask_* (flask_smorest, flask_wtf, flask_limiter)


def _calls(source: str, names: set[str], on: set[str] | None = None) -> list[str]:
    """``x.name(...)`` calls of any of ``names`` (on a variable named in ``on`` only, if given), as ``line: code``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names):
            continue
        if on is None or (isinstance(node.func.value, ast.Name) and node.func.value.id in on):
            found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def _absolute(module: str | None, level: int, package: str) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved against ``package``."""
    if not level:
        return module or ""
    base = package.split(".")[: len(package.split(".")) - level + 1]
    return ".".join([*base, *([module] if module else [])])


def _framework(name: str) -> bool:
    top = name.split(".")[0]
    return top in FRAMEWORKS or top.startswith("flask_")


def _forbidden_imports(source: str, package: str) -> list[str]:
    """Imports of ``labtrack.db.Database`` (by name or as ``db.Database``) and of Flask or Celery, anywhere in the
    module (in functions and under TYPE_CHECKING too), as ``line: what``."""
    tree = ast.parse(source)
    found, db_module = [], set()  # db_module: the local names bound to labtrack.db
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _framework(alias.name):
                    found.append(f"{node.lineno}: {alias.name}")
                if alias.name == "labtrack.db":
                    db_module.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, package)
            if _framework(module):
                found.append(f"{node.lineno}: {module}")
            for alias in node.names:
                if f"{module}.{alias.name}" == DATABASE:
                    found.append(f"{node.lineno}: {DATABASE}")
                if f"{module}.{alias.name}" == "labtrack.db":
                    db_module.add(alias.asname or alias.name)
    found += [
        f"{node.lineno}: {DATABASE}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "Database" and ast.unparse(node.value) in db_module
    ]
    return found


def _modules() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text()
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*.py")
    }


def _package(path: str) -> str:
    return ".".join(Path(path).parent.parts)


def test_services_and_audit_never_commit_or_roll_back():
    offenders = {path: calls for path, source in _modules().items() if (calls := _calls(source, ENDINGS))}
    assert offenders == {}


def test_services_and_audit_leave_their_units_of_work_to_the_jobs():
    opening = {
        path: calls for path, source in _modules().items() if (calls := _calls(source, {"write"}, {"database", "db"}))
    }
    assert opening == {}


def test_services_and_audit_take_a_session_not_the_database_and_know_no_flask_or_celery():
    offenders = {
        path: found for path, source in _modules().items() if (found := _forbidden_imports(source, _package(path)))
    }
    assert offenders == {}


def test_the_check_sees_a_commit_a_rollback_and_a_unit_of_work():
    """Not vacuous: the calls it looks for are found where they are written."""
    planted = "def f(session, database):\n    session.commit()\n    database.write(g)\n    s.rollback()\n"
    assert [line.split(":")[0] for line in _calls(planted, ENDINGS)] == ["2", "4"]
    assert _calls(planted + "    handle.write(pem)\n", {"write"}, {"database"}) == ["3: database.write(g)"]


def test_the_check_sees_the_database_flask_and_celery_however_imported():
    """Not vacuous: each way of reaching the Database, Flask or Celery is named, and a session is not."""
    planted = (
        "from labtrack.db import Database\n"
        "from ..db import Database as D\n"
        "import labtrack.db\n"
        "from labtrack import db\n"
        "def f(x: labtrack.db.Database, y: db.Database): import flask\n"
        "from flask_smorest import abort\n"
        "from celery import shared_task\n"
        "from labtrack.db import after_commit\n"
        "from sqlalchemy.orm import Session\n"
    )
    lines = [found.split(":")[0] for found in _forbidden_imports(planted, "labtrack.services")]
    assert sorted(lines, key=int) == ["1", "2", "5", "5", "5", "6", "7"]
