"""The Alembic migrations and the models describe one schema: on the migrated database, Alembic's
autogenerate comparison (what ``alembic revision --autogenerate`` would write) finds nothing to add,
drop or alter, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from labtrack.db import normalise_url
from labtrack.models import Base

# What the comparison cannot see the same way from both sides, and why it is no difference:
IGNORED_TABLES = {
    "alembic_version",  # Alembic's own bookkeeping
    "kombu_message",  # the embedded broker's tables, when it shares a file (never in the migrations)
    "kombu_queue",
}


def _partition(table) -> bool:
    """A partition of batch_events (R-SCL-1): the parent is the model; the beat task makes the rest."""
    return table is not None and table.name.startswith("batch_events_")


def _include(obj, name, type_, reflected, compare_to) -> bool:
    if type_ == "table":
        return name not in IGNORED_TABLES and not (reflected and _partition(obj))
    return not (reflected and type_ == "index" and _partition(getattr(obj, "table", None)))


# The trigram index of patient search is PostgreSQL's only (``ddl_if``): SQLite never has it, and Alembic,
# unable to reflect an expression index from SQLite, leaves it out of the comparison there (and says so).
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_autogenerate_finds_nothing_between_the_migrations_and_the_models(database_url):
    engine = create_engine(normalise_url(database_url))  # the test's database, made by the migrations
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": True, "compare_server_default": False, "include_object": _include},
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], "the migrations and labtrack/models.py disagree:\n" + "\n".join(map(repr, differences))
