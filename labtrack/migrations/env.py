"""Alembic environment: the URL comes from the caller (labtrack.migrate) or DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context

from labtrack.db import make_engine
from labtrack.models import Base

url = context.config.attributes.get("database_url") or os.environ["DATABASE_URL"]
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
