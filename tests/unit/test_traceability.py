"""docs/traceability.md stays true: every test named with a rule ID is listed under that rule, every
listed test exists, and every rule has at least one test."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_DEFINITION = re.compile(r"^\s*def (test_\w+)|^class (Test\w+)", re.M)
FAMILIES = "acc|adv|aud|coi|cor|cus|dev|din|exp|fhir|lbk|mat|ops|out|qc|rdy|rel|scl|seq|sig|spc|tmp|zpl"
RULE_TOKEN = re.compile(rf"(?<![a-z0-9])r_({FAMILIES})_(\d+)")


def _table() -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for line in (ROOT / "docs" / "traceability.md").read_text().splitlines():
        match = re.match(r"\| (R-[A-Z]+-\d+) \|", line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`(tests/[^`]+)`", line.split(" | ")[-1]))
    return rows


def _named_tests() -> dict[str, set[str]]:
    """rule ID -> tests whose function name carries it (``test_r_cus_4_...`` -> R-CUS-4)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for match in TEST_DEFINITION.finditer(path.read_text()):
            name = match.group(1)
            if name is None:
                continue
            for family, number in RULE_TOKEN.findall(name):
                found.setdefault(f"R-{family.upper()}-{number}", set()).add(f"{relative}::{name}")
    return found


def test_every_rule_has_a_row_with_tests():
    table = _table()
    assert len(table) >= 39
    assert all(tests for tests in table.values()), [rule for rule, tests in table.items() if not tests]


def test_every_test_named_with_a_rule_is_listed_under_it():
    table = _table()
    for rule, tests in _named_tests().items():
        assert rule in table, f"{rule} is tested but has no row in docs/traceability.md"
        missing = tests - table[rule]
        assert not missing, f"{rule}: add to docs/traceability.md: {sorted(missing)}"


def test_every_listed_test_exists():
    for rule, tests in _table().items():
        for test in tests:
            path, _, name = test.partition("::")
            source = (ROOT / path).read_text() if (ROOT / path).exists() else ""
            assert re.search(rf"^\s*(def|class) {name}\b", source, re.M), f"{rule}: {test} does not exist"


def _stated_rules() -> set[str]:
    """Rule IDs stated in docs/requirements.md, each where it is defined (``- **R-XXX-n**``)."""
    text = (ROOT / "docs" / "requirements.md").read_text()
    return set(re.findall(r"^- \*\*(R-[A-Z]+-\d+)\*\*", text, re.M))


def test_every_traced_rule_is_stated_in_the_requirements():
    missing = set(_table()) - _stated_rules()
    assert not missing, f"state these rules in docs/requirements.md: {sorted(missing)}"


def test_the_project_states_its_requirements_itself():
    """No file points at a specification outside the project: docs/requirements.md is the one."""
    outside = re.compile(r"SPEC\.md|\bSPEC §|steering repo|/work/shared|\.\./shared")
    offenders = [
        path.relative_to(ROOT).as_posix()
        for folder in ("labtrack", "tests", "workers", "bench", "docs")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in {".py", ".md", ".html", ".txt"}
        and path != Path(__file__)
        and outside.search(path.read_text(errors="replace"))
    ] + [name for name in ("README.md", "dev.py", "config.py") if outside.search((ROOT / name).read_text())]
    assert not offenders, f"point these at docs/requirements.md: {offenders}"
