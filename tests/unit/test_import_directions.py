"""Imports run one way (docs/architecture.md, "Import directions"): the domain knows nothing of the rest,
services and audit know no web framework and no task queue, adapters do not reach into each other, and
the offline verifier runs with nothing but the standard library, ``cryptography`` and ``rfc8785``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import unimportable

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("flask", "flask_smorest", "flask_wtf", "flask_limiter", "celery", "kombu", "werkzeug", "marshmallow")
# Layers from the bottom up; a module may import its own layer and those below it.
LAYERS = (
    ("domain", ("labtrack.domain",)),
    ("base", ("labtrack.clock", "labtrack.models", "labtrack.db", "labtrack.migrate", "labtrack.privileges")),
    ("documents", ("labtrack.documents", "labtrack.glossary")),  # plain rendering, the words for codes
    ("services", ("labtrack.services",)),
    ("audit", ("labtrack.audit",)),
    ("adapters", ("labtrack", "workers")),  # api, web, fhir, ops, cli, security, problems, extensions, app, demo
)
# Adapters that other adapters may use; anything else of another adapter is reaching sideways.
SHARED_ADAPTER_PARTS = {
    "labtrack.api.schemas": ("labtrack.web",),  # the pages load forms with the API's own input schemas
    "labtrack.api.exports": ("labtrack.web",),  # and offer the API's CSV exports
    "labtrack.api.outcome_schemas": ("labtrack.web",),
    "labtrack.api.investigation_schemas": ("labtrack.web",),
    "labtrack.api.common": ("labtrack.fhir",),  # the FHIR API signs in as the API does
    "labtrack.ops": ("labtrack", "workers"),  # logs, metrics and backups serve every adapter
}
# labtrack.db also holds the adapters' per-request session helpers (``database()``, ``read_session()``).
FRAMEWORKS_ALLOWED = {"labtrack.db"}
# Known and still to be undone: the outbox stamps rows with the request id read from ops.logs.
KNOWN = {("labtrack.services.outbox", "labtrack.ops"), ("labtrack.services.outbox", "labtrack.ops.logs")}
ADAPTER_PACKAGES = ("labtrack.api", "labtrack.web", "labtrack.fhir", "labtrack.ops", "labtrack.cli", "workers")
OFFLINE_VERIFIER = "labtrack.audit.verify"
OFFLINE_ALLOWED = {"labtrack", "cryptography", "rfc8785", "_cffi_backend", "_openssl"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in [*(ROOT / "labtrack").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]:
        relative = path.relative_to(ROOT).with_suffix("")
        if "versions" in relative.parts:
            continue
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        found[".".join(parts)] = path
    return found


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every module a file imports at its top level or inside functions (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    if top_level_only:
        tree = ast.Module(body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[])
    guarded = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _layer(name: str) -> int | None:
    return next((rank for rank, (_, prefixes) in enumerate(LAYERS) if any(_within(name, p) for p in prefixes)), None)


def _package(name: str) -> str | None:
    return next((p for p in ADAPTER_PACKAGES if _within(name, p)), None)


def _violations() -> list[str]:
    modules = _modules()
    found = []
    for module, path in sorted(modules.items()):
        rank = _layer(module)
        for target in sorted(_imports(path, top_level_only=module == "labtrack")):
            top = target.split(".")[0]
            if (module, target) in KNOWN:
                continue
            below = rank is not None and rank <= _layer("labtrack.audit") and module not in FRAMEWORKS_ALLOWED
            if below and top in FRAMEWORKS:
                found.append(f"{module} imports {target}: no web framework or task queue below the adapters")
            if module == "labtrack":
                if top in ("labtrack", *FRAMEWORKS):
                    found.append(f"labtrack (the package) imports {target}: it must import nothing")
                continue
            if target not in modules or target == "labtrack":
                continue
            target_rank = _layer(target)
            if rank is not None and target_rank is not None and target_rank > rank:
                found.append(f"{module} imports {target}: {LAYERS[rank][0]} may not import {LAYERS[target_rank][0]}")
            mine, theirs = _package(module), _package(target)
            if theirs and mine != theirs and not module.startswith("labtrack.app"):
                allowed = next((users for part, users in SHARED_ADAPTER_PARTS.items() if _within(target, part)), ())
                if not any(_within(module, user) for user in allowed):
                    found.append(f"{module} imports {target}: adapters do not reach into each other")
    return found


def test_imports_run_one_way():
    assert _violations() == []


def test_the_check_catches_an_import_against_the_directions(monkeypatch):
    """The check is not vacuous: a domain module importing a service, or a service importing Flask, is named."""
    real = _imports

    def planted(path: Path, top_level_only: bool = False) -> set[str]:
        extra = {
            "labtrack/domain/din.py": {"labtrack.services.batches"},
            "labtrack/services/qc.py": {"flask"},
            "labtrack/web/pages.py": {"labtrack.api.common"},
        }.get(path.relative_to(ROOT).as_posix(), set())
        return real(path, top_level_only) | extra

    monkeypatch.setattr(sys.modules[__name__], "_imports", planted)
    named = "\n".join(_violations())
    assert "labtrack.domain.din imports labtrack.services.batches" in named
    assert "labtrack.services.qc imports flask" in named
    assert "labtrack.web.pages imports labtrack.api.common" in named


def test_r_aud_4_the_offline_verifier_needs_only_the_standard_library_cryptography_and_rfc8785(tmp_path):
    """Run where SQLAlchemy, Flask and the rest of the app's stack cannot be imported: it loads, and what it
    loaded is the standard library, cryptography, rfc8785 and LabTrack's plain-Python modules."""
    script = (
        f"import sys, {OFFLINE_VERIFIER}\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('labtrack'))))\n"
    )
    env = {"PYTHONPATH": f"{unimportable(tmp_path)}:{ROOT}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outside, ours = (line.split() for line in result.stdout.splitlines())
    assert set(outside) - {"__main__", "_distutils_hack"} <= OFFLINE_ALLOWED
    assert all(_within(m, "labtrack.audit") or _within(m, "labtrack.domain") or m == "labtrack" for m in ours), ours
