"""Migration 0007 fills the records of use from the events already recorded (R-LBK-1), on both databases."""

from __future__ import annotations

from alembic import command

from labtrack.migrate import alembic_config, upgrade
from tests.investigation_support import Batches

USES = (
    "SELECT b.din, u.seq, u.event_type, u.activity, u.reagent_lot_id, u.equipment_code, u.user_id, u.occurred_at "
    "FROM batch_uses u JOIN batches b ON b.id = u.batch_id ORDER BY b.din, u.seq, u.user_id, u.reagent_lot_id, "
    "u.equipment_code"
)


def test_r_lbk_1_migration_0007_backfills_every_use_from_the_events(lab, database_url):
    made = Batches(lab)
    made.awaiting_release()
    made.processed("bone_marrow")
    recorded = lab.sql(USES)
    assert {row.activity for row in recorded} == {"step", "qc_entry", "qc_verification"}
    lab.db.dispose()
    command.downgrade(alembic_config(database_url), "0006")  # the revision below 0007
    assert "batch_uses" not in {row[0] for row in lab.sql(
        "SELECT name FROM sqlite_master WHERE type = 'table'" if lab.db.is_sqlite else
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )}  # fmt: skip
    upgrade(database_url)
    assert lab.sql(USES) == recorded
