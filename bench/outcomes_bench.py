"""The trends page with 1,000 released batches: its drawing time and the web worker's memory (SPEC §9).

    .venv/bin/python bench/outcomes_bench.py [--batches 1000] [--rounds 5]

Builds a scratch SQLite database (the embedded deployment) with ``--batches`` released
adipose batches: projections, chained registration and harvest events and their QC
results, bulk-inserted. Then, in a fresh process that serves requests as a web worker
does (one app, the Flask test client, a QA user signed in through the login page):

- **drawing**: the trends page and the twelve SVG charts a browser then fetches, per
  round; the floor is a plain page of the same app (``/notifications``) in the same run,
  so the ratio says how much the charts cost over any page;
- **memory**: the process's VmRSS after start-up and one plain page (the floor), then
  after every round of charts, against the 150 MB bar of SPEC §9; and once the outcomes
  report has been drawn too (it loads numpy and scipy.stats, on first use only).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, select  # noqa: E402

from config import Config  # noqa: E402
from labtrack import create_app  # noqa: E402
from labtrack.domain.din import format_din  # noqa: E402
from labtrack.domain.hashing import GENESIS_HASH, canonical_body, chain, jsonable  # noqa: E402
from labtrack.domain.outcomes import fit_line  # noqa: E402
from labtrack.migrate import upgrade  # noqa: E402
from labtrack.models import Batch, BatchEvent, Clinic, QcResult, Specification, User  # noqa: E402
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


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


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


def measure(directory: Path, rounds: int) -> dict:
    """In this process, as a web worker: the floor page, then the trends page and its charts."""
    app = app_for(directory)
    client = app.test_client()
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    signed_in = client.post("/login", data={"username": "qa", "password": PASSWORD, "csrf_token": token})
    assert signed_in.status_code == 303, signed_in.text
    assert client.get("/notifications").status_code == 200
    rss_start = rss_mb()
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
            assert svg.mimetype == "image/svg+xml", chart
        drawing.append(time.perf_counter() - began)
        rss.append(rss_mb())
    # The outcomes report loads numpy and scipy.stats on first use: the worker's size once it has drawn it too.
    assert client.get("/outcomes").status_code == 200
    assert client.get("/outcomes/change.svg").status_code == 200
    fit_line([1.0, 2.0, 3.0, 4.0], [1.0, 2.5, 2.9, 4.2])  # the bench has no visits: what a report with some loads
    return {
        "rss_after_outcomes_report_mb": rss_mb(),
        "floor_page_s": statistics.median(floor),
        "trends_page_and_charts_s": statistics.median(drawing),
        "ratio_to_floor": statistics.median(drawing) / statistics.median(floor),
        "rss_after_start_mb": rss_start,
        "rss_with_charts_mb": max(rss),
        "rss_ratio_to_start": max(rss) / rss_start,
        "rss_bar_mb": RSS_BAR_MB,
        "within_bar": max(rss) < RSS_BAR_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.rounds)))
        return
    with tempfile.TemporaryDirectory(prefix="labtrack-outcomes-bench-") as folder:
        directory = Path(folder)
        began = time.perf_counter()
        build(directory, args.batches)
        print(f"built {args.batches} released batches in {time.perf_counter() - began:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(directory), "--rounds", str(args.rounds)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        figures = json.loads(child.stdout.strip().splitlines()[-1])
    figures["released_batches"] = args.batches
    for name, value in figures.items():
        print(f"{name:28} {value:.3f}" if isinstance(value, float) else f"{name:28} {value}")


if __name__ == "__main__":
    main()
