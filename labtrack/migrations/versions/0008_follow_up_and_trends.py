"""follow-up plans and visits, photo attachments, trend baselines and flags

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:45:00

Hand-written (issue 15). Plans are versioned per tissue source and approved by a
second person (``approved_by <> proposed_by``); visits are the projection of a
batch's ``follow_up_recorded`` events; attachments (photos, metadata stripped) and
trend baselines are facts made once, so the database refuses UPDATE and DELETE on
them as on the event tables (reusing 0001's ``labtrack_append_only()`` on PostgreSQL).
A trend flag is unique per chart, baseline, batch and rule: QA is told once.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIME = sa.DateTime(timezone=True)
TISSUES = "tissue_source IN ('adipose', 'bone_marrow')"
METRICS = "metric IN ('viability_pct', 'tnc_per_ml_harvested', 'endotoxin_eu_per_ml')"
APPEND_ONLY = ('attachments', 'trend_baselines')


def upgrade() -> None:
    op.create_table(
        'follow_up_plans',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('tissue_source', sa.String(16), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('body', JSON, nullable=False),
        sa.Column('status', sa.String(12), nullable=False),
        sa.Column('proposed_by', sa.String(64), nullable=False),
        sa.Column('proposed_at', TIME, nullable=False),
        sa.Column('approved_by', sa.String(64), nullable=True),
        sa.Column('approved_at', TIME, nullable=True),
        sa.Column('signature', JSON, nullable=True),
        sa.UniqueConstraint('tissue_source', 'version', name='uq_follow_up_plans_tissue_version'),
        sa.CheckConstraint(TISSUES, name='ck_follow_up_plans_tissue_source'),
        sa.CheckConstraint("status IN ('proposed', 'approved')", name='ck_follow_up_plans_status'),
        sa.CheckConstraint('version >= 1', name='ck_follow_up_plans_version_positive'),
        sa.CheckConstraint(
            'approved_by IS NULL OR approved_by <> proposed_by', name='ck_follow_up_plans_second_person'
        ),
    )
    op.create_table(
        'follow_up_visits',
        sa.Column('id', BIG_ID, primary_key=True),
        sa.Column('batch_id', BIG_ID, sa.ForeignKey('batches.id', name='fk_follow_up_visits_batch_id_batches'),
                  nullable=False),
        sa.Column('plan_id', sa.Integer(),
                  sa.ForeignKey('follow_up_plans.id', name='fk_follow_up_visits_plan_id_follow_up_plans'),
                  nullable=False),
        sa.Column('visit', sa.String(12), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('window_from', sa.Date(), nullable=False),
        sa.Column('window_to', sa.Date(), nullable=False),
        sa.Column('closes_on', sa.Date(), nullable=False),
        sa.Column('status', sa.String(8), nullable=False),
        sa.Column('measured_on', sa.Date(), nullable=True),
        sa.Column('measurement', JSON, nullable=True),
        sa.Column('late', sa.Boolean(), nullable=False),
        sa.Column('recorded_seq', sa.Integer(), nullable=True),
        sa.Column('recorded_by_id', sa.Integer(),
                  sa.ForeignKey('users.id', name='fk_follow_up_visits_recorded_by_id_users'), nullable=True),
        sa.Column('reminded_at', TIME, nullable=True),
        sa.Column('missed_at', TIME, nullable=True),
        sa.UniqueConstraint('batch_id', 'visit', name='uq_follow_up_visits_batch_visit'),
        sa.CheckConstraint("status IN ('due', 'done', 'missed')", name='ck_follow_up_visits_status'),
        sa.CheckConstraint('window_from <= window_to', name='ck_follow_up_visits_window_order'),
    )
    op.create_index('ix_follow_up_visits_status_due', 'follow_up_visits', ['status', 'due_on'])
    op.create_index('ix_follow_up_visits_status_closes', 'follow_up_visits', ['status', 'closes_on'])
    op.create_table(
        'attachments',
        sa.Column('id', BIG_ID, primary_key=True),
        sa.Column('batch_id', BIG_ID, sa.ForeignKey('batches.id', name='fk_attachments_batch_id_batches'),
                  nullable=False),
        sa.Column('sha256', sa.String(64), nullable=False),
        sa.Column('content_type', sa.String(16), nullable=False),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.Column('uploaded_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_attachments_uploaded_by_id_users'),
                  nullable=False),
        sa.Column('uploaded_at', TIME, nullable=False),
        sa.Column('event_seq', sa.Integer(), nullable=False),
        sa.CheckConstraint("content_type IN ('image/jpeg', 'image/png')", name='ck_attachments_content_type'),
        sa.CheckConstraint('length(sha256) = 64', name='ck_attachments_sha256_length'),
    )
    op.create_index('ix_attachments_batch', 'attachments', ['batch_id'])
    op.create_table(
        'trend_baselines',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('tissue_source', sa.String(16), nullable=False),
        sa.Column('metric', sa.String(24), nullable=False),
        sa.Column('starts_at', TIME, nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('signature', JSON, nullable=False),
        sa.Column('set_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_trend_baselines_set_by_id_users'),
                  nullable=False),
        sa.Column('set_at', TIME, nullable=False),
        sa.CheckConstraint(TISSUES, name='ck_trend_baselines_tissue_source'),
        sa.CheckConstraint(METRICS, name='ck_trend_baselines_metric'),
    )
    op.create_index('ix_trend_baselines_chart', 'trend_baselines', ['tissue_source', 'metric', 'id'])
    op.create_table(
        'trend_flags',
        sa.Column('id', BIG_ID, primary_key=True),
        sa.Column('tissue_source', sa.String(16), nullable=False),
        sa.Column('metric', sa.String(24), nullable=False),
        sa.Column('baseline_key', sa.Integer(), nullable=False),
        sa.Column('batch_id', BIG_ID, sa.ForeignKey('batches.id', name='fk_trend_flags_batch_id_batches'),
                  nullable=False),
        sa.Column('rule', sa.String(12), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('flagged_at', TIME, nullable=False),
        sa.UniqueConstraint('tissue_source', 'metric', 'baseline_key', 'batch_id', 'rule',
                            name='uq_trend_flags_point'),
        sa.CheckConstraint("rule IN ('nelson_1', 'nelson_2', 'nelson_3', 'nelson_4')", name='ck_trend_flags_rule'),
        sa.CheckConstraint(METRICS, name='ck_trend_flags_metric'),
    )
    _append_only(op.get_bind().dialect.name)


def _append_only(dialect: str) -> None:
    for table in APPEND_ONLY:
        if dialect == 'postgresql':
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()")
            continue
        for operation in ('UPDATE', 'DELETE'):
            op.execute(f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, 'labtrack: {operation} on {table} refused: "
                       "it is append-only (R-OUT-3, R-SPC-1)'); END")


def downgrade() -> None:
    for table in ('trend_flags', 'trend_baselines', 'attachments', 'follow_up_visits', 'follow_up_plans'):
        op.drop_table(table)
