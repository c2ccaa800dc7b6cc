"""The demo data's investigations (R-ADV-3, R-LBK-5): a closed reaction and an open lookback on a recalled lot."""

from __future__ import annotations

from sqlalchemy import text

from labtrack import demo
from tests.workers.test_watchers import chains_verify


def test_r_adv_3_r_lbk_5_demo_data_has_a_closed_reaction_and_an_open_lookback_on_a_recalled_lot(app, db):
    demo.load(db, app.config["LABTRACK_FIN"])
    with db.engine.connect() as connection:
        reactions = connection.execute(text("SELECT status, signature IS NOT NULL FROM adverse_reactions")).all()
        lot = connection.execute(text("SELECT status FROM reagent_lots WHERE lot_number = 'CG-2609'")).scalar_one()
        lookback = connection.execute(text("SELECT status, trigger, seed_kind FROM lookbacks")).one()
        told = connection.execute(text("SELECT acknowledged_at FROM lookback_clinics")).scalars().all()
    assert [tuple(row) for row in reactions] == [("closed", True)]
    assert lot == "recalled"
    assert tuple(lookback) == ("open", "recall", "reagent_lot")
    assert told == [None]  # the clinic has yet to acknowledge: the walkthrough's next step
    assert chains_verify(app, db).ok
