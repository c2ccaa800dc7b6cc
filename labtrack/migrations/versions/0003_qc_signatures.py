"""QC results, signature failures, deviation link to QC, lockout reset

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 17:40:00

Hand-written (issue 3). ``qc_results`` is a projection of the batch stream's
qc_recorded / qc_verified / correction events; the database itself refuses a
verification by the person who entered the value.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'qc_results',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('test', sa.String(length=32), nullable=False),
        sa.Column('value', JSON, nullable=False),
        sa.Column('unit', sa.String(length=16), nullable=True),
        sa.Column('method', sa.String(length=100), nullable=True),
        sa.Column('within_spec', sa.Boolean(), nullable=False),
        sa.Column('limit', sa.String(length=200), nullable=False),
        sa.Column('entered_by_id', sa.Integer(), nullable=False),
        sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('entered_seq', sa.Integer(), nullable=False),
        sa.Column('record_seq', sa.Integer(), nullable=False),
        sa.Column('record_hash', sa.String(length=64), nullable=False),
        sa.Column('verified_by_id', sa.Integer(), nullable=True),
        sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('verified_seq', sa.Integer(), nullable=True),
        sa.Column('corrected', sa.Boolean(), nullable=False),
        sa.Column('original_value', JSON, nullable=True),
        sa.CheckConstraint(
            'verified_by_id IS NULL OR verified_by_id <> entered_by_id', name=op.f('ck_qc_results_second_person')
        ),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_qc_results_batch_id_batches')),
        sa.ForeignKeyConstraint(['entered_by_id'], ['users.id'], name=op.f('fk_qc_results_entered_by_id_users')),
        sa.ForeignKeyConstraint(['verified_by_id'], ['users.id'], name=op.f('fk_qc_results_verified_by_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_qc_results')),
    )
    op.create_index('ix_qc_results_batch', 'qc_results', ['batch_id', 'test'], unique=False)
    op.create_table(
        'signature_failures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('meaning', sa.String(length=16), nullable=False),
        sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_signature_failures_batch_id_batches')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_signature_failures_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_signature_failures')),
    )
    op.create_index('ix_signature_failures_user_at', 'signature_failures', ['user_id', 'at'], unique=False)
    # Plain ADD COLUMN, no table rebuild (a rebuild of a referenced table fails on SQLite with data in it).
    op.add_column('users', sa.Column('failures_reset_at', sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE deviations ADD COLUMN qc_result_id INTEGER REFERENCES qc_results (id)')
    else:
        op.add_column('deviations', sa.Column('qc_result_id', sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f('fk_deviations_qc_result_id_qc_results'), 'deviations', 'qc_results', ['qc_result_id'], ['id']
        )

def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(op.f('fk_deviations_qc_result_id_qc_results'), 'deviations', type_='foreignkey')
    with op.batch_alter_table('deviations') as batch_op:
        batch_op.drop_column('qc_result_id')
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('failures_reset_at')
    op.drop_index('ix_signature_failures_user_at', table_name='signature_failures')
    op.drop_table('signature_failures')
    op.drop_index('ix_qc_results_batch', table_name='qc_results')
    op.drop_table('qc_results')
