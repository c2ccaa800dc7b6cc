"""Scale benches (§9 amended, R-SCL-2, R-SCL-3): checkpoint creation with many streams of which few changed,
and incremental verification of new events over histories of two sizes.

    DATABASE_URL=postgresql://root@127.0.0.1/postgres .venv/bin/python bench/scale_bench.py \\
        [--streams 100000] [--changed 1000] [--history 1000000,20000000] [--new-events 100000]

Each figure runs in a scratch database of its own (created, migrated, seeded as ``bench/run.py`` does,
dropped at the end). Histories of 20,000,000 events are the long mode: about 20 minutes of generation
each on 2 cores. The load average before each measurement is printed with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import datagen
import run as bench_run
from outbox_bench import fresh_database
from psycopg.types.json import Jsonb
from sqlalchemy.orm import Session

from labtrack.audit import chains, checkpoints, keys, runs
from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.domain.hashing import canonical_body, chain, jsonable
from labtrack.migrate import upgrade
from labtrack.models import AuditVerification

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
        first = sign(bench, key)
        append(bench, changed, 1)
        before = load()
        seconds = sign(bench, key)
        return {"streams": streams + 1, "changed": changed, "first_s": round(first, 3), "seconds": round(seconds, 3),
                "bar_s": 1.0, "pass": seconds <= 1.0, "load_before": before}  # fmt: skip


def incremental_bench(history: int, new_events: int) -> dict[str, object]:
    key = keys.load_or_create(KEY_DIR)
    events_per_batch = 20
    with scratch(history // events_per_batch, events_per_batch) as bench:
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
        return {"history_events": history, "new_events": new_events, "seconds": round(seconds, 3),
                "events_checked": report.events_checked, "ok": report.ok, "load_before": before}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=1000)
    parser.add_argument("--history", default="1000000")
    parser.add_argument("--new-events", type=int, default=100_000)
    parser.add_argument("--only", default="checkpoint,incremental")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "checkpoint" in only:
        print("checkpoint:", checkpoint_bench(args.streams, args.changed), flush=True)
    if "incremental" in only:
        figures = [incremental_bench(int(size), args.new_events) for size in args.history.split(",")]
        for figure in figures:
            print("incremental:", figure, flush=True)
        if len(figures) == 2:
            ratio = figures[1]["seconds"] / figures[0]["seconds"]
            print(f"incremental ratio {ratio:.2f} (bar 1.2): {'PASS' if ratio <= 1.2 else 'FAIL'}")


if __name__ == "__main__":
    main()
