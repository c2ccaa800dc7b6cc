"""operations: request ids on outbox rows, the expiry warning on the batch, SSO signing passwords

Revision ID: 0010
Revises: 0005
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
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))
    with op.batch_alter_table('batches') as batch:
        batch.add_column(sa.Column('expiry_warned_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('signing_password_hash', sa.String(length=200), nullable=True))
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
    with op.batch_alter_table('users') as batch:
        batch.drop_column('signing_password_hash')
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('expiry_warned_at')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('request_id')
