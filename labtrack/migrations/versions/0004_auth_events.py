"""auth events: sign-in, sign-in failure, sign-out and lockout, append-only

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:00:00

Hand-written (issue 8). An audit record of authentication (Part 11 §11.10(d),
§11.300(d)): the database refuses UPDATE and DELETE on it as on the event tables
(R-AUD-2), reusing 0001's ``labtrack_append_only()`` function on PostgreSQL.
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLE = 'auth_events'


def upgrade() -> None:
    op.create_table(TABLE,
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=300), nullable=True),
    sa.CheckConstraint("event IN ('sign_in', 'sign_out', 'lockout')", name=op.f('ck_auth_events_event')),
    sa.CheckConstraint("outcome IN ('success', 'failure')", name=op.f('ck_auth_events_outcome')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_auth_events_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_events')),
    )
    op.create_index('ix_auth_events_user_at', TABLE, ['user_id', 'at'], unique=False)
    op.create_index('ix_auth_events_at', TABLE, ['at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()"
        )
        return
    for operation in ('UPDATE', 'DELETE'):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{operation.lower()} BEFORE {operation} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, 'labtrack: {operation} on {TABLE} refused: "
            "event tables are append-only (R-AUD-2)'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    else:
        for operation in ('update', 'delete'):
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{operation}")
    op.drop_index('ix_auth_events_at', table_name=TABLE)
    op.drop_index('ix_auth_events_user_at', table_name=TABLE)
    op.drop_table(TABLE)
