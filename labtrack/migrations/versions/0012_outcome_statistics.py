"""outcome statistics: each cohort's statistics, computed by a worker, kept by the hash of their inputs

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 14:30:00

Hand-written (issue 15). The web process does not load scipy (it would take a worker past
the 150 MB bar): the outcomes report asks a Celery worker for the statistics of each
cohort and reads them from ``outcome_statistics``, keyed by the SHA-256 of the numbers
they were computed from (``labtrack/services/outcomes.py``).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'outcome_statistics',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('result', JSON, nullable=False),
        sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_outcome_statistics')),
    )


def downgrade() -> None:
    op.drop_table('outcome_statistics')
