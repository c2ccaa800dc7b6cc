"""Lookback benchmark (§9 investigations): a lookback over 100,000 batches / 2,000,000 events in ≤ 1 s.

On PostgreSQL (``DATABASE_URL``), in a database of its own: 100,000 generated batches with 20
hash-chained events each (``datagen``), and their records of use spread over ten years as a lab
would make them: 100 collagenase lots of ~1,000 batches each, 4 incubators, 10 centrifuges and
10 technicians; every batch but the newest 50 administered. Then it times, each the median of
several runs:

- finding the affected batches for each kind of seed (a lot, a centrifuge over a day, a
  technician over 30 days, a batch) through ``batch_uses``;
- opening a whole lookback (find, hold the unadministered batches with a deviation each, the
  admin-chain event, each clinic's notice, commit) on the newest lot, the worst case (median of 3
  after a first opening; each holds the same batches again with deviations of its own);
- the floor: reading one batch by primary key on the same connection.

``python bench/lookback_bench.py [--quick]`` prints the figures as JSON (``--quick``: 10,000 batches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datagen  # noqa: E402
from outbox_bench import fresh_database  # noqa: E402
from sqlalchemy import select, text  # noqa: E402

from labtrack.db import Database  # noqa: E402
from labtrack.domain.actors import Actor  # noqa: E402
from labtrack.domain.investigations import SeedKind, Window  # noqa: E402
from labtrack.migrate import upgrade  # noqa: E402
from labtrack.models import Batch  # noqa: E402
from labtrack.services import auth, lookbacks, patients, reference, specifications  # noqa: E402
from labtrack.services.auth import actor_of  # noqa: E402

LOTS, INCUBATORS, CENTRIFUGES, TECHNICIANS = 100, 4, 10, 10
UNADMINISTERED = 50
YEARS = 10
RUNS = 7


def seed(db: Database) -> tuple[datagen.People, Actor, list[int]]:
    """Reference data through the services: clinic, users, lots and equipment."""
    auth.configure_hashing(1, 1024)

    def work(session):
        specifications.seed_defaults(session)
        system = reference.system_actor("bench")
        reference.create_clinic(session, system, code="C1", name="Bench clinic")
        clinic = reference.create_user(
            session, system, username="clinic", full_name="Clinic", role="clinic", password="bench-pass-1", clinic="C1"
        )
        qa = reference.create_user(session, system, username="qa", full_name="QA", role="qa", password="bench-pass-1")
        techs = [
            reference.create_user(
                session, system, username=f"tech{n}", full_name=f"Tech {n}", role="technician", password="bench-pass-1"
            )
            for n in range(TECHNICIANS)
        ]
        far = date.today() + timedelta(days=365)
        lot_ids = [
            reference.create_lot(
                session, system, kind="collagenase", name="Collagenase", lot_number=f"CG-{n:03d}", expires_on=far,
                status="released",
            ).id
            for n in range(LOTS)
        ]  # fmt: skip
        for code, kind in [(f"INC-{n}", "incubator") for n in range(INCUBATORS)] + [
            (f"CEN-{n}", "centrifuge") for n in range(CENTRIFUGES)
        ]:
            reference.create_equipment(
                session, system, code=code, kind=kind, name=code, calibration_due_on=far, status="in_service"
            )
        session.flush()
        patient = patients.register(
            session, actor_of(clinic), mrn="B-1", family_name="Doe", given_name="Jane", birth_date=date(1980, 5, 17)
        )
        spec = specifications.current(session, "adipose")
        people = datagen.People(patient.id, clinic.clinic_id, spec.id, (clinic.id, "clinic"), (techs[0].id, "tech0"))
        return people, actor_of(qa), lot_ids

    return db.write(work)


USES = """
WITH ordered AS (SELECT id, id - min(id) OVER () AS ord, count(*) OVER () AS n FROM batches)
INSERT INTO batch_uses (batch_id, seq, event_type, activity, occurred_at, reagent_lot_id, equipment_code, user_id)
SELECT e.batch_id, e.seq, e.type, 'step',
       now() - interval '{years} years' * (1 - o.ord::float / o.n) + e.seq * interval '1 minute',
       u.reagent_lot_id, u.equipment_code, u.user_id
FROM batch_events e
JOIN ordered o ON o.id = e.batch_id
CROSS JOIN LATERAL (VALUES
    (NULL::int, NULL::text, (SELECT id FROM users WHERE username = 'tech' || (o.ord % {techs}))),
    ((SELECT id FROM reagent_lots WHERE lot_number = 'CG-' || lpad((o.ord * {lots} / o.n)::text, 3, '0')), NULL, NULL),
    (NULL, CASE WHEN e.type = 'digestion' THEN 'INC-' || (o.ord % {incubators})
                ELSE 'CEN-' || (o.ord % {centrifuges}) END, NULL)
) AS u (reagent_lot_id, equipment_code, user_id)
WHERE e.type IN ('digestion', 'isolation', 'concentration') AND (u.reagent_lot_id IS NULL OR e.type = 'digestion')
"""


def fill_uses(db: Database) -> None:
    """The records of use of every generated step, ten years of them, and most batches administered."""
    statement = USES.format(years=YEARS, techs=TECHNICIANS, lots=LOTS, incubators=INCUBATORS, centrifuges=CENTRIFUGES)
    with db.engine.begin() as connection:
        connection.execute(text(statement))
        connection.execute(
            text("UPDATE batches SET status = 'administered' WHERE id <= (SELECT max(id) FROM batches) - :keep"),
            {"keep": UNADMINISTERED},
        )
    datagen.settle(db.engine)


def median_ms(work: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def measure(db: Database, qa: Actor, lot_ids: list[int]) -> dict[str, object]:
    session = db.reader()
    try:
        newest = session.execute(select(Batch.id, Batch.din).order_by(Batch.id.desc()).limit(1)).one()
        middle = session.execute(
            text("SELECT min(occurred_at) + (max(occurred_at) - min(occurred_at)) / 2 FROM batch_uses")
        ).scalar_one()
        seeds = {
            "reagent_lot": (SeedKind.REAGENT_LOT, str(lot_ids[LOTS // 2]), Window(None, None)),
            "equipment_one_day": (SeedKind.EQUIPMENT, "CEN-3", Window(middle, middle + timedelta(days=1))),
            "operator_30_days": (SeedKind.OPERATOR, "tech4", Window(middle, middle + timedelta(days=30))),
            "batch": (SeedKind.BATCH, newest.din, Window(None, None)),
        }
        found: dict[str, object] = {}
        for name, (kind, value, window) in seeds.items():
            seed = lookbacks.resolve_seed(session, kind, value)
            affected = lookbacks.find_affected(session, seed, window)
            found[name] = {
                "affected": len(affected),
                "ms": median_ms(lambda seed=seed, window=window: lookbacks.find_affected(session, seed, window)),
            }
        floor = median_ms(lambda: session.execute(select(Batch.din).where(Batch.id == newest.id)).scalar_one(), 50)
        for figures in found.values():
            figures["x_floor"] = round(figures["ms"] / floor, 1)
    finally:
        session.close()

    def open_whole() -> object:
        body = {"kind": "reagent_lot", "value": str(lot_ids[-1])}
        return db.write(lambda s: lookbacks.open_by_qa(s, qa, reason="bench", seed=body))

    opened = open_whole()  # each opening holds the same unadministered batches again, with a deviation of its own
    whole_ms = median_ms(open_whole, 3)
    return {
        "find_affected": found,
        "open_newest_lot": {
            "ms": whole_ms,
            "x_floor": round(whole_ms / floor, 1),
            "affected": len(opened.affected),
            "held": sum(1 for a in opened.affected if a.action == "held"),
        },
        "floor_pk_read_ms": floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 batches / 200,000 events")
    args = parser.parse_args()
    batches = 10_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory() as directory:
        url, drop = fresh_database(Path(directory))
        if not url.startswith("postgresql"):
            sys.exit("the lookback bench runs on PostgreSQL: set DATABASE_URL")
        try:
            upgrade(url)
            db = Database(url)
            people, qa, lot_ids = seed(db)
            started = time.perf_counter()
            datagen.generate(db.engine, people, batches, 20, 1)
            fill_uses(db)
            setup_s = round(time.perf_counter() - started, 1)
            with db.engine.connect() as connection:
                counts = {
                    table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("batches", "batch_events", "batch_uses")
                }
            results = {"rows": counts, "setup_s": setup_s} | measure(db, qa, lot_ids)
            results["bar"] = "≤ 1000 ms (§9)"
            results["within_bar"] = (
                max([results["open_newest_lot"]["ms"]] + [f["ms"] for f in results["find_affected"].values()]) <= 1000
            )
            print(json.dumps(results, indent=2, default=str))
            db.dispose()
        finally:
            drop()


if __name__ == "__main__":
    main()
