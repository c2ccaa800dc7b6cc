"""follow-up plans: the reason a version was proposed

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 01:30:00

Hand-written (issue 19).

- R-OUT-1 versions a tissue source's follow-up plan like a specification, and R-QC-6
  asks every proposed specification version for a reason: a plan proposal now says
  why it changes too. ``follow_up_plans.reason`` is nullable because the default
  version 1 (stored on first use) and the versions proposed before this revision
  were made without one; the API refuses a new proposal without it.
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('follow_up_plans', sa.Column('reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('follow_up_plans') as batch:
        batch.drop_column('reason')
