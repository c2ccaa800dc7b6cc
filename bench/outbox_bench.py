"""Outbox webhook delivery rate to a local receiver (requirements §9: at least 500 webhooks/s).

    .venv/bin/python bench/outbox_bench.py [--count 5000] [--concurrency 2]

Uses DATABASE_URL (a fresh database is created on that PostgreSQL server and dropped
afterwards) and CELERY_BROKER_URL when set, else a temporary SQLite database and the
embedded SQLite broker. A real ``celery -A workers worker`` delivers; the receiver is a
keep-alive HTTP server in this process that checks every HMAC signature. The clock runs
from the commit that writes the outbox rows (the after-commit requests go to the broker
then) to the receiver's last distinct delivery, so it includes the broker, the claims,
the in-app fan-out (two clinic users per row), the webhooks and the delivery log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config import Config  # noqa: E402
from labtrack import create_app  # noqa: E402
from labtrack.db import normalise_url  # noqa: E402
from labtrack.migrate import upgrade  # noqa: E402
from labtrack.models import OutboxMessage  # noqa: E402
from labtrack.services import batches, outbox, patients, reference, specifications  # noqa: E402
from labtrack.services.auth import actor_of  # noqa: E402
from tests.workers.conftest import drop_queue  # noqa: E402
from tests.workers.support import SECRET, Receiver, Worker, wait_until  # noqa: E402


def fresh_database(workdir: Path) -> tuple[str, callable]:
    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith("postgres"):
        return f"sqlite:///{workdir / 'bench.sqlite'}", lambda: None
    name = f"labtrack_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(normalise_url(server)), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(normalise_url(server)).set(database=name).render_as_string(hide_password=False), drop


def delivered_rows(db) -> int:
    session = db.reader()
    try:
        query = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "delivered")
        return session.execute(query).scalar_one()
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    url, drop = fresh_database(workdir)
    try:
        upgrade(url)
        config = Config.from_env(
            instance_path=workdir / "instance",
            DATABASE_URL=url,
            CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{workdir / 'broker.sqlite'}",
            SECRET_KEY="bench",
            ARGON2_TIME_COST=1,
            ARGON2_MEMORY_KIB=1024,
            LABTRACK_TASK_QUEUE=f"labtrack-bench-{uuid.uuid4().hex[:8]}",
        )
        app = create_app(config)
        db = app.extensions["labtrack.db"]
        with Receiver() as receiver:

            def setup(session) -> int:
                specifications.seed_defaults(session)
                system = reference.system_actor("bench")
                reference.create_clinic(
                    session, system, code="C1", name="Bench clinic", webhook_url=receiver.url, webhook_secret=SECRET
                )
                users = [
                    reference.create_user(
                        session,
                        system,
                        username=name,
                        full_name=name,
                        role="clinic",
                        password="bench-password",
                        clinic="C1",
                    )
                    for name in ("clinic", "clinic2")
                ]
                clinic_user = actor_of(users[0])
                patient = patients.register(
                    session, clinic_user, mrn="M1", family_name="Doe", given_name="Jane", birth_date=date(1980, 1, 1)
                )
                batch = batches.register(
                    session, clinic_user, facility="A9999", patient_id=patient.id, tissue_source="adipose"
                )
                return batch.id

            batch_id = db.write(setup)
            worker = Worker(app, workdir / "worker.log", concurrency=args.concurrency, beat=False)
            try:

                def burst(session) -> None:
                    batch = session.get(batches.Batch, batch_id)
                    for n in range(args.count):
                        outbox.enqueue(session, "batch.released", batch, {"conditional_release": False, "n": n})

                started = time.monotonic()
                with app.app_context():
                    db.write(burst)
                committed = time.monotonic()
                done = wait_until(lambda: len(receiver.accepted()) >= args.count, timeout=600, interval=0.02)
                elapsed = time.monotonic() - committed
                wait_until(lambda: delivered_rows(db) >= args.count, timeout=60, interval=0.05)
                recorded = time.monotonic() - committed
            finally:
                worker.stop()
            delivered = delivered_rows(db)
            bad_signatures = sum(1 for r in receiver.requests if not r["signature_ok"])
        rate = args.count / elapsed
        print(
            f"outbox webhook delivery: {args.count} rows in {elapsed:.2f} s = {rate:.0f} webhooks/s "
            f"(bar >= 500/s) | database {make_url(url).get_backend_name()}, broker "
            f"{config.CELERY_BROKER_URL.split(':')[0]}, {args.concurrency} worker process(es) | "
            f"writing the rows took {committed - started:.2f} s | requests {len(receiver.requests)}, "
            f"bad signatures {bad_signatures}, rows marked delivered {delivered} after {recorded:.2f} s"
            f"{'' if done else ' | TIMED OUT'}"
        )
        app.extensions["labtrack.db"].dispose()
        drop_queue(app)
    finally:
        drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
