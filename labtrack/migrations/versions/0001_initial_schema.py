"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 16:59:29.038824
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('admin_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('canonical', sa.Text(), nullable=False),
    sa.CheckConstraint('seq >= 1', name=op.f('ck_admin_events_seq_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_events')),
    sa.UniqueConstraint('seq', name=op.f('uq_admin_events_seq'))
    )
    op.create_table('clinics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('webhook_url', sa.String(length=500), nullable=True),
    sa.Column('webhook_secret', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clinics')),
    sa.UniqueConstraint('code', name=op.f('uq_clinics_code'))
    )
    op.create_table('din_counters',
    sa.Column('facility', sa.String(length=5), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('last_sequence', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('facility', 'year', name=op.f('pk_din_counters'))
    )
    op.create_table('equipment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('calibration_due_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('in_service', 'out_of_service', 'retired')", name=op.f('ck_equipment_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_equipment')),
    sa.UniqueConstraint('code', name=op.f('uq_equipment_code'))
    )
    op.create_table('reagent_lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('lot_number', sa.String(length=64), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('quarantined', 'released', 'rejected')", name=op.f('ck_reagent_lots_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reagent_lots')),
    sa.UniqueConstraint('kind', 'lot_number', name='uq_reagent_lots_kind_lot')
    )
    op.create_table('specifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tissue_source', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('body', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.CheckConstraint("tissue_source IN ('adipose', 'bone_marrow')", name=op.f('ck_specifications_tissue_source')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_specifications_version_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_specifications')),
    sa.UniqueConstraint('tissue_source', 'version', name='uq_specifications_tissue_version')
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=True),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('locked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(role = 'clinic') = (clinic_id IS NOT NULL)", name=op.f('ck_users_clinic_users_only_have_clinic')),
    sa.CheckConstraint("role IN ('technician', 'qa', 'clinic', 'admin')", name=op.f('ck_users_role')),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_users_clinic_id_clinics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response_body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_idempotency_keys_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_keys')),
    sa.UniqueConstraint('user_id', 'key', name='uq_idempotency_user_key')
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_keys_created_at'), ['created_at'], unique=False)

    op.create_table('patients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=False),
    sa.Column('mrn', sa.String(length=64), nullable=False),
    sa.Column('family_name', sa.String(length=100), nullable=False),
    sa.Column('given_name', sa.String(length=100), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_patients_clinic_id_clinics')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_patients_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('clinic_id', 'mrn', name='uq_patients_clinic_mrn')
    )
    op.create_table('batches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('din', sa.String(length=13), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('clinic_id', sa.Integer(), nullable=False),
    sa.Column('tissue_source', sa.String(length=16), nullable=False),
    sa.Column('product', sa.String(length=8), nullable=False),
    sa.Column('specification_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('custodian_id', sa.Integer(), nullable=True),
    sa.Column('transfer_from_id', sa.Integer(), nullable=True),
    sa.Column('transfer_to_id', sa.Integer(), nullable=True),
    sa.Column('transfer_seal_id', sa.String(length=64), nullable=True),
    sa.Column('transfer_status_before', sa.String(length=20), nullable=True),
    sa.Column('transfer_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('held', sa.Boolean(), nullable=False),
    sa.Column('steps_done', sa.JSON(), nullable=False),
    sa.Column('planned_administration_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('conditional_release', sa.Boolean(), nullable=False),
    sa.Column('last_physical_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint("status IN ('registered', 'collected', 'in_transit', 'received', 'processing', 'processed', 'awaiting_release', 'released', 'dispatched', 'delivered', 'administered', 'rejected', 'expired', 'discarded')", name=op.f('ck_batches_status')),
    sa.CheckConstraint("tissue_source IN ('adipose', 'bone_marrow')", name=op.f('ck_batches_tissue_source')),
    sa.CheckConstraint('length(din) = 13', name=op.f('ck_batches_din_length')),
    sa.CheckConstraint('seq >= 0', name=op.f('ck_batches_seq_not_negative')),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_batches_clinic_id_clinics')),
    sa.ForeignKeyConstraint(['custodian_id'], ['users.id'], name=op.f('fk_batches_custodian_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_batches_patient_id_patients')),
    sa.ForeignKeyConstraint(['specification_id'], ['specifications.id'], name=op.f('fk_batches_specification_id_specifications')),
    sa.ForeignKeyConstraint(['transfer_from_id'], ['users.id'], name=op.f('fk_batches_transfer_from_id_users')),
    sa.ForeignKeyConstraint(['transfer_to_id'], ['users.id'], name=op.f('fk_batches_transfer_to_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('din', name=op.f('uq_batches_din'))
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index('ix_batches_clinic_status', ['clinic_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_batches_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_batches_status', ['status'], unique=False)

    op.create_table('batch_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=False),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('canonical', sa.Text(), nullable=False),
    sa.CheckConstraint('seq >= 1', name=op.f('ck_batch_events_seq_positive')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_batch_events_actor_id_users')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_events_batch_id_batches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_events')),
    sa.UniqueConstraint('batch_id', 'seq', name='uq_batch_events_batch_seq')
    )
    op.create_table('deviations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('opened_by_id', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_seq', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=8), nullable=True),
    sa.Column('justification', sa.Text(), nullable=True),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signature', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.CheckConstraint("kind IN ('qc_out_of_spec', 'temperature_excursion', 'seal_mismatch', 'damaged_container', 'custody_overdue', 'sterility_positive', 'manual')", name=op.f('ck_deviations_kind')),
    sa.CheckConstraint("status IN ('open', 'closed')", name=op.f('ck_deviations_status')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_deviations_batch_id_batches')),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_deviations_closed_by_id_users')),
    sa.ForeignKeyConstraint(['opened_by_id'], ['users.id'], name=op.f('fk_deviations_opened_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deviations'))
    )
    with op.batch_alter_table('deviations', schema=None) as batch_op:
        batch_op.create_index('ix_deviations_batch_status', ['batch_id', 'status'], unique=False)
        batch_op.create_index('ix_deviations_status', ['status'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('clinic_id', sa.Integer(), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f('ck_outbox_status')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_outbox_batch_id_batches')),
    sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_outbox_clinic_id_clinics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_status_next', ['status', 'next_attempt_at'], unique=False)


    _create_append_only_triggers()


APPEND_ONLY_TABLES = ("batch_events", "admin_events")


def _create_append_only_triggers() -> None:
    """R-AUD-2: the database itself refuses UPDATE and DELETE on event tables."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION labtrack_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'labtrack: % on % refused: event tables are append-only (R-AUD-2)',
                    TG_OP, TG_TABLE_NAME;
            END $$
            """
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()"
            )
        return
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'labtrack: {operation} on {table} refused: "
                "event tables are append-only (R-AUD-2)'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS labtrack_append_only()")
        return
    for table in APPEND_ONLY_TABLES:
        for operation in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status_next')

    op.drop_table('outbox')
    with op.batch_alter_table('deviations', schema=None) as batch_op:
        batch_op.drop_index('ix_deviations_status')
        batch_op.drop_index('ix_deviations_batch_status')

    op.drop_table('deviations')
    op.drop_table('batch_events')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('ix_batches_status')
        batch_op.drop_index(batch_op.f('ix_batches_patient_id'))
        batch_op.drop_index('ix_batches_clinic_status')

    op.drop_table('batches')
    op.drop_table('patients')
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_keys_created_at'))

    op.drop_table('idempotency_keys')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
    op.drop_table('users')
    op.drop_table('specifications')
    op.drop_table('reagent_lots')
    op.drop_table('equipment')
    op.drop_table('din_counters')
    op.drop_table('clinics')
    op.drop_table('admin_events')
