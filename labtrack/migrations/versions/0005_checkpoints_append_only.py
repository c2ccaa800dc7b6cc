"""checkpoints and their leaves are append-only

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:00:00

Hand-written (issue 8). A signed checkpoint is a statement made once: nothing in the
application updates or deletes one, so the database refuses it, as it does on the
event tables (R-AUD-2, R-AUD-4), reusing 0001's ``labtrack_append_only()`` on
PostgreSQL. Before this, only the application role's privileges protected them.
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TABLES = ('checkpoints', 'checkpoint_leaves')


def _statements(table: str, dialect: str) -> list[str]:
    if dialect == 'postgresql':
        return [
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()",
        ]
    return [
        f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'labtrack: {operation} on {table} refused: "
        "signed checkpoints are append-only (R-AUD-4)'); END"
        for operation in ('UPDATE', 'DELETE')
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in TABLES:
        for statement in _statements(table, dialect):
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    for table in TABLES:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            continue
        for operation in ('update', 'delete'):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
