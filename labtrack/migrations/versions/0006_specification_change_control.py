"""specification change control (R-QC-6) and password reset

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00

Hand-written (issue 13). ``specification_proposals`` holds proposed specification
versions: a version takes force only when a QA user other than the proposer approves
it with a signature; at most one proposal per tissue source is open at a time (a
partial unique index). ``users.must_change_password`` is set when an admin resets a
password: the user chooses a new one at the next sign-in, on the pages and the API.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), 'postgresql')
TABLE = 'specification_proposals'


def upgrade() -> None:
    op.add_column('users', sa.Column('must_change_password', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(TABLE,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tissue_source', sa.String(length=16), nullable=False),
    sa.Column('base_version', sa.Integer(), nullable=False),
    sa.Column('body', JSON, nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('proposed_by_id', sa.Integer(), nullable=False),
    sa.Column('proposed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('record_hash', sa.String(length=64), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawal_reason', sa.Text(), nullable=True),
    sa.Column('signature', JSON, nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.CheckConstraint("tissue_source IN ('adipose', 'bone_marrow')", name=op.f('ck_specification_proposals_tissue_source')),
    sa.CheckConstraint("status IN ('proposed', 'approved', 'withdrawn')", name=op.f('ck_specification_proposals_status')),
    sa.CheckConstraint("(status = 'approved') = (version IS NOT NULL AND signature IS NOT NULL)",
                       name=op.f('ck_specification_proposals_approved')),
    sa.CheckConstraint("status = 'proposed' OR decided_by_id IS NOT NULL", name=op.f('ck_specification_proposals_decided')),
    sa.CheckConstraint("status <> 'approved' OR decided_by_id <> proposed_by_id",
                       name=op.f('ck_specification_proposals_second_person')),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['users.id'], name=op.f('fk_specification_proposals_proposed_by_id_users')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_specification_proposals_decided_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_specification_proposals')),
    )
    op.create_index('uq_specification_proposals_open', TABLE, ['tissue_source'], unique=True,
                    sqlite_where=sa.text("status = 'proposed'"), postgresql_where=sa.text("status = 'proposed'"))


def downgrade() -> None:
    op.drop_index('uq_specification_proposals_open', table_name=TABLE)
    op.drop_table(TABLE)
    with op.batch_alter_table('users') as batch:
        batch.drop_column('must_change_password')
