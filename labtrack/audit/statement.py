"""The signed statement of a checkpoint (R-AUD-4): what the lab's key signs, and how it is read back.

Plain Python, shared by the checkpoints the app makes and the offline verifier, which
must run with nothing but the standard library, ``cryptography`` and ``rfc8785``.
"""

from __future__ import annotations

from datetime import timedelta

STATEMENT_TITLE = "LabTrack checkpoint v1"
# An event is stamped (recorded_at) before its transaction commits, so one recorded just before a
# checkpoint may commit just after it and be left out. One recorded earlier than this before a
# checkpoint that does not cover it was inserted afterwards.
COMMIT_MARGIN = timedelta(minutes=5)


def statement_text(origin: str, tree_size: int, root: str, created_at: str) -> str:
    """The exact text a checkpoint signs: title, origin, tree size, root and time, one per line."""
    return f"{STATEMENT_TITLE}\n{origin}\n{tree_size}\n{root}\n{created_at}\n"


def parse_statement(statement: str) -> dict[str, object] | None:
    """The fields of a signed statement, or None when it is not one."""
    lines = statement.split("\n")
    if len(lines) != 6 or lines[0] != STATEMENT_TITLE or lines[5] != "" or not lines[2].isdigit():
        return None
    return {"origin": lines[1], "tree_size": int(lines[2]), "root": lines[3], "created_at": lines[4]}
