"""workers: notifications, outbox delivery state and log, signed checkpoints, user e-mail

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:30:00

Hand-written (issue 4). The outbox gains per-channel completion times and a lease
(``locked_until``/``locked_by``) so a sweeper claims rows in a short transaction
and delivers outside it: on SQLite a write transaction held across HTTP calls
would stall every step being logged.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _outbox_columns() -> list[sa.Column]:
    return [
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('emailed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('webhook_delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    ]


def upgrade() -> None:
    for column in _outbox_columns():
        op.add_column('outbox', column)
    op.create_index('ix_outbox_batch_topic', 'outbox', ['batch_id', 'topic'], unique=False)
    op.add_column('users', sa.Column('email', sa.String(length=254), nullable=True))

    op.create_table('notifications',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', BIG_ID, nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('batch_id', BIG_ID, nullable=True),
    sa.Column('din', sa.String(length=13), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users')),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_notifications_outbox_id_outbox')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_notifications_batch_id_batches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('outbox_id', 'user_id', name='uq_notifications_outbox_user'),
    )
    op.create_index('ix_notifications_user', 'notifications', ['user_id', 'id'], unique=False)

    op.create_table('outbox_deliveries',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('outbox_id', BIG_ID, nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=500), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_outbox_deliveries_outbox_id_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_deliveries')),
    )
    op.create_index('ix_outbox_deliveries_outbox', 'outbox_deliveries', ['outbox_id', 'id'], unique=False)

    op.create_table('checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tree_size', sa.Integer(), nullable=False),
    sa.Column('root', sa.String(length=64), nullable=False),
    sa.Column('statement', sa.Text(), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoints')),
    )
    # Only the heads that changed since the previous checkpoint are stored; the
    # leaves of checkpoint N are, per stream, the row with the largest id <= N.
    op.create_table('checkpoint_leaves',
    sa.Column('stream', sa.String(length=16), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'], name=op.f('fk_checkpoint_leaves_checkpoint_id_checkpoints')),
    sa.PrimaryKeyConstraint('stream', 'checkpoint_id', name=op.f('pk_checkpoint_leaves')),
    )


def downgrade() -> None:
    op.drop_table('checkpoint_leaves')
    op.drop_table('checkpoints')
    op.drop_index('ix_outbox_deliveries_outbox', table_name='outbox_deliveries')
    op.drop_table('outbox_deliveries')
    op.drop_index('ix_notifications_user', table_name='notifications')
    op.drop_table('notifications')
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('email')
    op.drop_index('ix_outbox_batch_topic', table_name='outbox')
    with op.batch_alter_table('outbox') as batch_op:
        for column in reversed(_outbox_columns()):
            batch_op.drop_column(column.name)
