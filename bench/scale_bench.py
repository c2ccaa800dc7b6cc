"""Scale benches (§9 amended, R-SCL): a checkpoint over many streams of which few changed, incremental
verification of new events over histories of two sizes, and readiness, a batch record and a lookback at
20,000,000 events against 2,000,000.

    DATABASE_URL=postgresql://root@127.0.0.1/postgres .venv/bin/python bench/scale_bench.py \\
        [--streams 100000] [--changed 1000] [--new-events 100000]          # about 5 minutes
    DATABASE_URL=... CELERY_BROKER_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/scale_bench.py --long

The default runs the checkpoint bench and incremental verification over 1,000,000 events. ``--long``
adds the 20,000,000-event history: one database of 1,000,000 batches × 20 events is generated once
(about 30-40 minutes on 2 cores) next to one of 100,000 batches × 20; readiness (HTTP, served as
``bench/run.py`` serves it), the batch record (``audit.records.record_view``, in process) and the
lookback's finding (``lookbacks.find_affected`` for a lot, a centrifuge over a day, a technician over 30
days) are measured on the two in alternation, the plans of the technician's lookback are printed, then
incremental verification of 100,000 new events over 1,000,000 events and over the big history, in
alternation, twice (``incremental_pair``: the best of each, so both meet the same load). Every database
is a scratch one (created, migrated, seeded as ``bench/run.py`` does, dropped at the end). The load
average before each measurement is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import datagen
import run as bench_run
from outbox_bench import fresh_database
from psycopg.types.json import Jsonb
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from labtrack.audit import chains, checkpoints, keys, records, runs
from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.domain.hashing import canonical_body, chain, jsonable
from labtrack.domain.investigations import SeedKind, Window
from labtrack.migrate import upgrade
from labtrack.models import AuditVerification, User
from labtrack.services import auth, lookbacks, reference

KEY_DIR = Path("/tmp/labtrack-scale-bench-key")


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


@contextmanager
def scratch(streams: int, events_per_batch: int):
    """A migrated, seeded scratch database on DATABASE_URL's server with ``streams`` generated batches."""
    url, drop = fresh_database(Path("/tmp"))
    try:
        upgrade(url)
        bench = bench_run.Bench(url=url, db=Database(url), ports={})
        try:
            bench_run.seed(bench)
            datagen.generate(bench.db.engine, bench.people, streams, events_per_batch, 1)
            yield bench
        finally:
            bench.db.dispose()
    finally:
        drop()


def append(bench: bench_run.Bench, batches: int, events_each: int) -> None:
    """``events_each`` more label prints on each of the first ``batches`` batches, chained, recorded now."""
    connection = bench.db.engine.raw_connection()
    try:
        pg = connection.driver_connection
        with pg.cursor() as cursor:
            cursor.execute("SELECT id, din, seq, head_hash FROM batches ORDER BY id LIMIT %s", [batches])
            heads = cursor.fetchall()
            rows, projections = [], []
            now = utcnow()
            for batch_id, din, seq, prev in heads:
                for n in range(1, events_each + 1):
                    moment = now + timedelta(microseconds=n)
                    data = {"copy": seq + n}
                    body = canonical_body(stream_key=din, seq=seq + n, type="label_printed", occurred_at=moment,
                                          recorded_at=moment, actor="tech", data=data)  # fmt: skip
                    link = chain(prev, body)
                    rows.append((batch_id, seq + n, "label_printed", moment, moment, bench.people.tech[0],
                                 Jsonb(jsonable(data)), prev, link.hash, body))  # fmt: skip
                    prev = link.hash
                projections.append((seq + events_each, prev, batch_id))
            with cursor.copy(f"COPY batch_events ({datagen.EVENT_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.executemany("UPDATE batches SET seq = %s, head_hash = %s WHERE id = %s", projections)
        pg.commit()
    finally:
        connection.close()
    datagen.settle(bench.db.engine)


def sign(bench: bench_run.Bench, key) -> float:
    started = time.perf_counter()
    bench.db.write(lambda s: checkpoints.create(s, key, "A9999"))
    return time.perf_counter() - started


def checkpoint_bench(streams: int, changed: int) -> dict[str, object]:
    key = keys.load_or_create(KEY_DIR)
    with scratch(streams, 9) as bench:
        before_first = load()
        first = sign(bench, key)
        append(bench, changed, 1)
        before = load()
        seconds = sign(bench, key)
        return {"streams": streams + 1, "changed": changed, "first_s": round(first, 3),
                "load_before_first": before_first, "seconds": round(seconds, 3), "bar_s": 1.0,
                "pass": seconds <= 1.0, "load_before": before}  # fmt: skip


def incremental_on(bench: bench_run.Bench, new_events: int) -> dict[str, object]:
    """Incremental verification of ``new_events`` appended after a checkpoint that a run vouched for."""
    key = keys.load_or_create(KEY_DIR)
    sign(bench, key)
    checkpoint_id = bench.db.write(lambda s: checkpoints.latest(s).id)
    now = utcnow()
    vouched = AuditVerification(
        kind="incremental", status="done", requested_at=now, finished_at=now, batches_total=0, batches_done=0,
        events_done=0, after_batch_id=0, failures=[], result={"ok": True}, checkpoint_id=checkpoint_id,
    )  # fmt: skip
    bench.db.write(lambda s: s.add(vouched))
    # make the base older than the commit margin, as a checkpoint of 10 minutes ago would be
    with bench.db.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE checkpoints DISABLE TRIGGER USER")
        connection.exec_driver_sql("UPDATE checkpoints SET created_at = created_at - interval '1 hour'")
        connection.exec_driver_sql("ALTER TABLE checkpoints ENABLE TRIGGER USER")
    append(bench, new_events // 10, 10)
    before = load()
    with Session(bench.db.engine) as session:
        assert runs.verified_checkpoint(session).id == checkpoint_id
        started = time.perf_counter()
        report = chains.verify_recent(session, public_key=key.public_key)
        seconds = time.perf_counter() - started
    return {"history_events": bench_run.count_events(bench) - new_events, "new_events": new_events,
            "seconds": round(seconds, 3), "events_checked": report.events_checked, "ok": report.ok,
            "load_before": before}  # fmt: skip


def incremental_bench(history: int, new_events: int) -> dict[str, object]:
    events_per_batch = 20
    with scratch(history // events_per_batch, events_per_batch) as bench:
        return incremental_on(bench, new_events)


# --- the long mode: 20,000,000 events against 2,000,000 -----------------------------------------------------

EVENTS_PER_BATCH = 20
BATCHES_PER_LOT = 1000
CADENCE_MINUTES = 5  # one batch registered every 5 minutes: 1,000,000 batches are ~9.5 years

# Records of use as a lab makes them at a steady rate: a lot lasts 1,000 batches, every step on the one
# incubator or centrifuge by the one technician, the newest batch now and each older one 5 minutes before.
USES = """
WITH top AS (SELECT max(id) AS id FROM batches)
INSERT INTO batch_uses (batch_id, seq, event_type, activity, occurred_at, reagent_lot_id, equipment_code, user_id)
SELECT e.batch_id, e.seq, e.type, 'step',
       now() - (top.id - e.batch_id) * interval '{cadence} minutes' + e.seq * interval '1 minute',
       u.reagent_lot_id, u.equipment_code, u.user_id
FROM batch_events e CROSS JOIN top
CROSS JOIN LATERAL (VALUES
    (NULL::int, NULL::text, {tech}),
    ({first_lot} + ((e.batch_id - {first_batch}) / {per_lot})::int, NULL, NULL),
    (NULL, CASE WHEN e.type = 'digestion' THEN 'INC-1' ELSE 'CEN-1' END, NULL)
) AS u (reagent_lot_id, equipment_code, user_id)
WHERE e.type IN ('digestion', 'isolation', 'concentration') AND (u.reagent_lot_id IS NULL OR e.type = 'digestion')
"""


def history_database(batches: int, workdir: Path, port: int, broker: str, stack: ExitStack) -> bench_run.Bench:
    """A scratch database of ``batches`` generated batches with their records of use, one lot per 1,000
    batches, a checkpoint over every stream, and a LabTrack server on ``port``."""
    url, drop = fresh_database(workdir)
    stack.callback(drop)
    upgrade(url)
    bench = bench_run.Bench(url=url, db=Database(url), ports={"app": port})
    stack.callback(bench.db.dispose)
    bench_run.seed(bench)
    lots = -(-batches // BATCHES_PER_LOT)

    def make_lots(session) -> list[int]:
        system = reference.system_actor("bench")
        far = date.today() + timedelta(days=365)
        made = [
            reference.create_lot(session, system, kind="collagenase", name="Collagenase", lot_number=f"LB-{n:05d}",
                                 expires_on=far, status="released").id
            for n in range(lots)
        ]  # fmt: skip
        session.flush()
        return made

    lot_ids = bench.db.write(make_lots)
    began = time.perf_counter()
    datagen.generate(bench.db.engine, bench.people, batches, EVENTS_PER_BATCH, 1)
    generated = time.perf_counter() - began
    with bench.db.engine.begin() as connection:
        first_batch = connection.execute(text("SELECT min(id) FROM batches")).scalar_one()
        connection.execute(
            text(USES.format(cadence=CADENCE_MINUTES, tech=bench.people.tech[0], first_lot=lot_ids[0],
                             first_batch=first_batch, per_lot=BATCHES_PER_LOT))
        )  # fmt: skip
    datagen.settle(bench.db.engine)
    setup_s = time.perf_counter() - began
    bench.results["setup"] = {"batches": batches, "events": bench_run.count_events(bench),
                              "generate_s": round(generated, 1), "setup_s": round(setup_s, 1)}  # fmt: skip
    before = load()
    first = sign(bench, keys.load_or_create(KEY_DIR))
    bench.results["first_checkpoint"] = {"streams": batches + 1, "seconds": round(first, 2), "load_before": before}
    (workdir / str(port)).mkdir()
    bench_run.serve(bench, "app", "wsgi:app", workdir / str(port), broker)
    stack.callback(bench_run.stop_servers, bench)
    print(f"  history database {batches} batches: {bench.results}", flush=True)
    return bench


def _in_process(bench: bench_run.Bench, rng: random.Random, dins: list[str], count: int) -> dict[str, list[float]]:
    """One slice of in-process timings (ms): batch records of random batches, and the lookback's finding for a
    random lot, the centrifuge over one random day and the technician over 30 random days."""
    public_key = keys.load_or_create(KEY_DIR).public_key
    times: dict[str, list[float]] = {"record": [], "lookback_lot": [], "lookback_day": [], "lookback_30_days": []}
    with bench.db.engine.connect() as connection:
        span = connection.execute(text("SELECT min(occurred_at), max(occurred_at) FROM batch_uses")).one()
        lots = connection.execute(text("SELECT id FROM reagent_lots WHERE lot_number LIKE 'LB-%'")).scalars().all()
    session = bench.db.reader()
    try:
        qa = auth.actor_of(session.execute(select(User).where(User.username == "qa")).scalar_one())
        for _ in range(count):
            din = rng.choice(dins)
            started = time.perf_counter()
            records.record_view(session, qa, din, zone="UTC", public_key=public_key)
            times["record"].append((time.perf_counter() - started) * 1000)
            session.rollback()
        day = span[0] + (span[1] - span[0] - timedelta(days=31)) * rng.random()
        for name, kind, value, window in (
            ("lookback_lot", SeedKind.REAGENT_LOT, str(rng.choice(lots)), Window(None, None)),
            ("lookback_day", SeedKind.EQUIPMENT, "CEN-1", Window(day, day + timedelta(days=1))),
            ("lookback_30_days", SeedKind.OPERATOR, "tech", Window(day, day + timedelta(days=30))),
        ):
            seed = lookbacks.resolve_seed(session, kind, value)
            started = time.perf_counter()
            lookbacks.find_affected(session, seed, window)
            times[name].append((time.perf_counter() - started) * 1000)
            session.rollback()
    finally:
        session.close()
    return times


def explain_lookback(bench: bench_run.Bench, rng: random.Random) -> list[str]:
    """The plan, with timings and buffers, of each statement the technician's 30-day lookback runs: where its
    time goes at each size."""
    statements: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    with bench.db.engine.connect() as connection:
        span = connection.execute(text("SELECT min(occurred_at), max(occurred_at) FROM batch_uses")).one()
    day = span[0] + (span[1] - span[0] - timedelta(days=31)) * rng.random()
    session = bench.db.reader()
    event.listen(bench.db.engine, "before_cursor_execute", record)
    try:
        seed = lookbacks.resolve_seed(session, SeedKind.OPERATOR, "tech")
        statements.clear()
        lookbacks.find_affected(session, seed, Window(day, day + timedelta(days=30)))
    finally:
        event.remove(bench.db.engine, "before_cursor_execute", record)
        session.close()
    plans = []
    with bench.db.engine.connect() as connection:
        for statement, parameters in statements:
            rows = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).scalars()
            plans.append("\n".join(rows))
    return plans


def _p(values: list[float], percentile: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * percentile / 100))], 2)


def history_bench(
    small_batches: int, big_batches: int, new_events: int, broker: str, requests: int = 2000
) -> dict[str, object]:
    """Readiness, the batch record and the lookback on two histories in alternation; then incremental
    verification on the big one."""
    base = 19000 + random.randrange(500) * 2
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="labtrack-scale-"))
        stack.callback(shutil.rmtree, workdir, True)
        benches = {
            "small": history_database(small_batches, workdir, base, broker, stack),
            "big": history_database(big_batches, workdir, base + 1, broker, stack),
        }
        before = load()
        readiness = bench_run.measure_readiness(benches, requests)
        rng = random.Random(11)
        dins = {name: bench_run.generated_dins(bench) for name, bench in benches.items()}
        timings: dict[str, dict[str, list[float]]] = {name: {} for name in benches}
        for _ in range(10):
            for name, bench in benches.items():
                for kind, values in _in_process(bench, rng, dins[name], requests // 100).items():
                    timings[name].setdefault(kind, []).extend(values)
        figures: dict[str, object] = {"load_before": before, "load_after": load()}
        for name, bench in benches.items():
            figures[f"lookback_30_days_plan_{name}"] = explain_lookback(bench, rng)
            print(f"lookback plan, {name}:", *figures[f"lookback_30_days_plan_{name}"], sep="\n", flush=True)
        for name, bench in benches.items():
            figures[name] = bench.results | {"readiness": readiness[name]} | {
                kind: {"p50_ms": _p(values, 50), "p99_ms": _p(values, 99), "n": len(values)}
                for kind, values in timings[name].items()
            }  # fmt: skip
        figures["ratios"] = {
            "readiness_p99": round(readiness["big"]["p99_ms"] / readiness["small"]["p99_ms"], 2),
            **{
                f"{kind}_p50": round(_p(timings["big"][kind], 50) / _p(timings["small"][kind], 50), 2)
                for kind in timings["big"]
            },
            **{
                f"{kind}_p99": round(_p(timings["big"][kind], 99) / _p(timings["small"][kind], 99), 2)
                for kind in timings["big"]
            },
        }
        print("history:", figures, flush=True)
        bench_run.stop_servers(benches["small"])
        bench_run.stop_servers(benches["big"])
        figures["incremental"] = incremental_pair(benches["big"], new_events)
        return figures


def incremental_pair(big: bench_run.Bench, new_events: int, rounds: int = 2) -> dict[str, object]:
    """Incremental verification of ``new_events`` over 1,000,000 events and over the big history, in
    alternation (each round appends its new events), so that both meet the same machine; the best of each."""
    runs: dict[str, list[dict[str, object]]] = {"1m": [], "20m": []}
    with scratch(1_000_000 // 20, 20) as one_million:
        for _ in range(rounds):
            runs["1m"].append(incremental_on(one_million, new_events))
            runs["20m"].append(incremental_on(big, new_events))
    best = {name: min(figures, key=lambda f: float(f["seconds"])) for name, figures in runs.items()}
    ratio = round(float(best["20m"]["seconds"]) / float(best["1m"]["seconds"]), 2)
    return {"rounds": runs, "best_1m": best["1m"], "best_20m": best["20m"], "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=1000)
    parser.add_argument("--new-events", type=int, default=100_000)
    parser.add_argument("--long", action="store_true", help="add the 20,000,000-event history (30-40 minutes)")
    parser.add_argument("--only", default="checkpoint,incremental,history")
    args = parser.parse_args()
    only = set(args.only.split(","))
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or (args.long and not broker.startswith("redis")):
        sys.exit("bench/scale_bench.py needs DATABASE_URL (PostgreSQL), and with --long CELERY_BROKER_URL (Redis)")
    print(
        f"scale bench: {os.cpu_count()} cores, load {load()}, at {utcnow().isoformat(timespec='seconds')}", flush=True
    )
    figures: dict[str, object] = {}
    if "checkpoint" in only:
        figures["checkpoint"] = checkpoint_bench(args.streams, args.changed)
        print("checkpoint:", figures["checkpoint"], flush=True)
    if "incremental" in only:
        figures["incremental_1m"] = incremental_bench(1_000_000, args.new_events)
        print("incremental over 1M:", figures["incremental_1m"], flush=True)
    if args.long and "history" in only:
        figures["history"] = history_bench(100_000, 1_000_000, args.new_events, broker)
        pair = figures["history"]["incremental"]
        print("incremental over 1M and 20M, in alternation:", pair, flush=True)
        ratio = pair["ratio"]
        print(f"incremental 20M / 1M: {ratio:.2f} (bar 1.2): {'PASS' if ratio <= 1.2 else 'FAIL'}", flush=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{utcnow().isoformat(timespec='seconds').replace(':', '')}-scale{'-long' if args.long else ''}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(f"done at {utcnow().isoformat(timespec='seconds')}, load {load()} -> {path}", flush=True)


if __name__ == "__main__":
    main()
