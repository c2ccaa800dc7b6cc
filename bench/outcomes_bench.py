"""The trends page with 1,000 released batches: its drawing time, and a gunicorn web worker's memory (§9 bar).

    .venv/bin/python bench/outcomes_bench.py [--batches 1000] [--rounds 5] [--followed 300]

Builds a scratch SQLite database (the embedded deployment) with ``--batches`` released
adipose batches: projections, chained registration and harvest events and their QC
results, bulk-inserted; ``--followed`` of them administered, with a baseline, 3-, 6- and
12-month visit each. Then serves it as production does: ``gunicorn -c gunicorn.conf.py
wsgi:app`` with one worker, and one Celery worker (``celery -A workers worker``), which
computes the outcome statistics (scipy is loaded there, never in the web worker). A QA
user signs in through the login page over HTTP, and:

- **drawing**: per round, the trends page and the twelve SVG charts a browser then
  fetches; the floor is a plain page of the same server (``/notifications``) in the same
  run, so the ratio says how much the charts cost over any page;
- **memory**: the gunicorn worker's VmRSS after one plain page (the floor), after every
  round of charts, and after the outcomes page and its charts (statistics asked of the
  Celery worker and waited for), against the 150 MB bar; and whether the web worker
  has scipy mapped (``/proc/<pid>/maps``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, insert, select, update  # noqa: E402

from config import Config  # noqa: E402
from labtrack import create_app  # noqa: E402
from labtrack.domain import followup  # noqa: E402
from labtrack.domain.din import format_din  # noqa: E402
from labtrack.domain.hashing import GENESIS_HASH, canonical_body, chain, jsonable  # noqa: E402
from labtrack.migrate import upgrade  # noqa: E402
from labtrack.models import (  # noqa: E402
    Batch,
    BatchEvent,
    Clinic,
    FollowUpPlan,
    FollowUpVisit,
    QcResult,
    Specification,
    User,
)
from labtrack.services import patients, reference, specifications  # noqa: E402
from labtrack.services.auth import actor_of  # noqa: E402

PASSWORD = "bench-password-15"
RSS_BAR_MB = 150
CHARTS = [
    f"/qa/trends/{source}/{metric}.svg{part}"
    for source in ("adipose", "bone_marrow")
    for metric in ("viability_pct", "tnc_per_ml_harvested", "endotoxin_eu_per_ml")
    for part in ("", "?part=mr")
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def app_for(directory: Path):
    url = f"sqlite:///{directory / 'labtrack.sqlite'}"
    return create_app(
        Config.from_env(
            instance_path=directory / "instance",
            DATABASE_URL=url,
            CELERY_BROKER_URL=f"sqla+sqlite:///{directory / 'broker.sqlite'}",
            SECRET_KEY="bench",
            ARGON2_TIME_COST=1,
            ARGON2_MEMORY_KIB=1024,
        )
    )


def build(directory: Path, count: int) -> None:
    """Reference data through the services; the released batches in bulk."""
    url = f"sqlite:///{directory / 'labtrack.sqlite'}"
    upgrade(url)
    app = app_for(directory)
    database = app.extensions["labtrack.db"]

    def people(session):
        specifications.seed_defaults(session)
        system = reference.system_actor("bench")
        reference.create_clinic(session, system, code="C1", name="Clinic")
        for username, role, clinic in (("qa", "qa", None), ("tech", "technician", None), ("clinic", "clinic", "C1")):
            reference.create_user(
                session, system, username=username, full_name=username.title(), role=role, password=PASSWORD,
                clinic=clinic,
            )  # fmt: skip
        clinic_user = actor_of(reference.user_by_username(session, "clinic"))
        patients.register(
            session, clinic_user, mrn="B-1", family_name="Bench", given_name="B", birth_date=datetime(1980, 1, 1).date()
        )

    database.write(people)
    engine = create_engine(url)
    with engine.begin() as connection:
        clinic_id = connection.execute(select(Clinic.id)).scalar_one()
        spec_id = connection.execute(
            select(Specification.id).where(Specification.tissue_source == "adipose")
        ).scalar_one()
        tech_id, tech = connection.execute(select(User.id, User.username).where(User.username == "tech")).one()
        patient_id = connection.execute(select(Batch.patient_id).limit(1)).scalar() or 1
        rng = random.Random(15)
        start = datetime.now(UTC) - timedelta(days=count)
        batches, events, results = [], [], []
        for index in range(count):
            at = start + timedelta(days=index)
            din = format_din("A9998", at.year, index + 1).value
            head, seq = GENESIS_HASH, 0
            volume = round(rng.uniform(100, 220), 1)
            for kind, data in (
                ("registered", {"clinic": "C1", "tissue_source": "adipose", "product": "SVF"}),
                ("harvest", {"step": "harvest", "scanned_din": din, "values": {"volume_ml": volume}}),
            ):
                seq += 1
                canonical = canonical_body(
                    stream_key=din, seq=seq, type=kind, occurred_at=at, recorded_at=at, actor=tech, data=data
                )
                link = chain(head, canonical)
                events.append(
                    {"batch_id": index + 1, "seq": seq, "type": kind, "occurred_at": at, "recorded_at": at,
                     "actor_id": tech_id, "data": jsonable(data), "prev_hash": head, "hash": link.hash,
                     "canonical": link.canonical}
                )  # fmt: skip
                head = link.hash
            batches.append(
                {"id": index + 1, "din": din, "patient_id": patient_id, "clinic_id": clinic_id,
                 "tissue_source": "adipose", "product": "SVF", "specification_id": spec_id, "status": "released",
                 "held": False, "steps_done": ["harvest", "digestion", "isolation", "concentration"],
                 "released_at": at + timedelta(hours=5), "conditional_release": True, "registered_at": at,
                 "seq": seq, "head_hash": head}
            )  # fmt: skip
            for test, value, unit in (
                ("viability_pct", round(rng.gauss(89, 1.8), 1), "%"),
                ("tnc_total", round(rng.gauss(2.6e5, 0.4e5) * volume, -4), "cells"),
                ("endotoxin_eu_per_ml", round(max(0.05, rng.gauss(0.35, 0.08)), 2), "EU/mL"),
            ):
                results.append(
                    {"batch_id": index + 1, "test": test, "value": {"v": value}, "unit": unit, "within_spec": True,
                     "limit": "bench", "entered_by_id": tech_id, "entered_at": at, "entered_seq": seq,
                     "record_seq": seq, "record_hash": head, "corrected": False}
                )  # fmt: skip
        connection.execute(insert(Batch), batches)
        connection.execute(insert(BatchEvent), events)
        connection.execute(insert(QcResult), results)
    engine.dispose()


def followed(directory: Path, count: int) -> None:
    """The first ``count`` batches administered a day after release, with four visits each (hair density only)."""
    engine = create_engine(f"sqlite:///{directory / 'labtrack.sqlite'}")
    rng = random.Random(16)
    with engine.begin() as connection:
        plan = followup.default_plan()
        plan_id = connection.execute(
            insert(FollowUpPlan).returning(FollowUpPlan.id),
            {"tissue_source": "adipose", "version": 1, "body": plan, "status": "approved", "proposed_by": "system"},
        ).scalar_one()
        rows = connection.execute(select(Batch.id, Batch.released_at).order_by(Batch.id).limit(count)).all()
        visits = []
        for batch_id, released_at in rows:
            administered = released_at + timedelta(days=1)
            connection.execute(update(Batch).where(Batch.id == batch_id).values(last_physical_at=administered))
            baseline = rng.uniform(80, 140)
            for name, months in (("baseline", 0), ("m3", 3), ("m6", 6), ("m12", 12)):
                due = followup.add_months(administered.date(), months)
                density = baseline * (1 + months * rng.gauss(0.02, 0.01))
                visits.append(
                    {"batch_id": batch_id, "plan_id": plan_id, "visit": name, "due_on": due,
                     "window_from": due - timedelta(days=14), "window_to": due + timedelta(days=14),
                     "closes_on": due + timedelta(days=15), "status": "done", "measured_on": due,
                     "measurement": {"hair_density_per_cm2": round(density, 1)}, "late": False}
                )  # fmt: skip
        connection.execute(insert(FollowUpVisit), visits)
    engine.dispose()


def web_worker_pid(server: subprocess.Popen) -> int:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def maps_scipy(pid: int) -> bool:
    return "/scipy/" in Path(f"/proc/{pid}/maps").read_text()


def started(command: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool]) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return process
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"{command[1]} did not start; see {log}:\n{log.read_text()[-2000:]}")


def measure(directory: Path, rounds: int) -> dict:
    """Against a gunicorn worker and a Celery worker: the floor page, the trends page and its charts, outcomes."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": f"sqlite:///{directory / 'labtrack.sqlite'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{directory / 'broker.sqlite'}",
        "LABTRACK_INSTANCE_PATH": str(directory / "instance"),
        "LABTRACK_TASK_QUEUE": "labtrack-outcomes-bench",
        "SECRET_KEY": "bench",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PYTHONPATH": str(ROOT),
    }
    base = f"http://127.0.0.1:{port}"
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the app's JSON logging would print every request
    client = httpx.Client(base_url=base, timeout=120)

    def answers() -> bool:
        try:
            return client.get("/login").status_code == 200
        except httpx.HTTPError:
            return False

    web = started([str(ROOT / ".venv/bin/gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
                  env, directory / "gunicorn.log", answers)  # fmt: skip
    celery_log = directory / "celery.log"
    worker = started(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "--concurrency", "1", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
        env, celery_log, lambda: celery_log.exists() and b"ready." in celery_log.read_bytes(),
    )  # fmt: skip
    try:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        signed_in = client.post("/login", data={"username": "qa", "password": PASSWORD, "csrf_token": token})
        assert signed_in.status_code == 303, signed_in.text
        assert client.get("/notifications").status_code == 200
        pid = web_worker_pid(web)
        rss_start = rss_mb(pid)
        floor, drawing, rss = [], [], []
        for _ in range(rounds):
            began = time.perf_counter()
            assert client.get("/notifications").status_code == 200
            floor.append(time.perf_counter() - began)
            began = time.perf_counter()
            answer = client.get("/qa/trends")
            assert answer.status_code == 200
            assert "released batches" in answer.text
            for chart in CHARTS:
                svg = client.get(chart)
                assert svg.status_code == 200, chart
                assert svg.headers["content-type"].startswith("image/svg+xml"), chart
            drawing.append(time.perf_counter() - began)
            rss.append(rss_mb(pid))
        began = time.perf_counter()
        page = client.get("/outcomes")
        first_outcomes = time.perf_counter() - began
        assert page.status_code == 200
        deadline = time.monotonic() + 180
        while "95 % confidence interval of the mean" not in page.text:  # as the page's own reload does
            assert time.monotonic() < deadline, "the worker did not compute the statistics"
            time.sleep(5)
            page = client.get("/outcomes")
        computed_after = time.perf_counter() - began
        for chart in ("/outcomes/change.svg", "/outcomes/dose-adipose.svg"):
            assert client.get(chart).status_code == 200, chart
        began = time.perf_counter()
        assert client.get("/outcomes").status_code == 200  # the statistics are stored now
        again_outcomes = time.perf_counter() - began
        rss_outcomes = rss_mb(pid)
        return {
            "floor_page_s": statistics.median(floor),
            "trends_page_and_charts_s": statistics.median(drawing),
            "ratio_to_floor": statistics.median(drawing) / statistics.median(floor),
            "outcomes_page_first_s": first_outcomes,
            "outcomes_statistics_shown_after_s": computed_after,
            "outcomes_page_again_s": again_outcomes,
            "rss_after_start_mb": rss_start,
            "rss_with_charts_mb": max(rss),
            "rss_after_outcomes_mb": rss_outcomes,
            "rss_ratio_to_start": max(rss_outcomes, *rss) / rss_start,
            "rss_bar_mb": RSS_BAR_MB,
            "within_bar": max(rss_outcomes, *rss) < RSS_BAR_MB,
            "web_worker_maps_scipy": maps_scipy(pid),
        }
    finally:
        client.close()
        for process in (web, worker):
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--followed", type=int, default=300, help="batches administered, with four visits each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labtrack-outcomes-bench-") as folder:
        directory = Path(folder)
        began = time.perf_counter()
        build(directory, args.batches)
        followed(directory, min(args.followed, args.batches))
        print(f"built {args.batches} released batches in {time.perf_counter() - began:.1f} s")
        figures = measure(directory, args.rounds)
    figures["released_batches"] = args.batches
    figures["followed_up_batches"] = min(args.followed, args.batches)
    for name, value in figures.items():
        print(f"{name:28} {value:.3f}" if isinstance(value, float) else f"{name:28} {value}")


if __name__ == "__main__":
    main()
