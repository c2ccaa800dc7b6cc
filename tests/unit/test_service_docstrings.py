"""Every public function of the services, the audit and the jobs (no leading underscore) says what it does in a
docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import labtrack

ROOT = Path(labtrack.__file__).parent
MODULES = [*sorted((ROOT / "services").glob("*.py")), *sorted((ROOT / "audit").glob("*.py")), ROOT / "jobs.py"]


def _public_functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for path in MODULES:
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                found.append((f"{path.parent.name}/{path.stem}.{node.name}", node))
    return found


def test_the_services_have_public_functions_to_check():
    assert len(_public_functions()) > 250


def test_every_public_service_function_has_a_docstring_of_a_sentence():
    missing = [name for name, node in _public_functions() if len((ast.get_docstring(node) or "").split()) < 4]
    assert missing == [], "public service functions without a docstring saying what they do: " + ", ".join(missing)
