"""interoperability: label print jobs, temperature-logger records (append-only)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:40:00

Hand-written (issue 16). ``label_prints`` is operational: one row per request to send a
ZPL label to a thermal printer, its status moved by the worker that sends it (the print
itself is the ``label_printed`` event, appended only once the printer took the label).
``temperature_logs`` holds the readings of one transport leg's logger file: a record,
append-only like the event tables (R-AUD-2), one per leg and one per file (SHA-256).
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql')
LOGS = 'temperature_logs'


def upgrade() -> None:
    op.create_table('label_prints',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('batch_id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('printer', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('event_seq', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('product', 'collection')", name=op.f('ck_label_prints_kind')),
    sa.CheckConstraint("status IN ('queued', 'sending', 'printed', 'failed')", name=op.f('ck_label_prints_status')),
    sa.CheckConstraint("(status = 'printed') = (event_seq IS NOT NULL)", name=op.f('ck_label_prints_printed_has_event')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_label_prints_batch_id_batches')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_label_prints_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_prints')),
    )
    op.create_index('ix_label_prints_batch', 'label_prints', ['batch_id', 'id'], unique=False)
    op.create_table(LOGS,
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('batch_id', BIG_ID, nullable=False),
    sa.Column('leg', sa.Integer(), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('imported_by_id', sa.Integer(), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_seq', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('low_c', sa.Float(), nullable=False),
    sa.Column('high_c', sa.Float(), nullable=False),
    sa.Column('min_c', sa.Float(), nullable=False),
    sa.Column('max_c', sa.Float(), nullable=False),
    sa.Column('mean_c', sa.Float(), nullable=False),
    sa.Column('minutes_out_of_range', sa.Float(), nullable=False),
    sa.Column('readings', JSON, nullable=False),
    sa.CheckConstraint('leg >= 1', name=op.f('ck_temperature_logs_leg_positive')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_temperature_logs_batch_id_batches')),
    sa.ForeignKeyConstraint(['imported_by_id'], ['users.id'], name=op.f('fk_temperature_logs_imported_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_temperature_logs')),
    sa.UniqueConstraint('batch_id', 'leg', name='uq_temperature_logs_batch_leg'),
    sa.UniqueConstraint('batch_id', 'file_sha256', name='uq_temperature_logs_batch_file'),
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            f"CREATE TRIGGER {LOGS}_append_only BEFORE UPDATE OR DELETE ON {LOGS} "
            "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {LOGS}_no_truncate BEFORE TRUNCATE ON {LOGS} "
            "FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()"
        )
        return
    for operation in ('UPDATE', 'DELETE'):
        op.execute(
            f"CREATE TRIGGER {LOGS}_no_{operation.lower()} BEFORE {operation} ON {LOGS} "
            f"BEGIN SELECT RAISE(ABORT, 'labtrack: {operation} on {LOGS} refused: "
            "event tables are append-only (R-AUD-2)'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"DROP TRIGGER IF EXISTS {LOGS}_append_only ON {LOGS}")
        op.execute(f"DROP TRIGGER IF EXISTS {LOGS}_no_truncate ON {LOGS}")
    else:
        for operation in ('update', 'delete'):
            op.execute(f"DROP TRIGGER IF EXISTS {LOGS}_no_{operation}")
    op.drop_table(LOGS)
    op.drop_index('ix_label_prints_batch', table_name='label_prints')
    op.drop_table('label_prints')
