"""operations: request ids on outbox rows, the expiry warning on the batch, SSO signing passwords

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:40:00

Hand-written (issue 17).

- ``outbox.request_id``: the ``X-Request-ID`` of the request that wrote the row, so the
  worker that delivers it logs under the same id (R-OPS-3).
- ``batches.expiry_warned_at``: when the expiry watcher warned the batch's clinic. It was
  the existence of a ``batch.expiring`` outbox row; housekeeping now deletes delivered
  outbox rows after 30 days (R-OPS-6), so the state moves onto the batch, copied here
  from the rows that exist.
- ``users.signing_password_hash``: the signing password an SSO user sets at first use
  (R-OPS-4); signatures check it when it is set, the account password otherwise.
- indexes serving the nightly housekeeping's deletes (expired tokens, old delivered
  outbox rows, old read notifications).
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

COLUMNS = (
    ('outbox', sa.Column('request_id', sa.String(length=64), nullable=True)),
    ('batches', sa.Column('expiry_warned_at', sa.DateTime(timezone=True), nullable=True)),
    ('users', sa.Column('signing_password_hash', sa.String(length=200), nullable=True)),
)


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (SQLite adds and drops a column in place since 3.35): a batch
    # rebuild of these tables would drop tables that the append-only history references.
    for table, column in COLUMNS:
        op.add_column(table, column)
    op.execute(
        "UPDATE batches SET expiry_warned_at = (SELECT min(o.created_at) FROM outbox o "
        "WHERE o.batch_id = batches.id AND o.topic = 'batch.expiring') "
        "WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.batch_id = batches.id AND o.topic = 'batch.expiring')"
    )
    op.create_index('ix_outbox_status_delivered', 'outbox', ['status', 'delivered_at'])
    op.create_index('ix_api_tokens_expires_at', 'api_tokens', ['expires_at'])
    op.create_index('ix_notifications_read_at', 'notifications', ['read_at'])


def downgrade() -> None:
    op.drop_index('ix_notifications_read_at', 'notifications')
    op.drop_index('ix_api_tokens_expires_at', 'api_tokens')
    op.drop_index('ix_outbox_status_delivered', 'outbox')
    for table, column in reversed(COLUMNS):
        op.execute(f'ALTER TABLE {table} DROP COLUMN {column.name}')
