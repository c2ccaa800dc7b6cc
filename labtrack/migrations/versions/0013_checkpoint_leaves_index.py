"""checkpoint_leaves by checkpoint: a checkpoint's own leaf rows found by index (R-SCL-3)

Before a checkpoint builds on its predecessor it checks that the leaf rows the predecessor
wrote still equal the kept leaves (``audit.tree.departs_from``); the primary key leads with
the stream, so without this index that check read every leaf row ever written.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_checkpoint_leaves_checkpoint', 'checkpoint_leaves', ['checkpoint_id'])


def downgrade() -> None:
    op.drop_index('ix_checkpoint_leaves_checkpoint', table_name='checkpoint_leaves')
