"""scale: batch_events partitioned by batch_id, the checkpoint's current leaves and tree, verification runs, indexes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 16:00:00

Hand-written (issue 18).

- R-SCL-1, PostgreSQL only: ``batch_events`` becomes a table range-partitioned by
  ``batch_id``. The existing table is converted in place, not copied: it is renamed,
  checked to hold only batch ids below the current maximum + 1 (a CHECK constraint,
  validated by one scan, lets ``ATTACH`` skip its own) and attached as the first
  partition; its unique index on (batch_id, seq) and its foreign keys become the
  parent's. ``labtrack_extend_batch_events(upper, width)`` (SECURITY DEFINER, owned by
  the migrating role) makes further partitions of ``width`` batch ids until ``upper``
  is covered; the beat task ``labtrack.audit.partitions`` calls it. The append-only
  row trigger is the parent's and so every partition's, future ones too; each
  partition also gets its own TRUNCATE trigger. The application role gets no right on
  any partition (``labtrack.privileges``): it reaches the rows through the parent only.
  SQLite keeps one table. No other table references ``batch_events.id`` (tables that
  refer to an event use ``(batch_id, seq)``), so the primary key on ``id`` is dropped
  and ``id`` stays a sequence-numbered column.
- R-SCL-3: ``checkpoint_heads`` (each stream's leaf in the newest checkpoint, with its
  position in the sorted leaves) and ``checkpoint_nodes`` (every level of that
  checkpoint's Merkle tree), filled here from the newest checkpoint.
- R-SCL-2: ``audit_verifications``, the full verification runs with their progress.
- R-SCL-4: indexes behind the periodic queries (expiry and custody watchers, QA's
  held list, recent identity mismatches) and behind "events recorded since".
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
FIRST_WIDTH = 100_000  # batch ids in the first partition made ahead; the beat task sizes later ones by the month

EXTEND_FUNCTION = """
CREATE FUNCTION labtrack_extend_batch_events(upper_bound bigint, width bigint) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    top bigint;
    made integer := 0;
    part text;
BEGIN
    IF width < 100 OR width > 100000000 OR upper_bound < 1 THEN
        RAISE EXCEPTION 'labtrack: partition width % or bound % out of range', width, upper_bound;
    END IF;
    SELECT max((regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''?(-?\\d+)''?\\)'))[1]::bigint)
      INTO top
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'batch_events'::regclass;
    WHILE top < upper_bound AND made < 24 LOOP
        part := format('batch_events_from_%s', top);
        EXECUTE format('CREATE TABLE %I PARTITION OF batch_events FOR VALUES FROM (%s) TO (%s)', part, top, top + width);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()',
                       part || '_no_truncate', part);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC', part);
        top := top + width;
        made := made + 1;
    END LOOP;
    RETURN made;
END $$
"""


def _partition(bind) -> None:
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    op.execute("LOCK TABLE batch_events IN ACCESS EXCLUSIVE MODE")
    top = bind.execute(sa.text("SELECT coalesce(max(batch_id), 0) + 1 FROM batch_events")).scalar_one()
    op.execute("ALTER TABLE batch_events RENAME TO batch_events_legacy")
    op.execute("DROP TRIGGER batch_events_append_only ON batch_events_legacy")
    op.execute("ALTER TABLE batch_events_legacy RENAME CONSTRAINT uq_batch_events_batch_seq TO batch_events_legacy_batch_seq")
    op.execute("ALTER TABLE batch_events_legacy DROP CONSTRAINT pk_batch_events")
    for old in ('fk_batch_events_actor_id_users', 'fk_batch_events_batch_id_batches'):
        op.execute(f"ALTER TABLE batch_events_legacy RENAME CONSTRAINT {old} TO {old.replace('batch_events', 'batch_events_legacy', 1)}")
    op.execute(
        "CREATE TABLE batch_events (LIKE batch_events_legacy INCLUDING DEFAULTS INCLUDING STORAGE) "
        "PARTITION BY RANGE (batch_id)"
    )
    op.execute("ALTER SEQUENCE batch_events_id_seq OWNED BY batch_events.id")
    op.execute("ALTER TABLE batch_events ADD CONSTRAINT ck_batch_events_seq_positive CHECK (seq >= 1)")
    op.execute("ALTER TABLE batch_events ADD CONSTRAINT uq_batch_events_batch_seq UNIQUE (batch_id, seq)")
    op.execute(
        "ALTER TABLE batch_events ADD CONSTRAINT fk_batch_events_batch_id_batches "
        "FOREIGN KEY (batch_id) REFERENCES batches (id)"
    )
    op.execute(
        "ALTER TABLE batch_events ADD CONSTRAINT fk_batch_events_actor_id_users "
        "FOREIGN KEY (actor_id) REFERENCES users (id)"
    )
    op.execute(
        f"ALTER TABLE batch_events_legacy ADD CONSTRAINT batch_events_legacy_range CHECK (batch_id < {int(top)}) NOT VALID"
    )
    op.execute("ALTER TABLE batch_events_legacy VALIDATE CONSTRAINT batch_events_legacy_range")
    op.execute(f"ALTER TABLE batch_events ATTACH PARTITION batch_events_legacy FOR VALUES FROM (MINVALUE) TO ({int(top)})")
    op.execute("ALTER TABLE batch_events_legacy DROP CONSTRAINT batch_events_legacy_range")
    op.execute(
        "CREATE TRIGGER batch_events_append_only BEFORE UPDATE OR DELETE ON batch_events "
        "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()"
    )
    op.execute(
        "CREATE TRIGGER batch_events_no_truncate BEFORE TRUNCATE ON batch_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION labtrack_append_only()"
    )
    op.execute(EXTEND_FUNCTION.format(schema=schema))
    op.execute("REVOKE ALL ON FUNCTION labtrack_extend_batch_events(bigint, bigint) FROM PUBLIC")
    bind.execute(sa.text("SELECT labtrack_extend_batch_events(:upper, :width)"), {"upper": int(top) + 1, "width": FIRST_WIDTH})


def _unpartition(bind) -> None:
    op.execute("LOCK TABLE batch_events IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE batch_events DETACH PARTITION batch_events_legacy")
    op.execute("INSERT INTO batch_events_legacy SELECT * FROM batch_events")
    op.execute("ALTER SEQUENCE batch_events_id_seq OWNED BY NONE")
    op.execute("DROP TABLE batch_events CASCADE")
    op.execute("DROP FUNCTION labtrack_extend_batch_events(bigint, bigint)")
    op.execute("ALTER TABLE batch_events_legacy RENAME TO batch_events")
    op.execute("ALTER SEQUENCE batch_events_id_seq OWNED BY batch_events.id")
    op.execute("ALTER TABLE batch_events ADD CONSTRAINT pk_batch_events PRIMARY KEY (id)")
    op.execute("ALTER TABLE batch_events RENAME CONSTRAINT batch_events_legacy_batch_seq TO uq_batch_events_batch_seq")
    for old in ('fk_batch_events_actor_id_users', 'fk_batch_events_batch_id_batches'):
        op.execute(f"ALTER TABLE batch_events RENAME CONSTRAINT {old.replace('batch_events', 'batch_events_legacy', 1)} TO {old}")
    op.execute(
        "CREATE TRIGGER batch_events_append_only BEFORE UPDATE OR DELETE ON batch_events "
        "FOR EACH ROW EXECUTE FUNCTION labtrack_append_only()"
    )


def _fill_heads(bind) -> None:
    """The newest checkpoint's leaves and tree, as ``labtrack.audit.tree`` keeps them from now on."""
    from labtrack.audit import tree  # the same code that maintains them afterwards
    from labtrack.domain.merkle import Leaf

    latest = bind.execute(sa.text("SELECT id FROM checkpoints ORDER BY id DESC LIMIT 1")).scalar_one_or_none()
    if latest is None:
        return
    rows = bind.execute(
        sa.text(
            "SELECT l.stream, l.seq, l.hash FROM checkpoint_leaves l "
            "JOIN (SELECT stream, max(checkpoint_id) AS checkpoint_id FROM checkpoint_leaves "
            "      WHERE checkpoint_id <= :id GROUP BY stream) newest "
            "  ON newest.stream = l.stream AND newest.checkpoint_id = l.checkpoint_id"
        ),
        {"id": latest},
    ).all()
    tree.rebuild(bind, [Leaf(row.stream, row.seq, row.hash) for row in rows])


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table('checkpoint_heads',
    sa.Column('stream', sa.String(length=16), nullable=False),
    sa.Column('position', BIG_ID, nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('stream', name=op.f('pk_checkpoint_heads')),
    sa.UniqueConstraint('position', name='uq_checkpoint_heads_position'),
    )
    op.create_table('checkpoint_nodes',
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('idx', BIG_ID, nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('level', 'idx', name=op.f('pk_checkpoint_nodes')),
    )
    op.create_table('audit_verifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=True),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('batches_total', sa.Integer(), nullable=False),
    sa.Column('batches_done', sa.Integer(), nullable=False),
    sa.Column('events_done', BIG_ID, nullable=False),
    sa.Column('after_batch_id', BIG_ID, nullable=False),
    sa.Column('failures', sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('result', sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('full', 'incremental')", name=op.f('ck_audit_verifications_kind')),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoints.id'], name=op.f('fk_audit_verifications_checkpoint_id_checkpoints')),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_audit_verifications_status')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_audit_verifications_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_verifications')),
    )
    op.create_index('ix_audit_verifications_status', 'audit_verifications', ['status', 'id'])
    op.create_index('ix_audit_verifications_verified', 'audit_verifications', ['checkpoint_id'],
                    sqlite_where=sa.text("status = 'done' AND checkpoint_id IS NOT NULL"),
                    postgresql_where=sa.text("status = 'done' AND checkpoint_id IS NOT NULL"))
    if bind.dialect.name == 'postgresql':
        _partition(bind)
    with op.batch_alter_table('batches') as batch:
        batch.create_index('ix_batches_expires_at', ['expires_at'], sqlite_where=sa.text('expires_at IS NOT NULL'),
                           postgresql_where=sa.text('expires_at IS NOT NULL'))
        batch.create_index('ix_batches_transfer_at', ['transfer_at'], sqlite_where=sa.text('transfer_to_id IS NOT NULL'),
                           postgresql_where=sa.text('transfer_to_id IS NOT NULL'))
        batch.create_index('ix_batches_held', ['id'], sqlite_where=sa.text('held IS 1'),
                           postgresql_where=sa.text('held IS TRUE'))  # as Batch.held.is_(True) is spelled
        batch.create_index('ix_batches_registered_at', ['registered_at'])
    op.create_index('ix_batch_events_identity_mismatch', 'batch_events', ['id'],
                    sqlite_where=sa.text("type = 'identity_mismatch'"),
                    postgresql_where=sa.text("type = 'identity_mismatch'"))
    op.create_index('ix_batch_events_recorded_at', 'batch_events', ['recorded_at'])
    _fill_heads(bind)


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_index('ix_batch_events_recorded_at', table_name='batch_events')
    op.drop_index('ix_batch_events_identity_mismatch', table_name='batch_events')
    with op.batch_alter_table('batches') as batch:
        for name in ('ix_batches_registered_at', 'ix_batches_held', 'ix_batches_transfer_at', 'ix_batches_expires_at'):
            batch.drop_index(name)
    if bind.dialect.name == 'postgresql':
        _unpartition(bind)
    op.drop_index('ix_audit_verifications_verified', table_name='audit_verifications')
    op.drop_index('ix_audit_verifications_status', table_name='audit_verifications')
    for table in ('audit_verifications', 'checkpoint_nodes', 'checkpoint_heads'):
        op.drop_table(table)
