"""investigations: material and operator use, adverse reactions, lookbacks, recalled lots

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:40:00

Hand-written (issue 14). ``batch_uses`` records, for every process step, QC entry and QC
verification, which reagent lots, equipment items and operator it used, so a lookback
(R-LBK-1) is an index lookup, never a scan of event JSON. It names its event by
``(batch_id, seq)`` (no foreign key to ``batch_events.id``: that table may be partitioned by
batch). It is append-only like the events it mirrors, and is filled here from the events
already recorded: the one time event data is read for it. Reagent lots may now be
``recalled`` (R-LBK-5) and deviations be of kind ``lookback`` (R-LBK-2).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
STEPS = ('harvest', 'digestion', 'isolation', 'separation', 'concentration', 'administration')
ACTIVITY = {'qc_recorded': 'qc_entry', 'qc_verified': 'qc_verification'} | {step: 'step' for step in STEPS}
LOT_STATUSES_BEFORE = ('quarantined', 'released', 'rejected')
DEVIATION_KINDS_BEFORE = (
    'qc_out_of_spec', 'temperature_excursion', 'seal_mismatch', 'damaged_container', 'custody_overdue',
    'sterility_positive', 'manual',
)
BACKFILL_CHUNK = 5000


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(op.f(f'ck_{table}_{name}'), type_='check')
        batch_op.create_check_constraint(op.f(f'ck_{table}_{name}'), condition)


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()"
        )
        return
    for operation in ('UPDATE', 'DELETE'):
        op.execute(
            f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'labtrack: {operation} on {table} refused: "
            "records of use are append-only (R-AUD-2)'); END"
        )


def _create_tables() -> None:
    op.create_table(
        'batch_uses',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('batch_id', BIG_ID, nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('event_type', sa.String(length=40), nullable=False),
        sa.Column('activity', sa.String(length=16), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reagent_lot_id', sa.Integer(), nullable=True),
        sa.Column('equipment_code', sa.String(length=64), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.CheckConstraint(_in('activity', ('step', 'qc_entry', 'qc_verification')), name=op.f('ck_batch_uses_activity')),
        sa.CheckConstraint(
            '(CASE WHEN reagent_lot_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN equipment_code IS NULL THEN 0 ELSE 1 END)'
            ' + (CASE WHEN user_id IS NULL THEN 0 ELSE 1 END) = 1',
            name=op.f('ck_batch_uses_one_thing_used'),
        ),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_uses_batch_id_batches')),
        sa.ForeignKeyConstraint(
            ['reagent_lot_id'], ['reagent_lots.id'], name=op.f('fk_batch_uses_reagent_lot_id_reagent_lots')
        ),
        sa.ForeignKeyConstraint(['equipment_code'], ['equipment.code'], name=op.f('fk_batch_uses_equipment_code_equipment')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_batch_uses_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_uses')),
    )
    for name, columns, column in (
        ('ix_batch_uses_lot', ['reagent_lot_id', 'batch_id'], 'reagent_lot_id'),
        ('ix_batch_uses_equipment', ['equipment_code', 'occurred_at', 'batch_id'], 'equipment_code'),
        ('ix_batch_uses_user', ['user_id', 'occurred_at', 'batch_id'], 'user_id'),
    ):
        where = sa.text(f'{column} IS NOT NULL')
        op.create_index(name, 'batch_uses', columns, sqlite_where=where, postgresql_where=where)
    op.create_index('ix_batch_uses_batch', 'batch_uses', ['batch_id', 'seq'])

    op.create_table(
        'lookbacks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('seed_kind', sa.String(length=16), nullable=False),
        sa.Column('seed_value', sa.String(length=64), nullable=False),
        sa.Column('window_from', sa.DateTime(timezone=True), nullable=True),
        sa.Column('window_to', sa.DateTime(timezone=True), nullable=True),
        sa.Column('trigger', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=64), nullable=False),
        sa.Column('opened_by_id', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('opened_hash', sa.String(length=64), nullable=False),
        sa.Column('conclusion', sa.Text(), nullable=True),
        sa.Column('closed_by_id', sa.Integer(), nullable=True),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('signature', JSON, nullable=True),
        sa.CheckConstraint(
            _in('seed_kind', ('reagent_lot', 'equipment', 'operator', 'batch')), name=op.f('ck_lookbacks_seed_kind')
        ),
        sa.CheckConstraint(_in('trigger', ('qa', 'recall', 'adverse_reaction')), name=op.f('ck_lookbacks_trigger')),
        sa.CheckConstraint(_in('status', ('open', 'closed')), name=op.f('ck_lookbacks_status')),
        sa.ForeignKeyConstraint(['opened_by_id'], ['users.id'], name=op.f('fk_lookbacks_opened_by_id_users')),
        sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_lookbacks_closed_by_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_lookbacks')),
    )
    op.create_index('ix_lookbacks_status', 'lookbacks', ['status', 'id'])

    op.create_table(
        'lookback_batches',
        sa.Column('lookback_id', sa.Integer(), nullable=False),
        sa.Column('batch_id', BIG_ID, nullable=False),
        sa.Column('clinic_id', sa.Integer(), nullable=False),
        sa.Column('status_at_opening', sa.String(length=20), nullable=False),
        sa.Column('action', sa.String(length=12), nullable=False),
        sa.Column('deviation_id', sa.Integer(), nullable=True),
        sa.CheckConstraint(_in('action', ('held', 'follow_up', 'none')), name=op.f('ck_lookback_batches_action')),
        sa.ForeignKeyConstraint(
            ['lookback_id'], ['lookbacks.id'], name=op.f('fk_lookback_batches_lookback_id_lookbacks')
        ),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_lookback_batches_batch_id_batches')),
        sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_lookback_batches_clinic_id_clinics')),
        sa.ForeignKeyConstraint(
            ['deviation_id'], ['deviations.id'], name=op.f('fk_lookback_batches_deviation_id_deviations')
        ),
        sa.PrimaryKeyConstraint('lookback_id', 'batch_id', name=op.f('pk_lookback_batches')),
    )
    op.create_index('ix_lookback_batches_batch', 'lookback_batches', ['batch_id'])

    op.create_table(
        'lookback_clinics',
        sa.Column('lookback_id', sa.Integer(), nullable=False),
        sa.Column('clinic_id', sa.Integer(), nullable=False),
        sa.Column('notified_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
        sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['lookback_id'], ['lookbacks.id'], name=op.f('fk_lookback_clinics_lookback_id_lookbacks')
        ),
        sa.ForeignKeyConstraint(['clinic_id'], ['clinics.id'], name=op.f('fk_lookback_clinics_clinic_id_clinics')),
        sa.ForeignKeyConstraint(
            ['acknowledged_by_id'], ['users.id'], name=op.f('fk_lookback_clinics_acknowledged_by_id_users')
        ),
        sa.PrimaryKeyConstraint('lookback_id', 'clinic_id', name=op.f('pk_lookback_clinics')),
    )
    unanswered = sa.text('acknowledged_at IS NULL')
    op.create_index(
        'ix_lookback_clinics_unanswered', 'lookback_clinics', ['notified_at'],
        sqlite_where=unanswered, postgresql_where=unanswered,
    )
    op.create_index('ix_lookback_clinics_clinic', 'lookback_clinics', ['clinic_id', 'lookback_id'])

    op.create_table(
        'adverse_reactions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('batch_id', BIG_ID, nullable=False),
        sa.Column('reported_seq', sa.Integer(), nullable=False),
        sa.Column('reported_hash', sa.String(length=64), nullable=False),
        sa.Column('reported_by_id', sa.Integer(), nullable=False),
        sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('received_on', sa.Date(), nullable=False),
        sa.Column('onset_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('category', sa.String(length=32), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('fatal', sa.Boolean(), nullable=False),
        sa.Column('life_threatening', sa.Boolean(), nullable=False),
        sa.Column('permanent_impairment', sa.Boolean(), nullable=False),
        sa.Column('intervention_required', sa.Boolean(), nullable=False),
        sa.Column('communicable_disease_suspected', sa.Boolean(), nullable=False),
        sa.Column('serious', sa.Boolean(), nullable=False),
        sa.Column('reportable', sa.Boolean(), nullable=False),
        sa.Column('report_due_on', sa.Date(), nullable=True),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('lookback_id', sa.Integer(), nullable=True),
        sa.Column('due_warned_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('overdue_told_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('conclusion', sa.Text(), nullable=True),
        sa.Column('related_to_product', sa.String(length=8), nullable=True),
        sa.Column('reported_to_authority_on', sa.Date(), nullable=True),
        sa.Column('closed_by_id', sa.Integer(), nullable=True),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('closed_seq', sa.Integer(), nullable=True),
        sa.Column('signature', JSON, nullable=True),
        sa.CheckConstraint(
            _in('category', ('infection', 'allergic_reaction', 'injection_site_reaction', 'other')),
            name=op.f('ck_adverse_reactions_category'),
        ),
        sa.CheckConstraint(
            _in('outcome', ('recovered', 'recovering', 'not_recovered', 'fatal', 'unknown')),
            name=op.f('ck_adverse_reactions_outcome'),
        ),
        sa.CheckConstraint(_in('status', ('open', 'closed')), name=op.f('ck_adverse_reactions_status')),
        sa.CheckConstraint(
            'related_to_product IS NULL OR ' + _in('related_to_product', ('yes', 'no', 'unknown')),
            name=op.f('ck_adverse_reactions_related_to_product'),
        ),
        sa.CheckConstraint('reportable = false OR serious = true', name=op.f('ck_adverse_reactions_reportable_is_serious')),
        sa.CheckConstraint(
            '(report_due_on IS NOT NULL) = reportable', name=op.f('ck_adverse_reactions_due_when_reportable')
        ),
        sa.CheckConstraint(
            "status = 'open' OR reportable = false OR reported_to_authority_on IS NOT NULL",
            name=op.f('ck_adverse_reactions_reported_if_reportable'),
        ),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_adverse_reactions_batch_id_batches')),
        sa.ForeignKeyConstraint(
            ['reported_by_id'], ['users.id'], name=op.f('fk_adverse_reactions_reported_by_id_users')
        ),
        sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_adverse_reactions_closed_by_id_users')),
        sa.ForeignKeyConstraint(
            ['lookback_id'], ['lookbacks.id'], name=op.f('fk_adverse_reactions_lookback_id_lookbacks')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_adverse_reactions')),
    )
    op.create_index('ix_adverse_reactions_batch', 'adverse_reactions', ['batch_id'])
    op.create_index('ix_adverse_reactions_status_due', 'adverse_reactions', ['status', 'report_due_on'])


def _uses_of(batch_id: int, seq: int, type: str, occurred_at, actor_id: int, data: dict) -> list[dict]:
    base = {'batch_id': batch_id, 'seq': seq, 'event_type': type, 'activity': ACTIVITY[type], 'occurred_at': occurred_at}
    nothing = {'reagent_lot_id': None, 'equipment_code': None, 'user_id': None}
    rows = [base | nothing | {'user_id': actor_id}]
    rows += [base | nothing | {'reagent_lot_id': lot['id']} for lot in data.get('reagent_lots') or []]
    rows += [base | nothing | {'equipment_code': item['code']} for item in data.get('equipment') or []]
    return rows


def _backfill() -> None:
    """Every use already recorded, from the events' data, in chunks (the only read of event JSON for it)."""
    connection = op.get_bind()
    events = sa.table(
        'batch_events', sa.column('id'), sa.column('batch_id'), sa.column('seq'), sa.column('type'),
        sa.column('occurred_at', sa.DateTime(timezone=True)), sa.column('actor_id'), sa.column('data', JSON),
    )
    uses = sa.table(
        'batch_uses', sa.column('occurred_at', sa.DateTime(timezone=True)),
        *(sa.column(name) for name in (
            'batch_id', 'seq', 'event_type', 'activity', 'reagent_lot_id', 'equipment_code', 'user_id'
        )),
    )
    after = 0
    while True:
        chunk = connection.execute(
            sa.select(events.c.id, events.c.batch_id, events.c.seq, events.c.type, events.c.occurred_at,
                      events.c.actor_id, events.c.data)
            .where(events.c.id > after, events.c.type.in_(tuple(ACTIVITY)))
            .order_by(events.c.id)
            .limit(BACKFILL_CHUNK)
        ).all()
        if not chunk:
            return
        rows = [use for event in chunk for use in _uses_of(*event[1:])]
        connection.execute(sa.insert(uses), rows)
        after = chunk[-1].id


def upgrade() -> None:
    _replace_check('reagent_lots', 'status', _in('status', (*LOT_STATUSES_BEFORE, 'recalled')))
    _replace_check('deviations', 'kind', _in('kind', (*DEVIATION_KINDS_BEFORE, 'lookback')))
    _create_tables()
    _backfill()
    _append_only('batch_uses')


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    if postgres:
        op.execute('DROP TRIGGER IF EXISTS batch_uses_append_only ON batch_uses')
        op.execute('DROP TRIGGER IF EXISTS batch_uses_no_truncate ON batch_uses')
    else:
        for operation in ('update', 'delete'):
            op.execute(f'DROP TRIGGER IF EXISTS batch_uses_no_{operation}')
    for table in ('adverse_reactions', 'lookback_clinics', 'lookback_batches', 'lookbacks', 'batch_uses'):
        op.drop_table(table)
    _replace_check('deviations', 'kind', _in('kind', DEVIATION_KINDS_BEFORE))
    _replace_check('reagent_lots', 'status', _in('status', LOT_STATUSES_BEFORE))
