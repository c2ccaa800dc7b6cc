"""LabTrack against the quality bars of requirements §9, each as a ratio to a floor measured in the same run.

    DATABASE_URL=postgresql://root@127.0.0.1/postgres CELERY_BROKER_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/run.py [--quick] [--only steps,serial,reads,readiness,audit,outbox]

Creates a scratch database on DATABASE_URL's server (dropped at the end), migrates and
seeds it through the services, serves LabTrack and the floor app (bench/floor_app.py)
with the production configuration (``gunicorn -c gunicorn.conf.py``), runs every
benchmark, prints each figure with its floor and ratio, and writes
bench/results/<timestamp>.json. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datagen  # noqa: E402
import load  # noqa: E402
from floor_app import CREATE_TABLE  # noqa: E402
from outbox_bench import fresh_database  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from config import Config  # noqa: E402
from labtrack import create_app  # noqa: E402
from labtrack.audit import chains, keys  # noqa: E402
from labtrack.db import Database  # noqa: E402
from labtrack.domain.actors import Actor, Role  # noqa: E402
from labtrack.domain.hashing import link_hash  # noqa: E402
from labtrack.domain.process import TissueSource  # noqa: E402
from labtrack.migrate import upgrade  # noqa: E402
from labtrack.services import auth, batches, custody, patients, reference, specifications, steps  # noqa: E402
from labtrack.services.auth import actor_of  # noqa: E402

PASSWORD = "bench-password-1"
FIN = "A9999"
LAB_STEPS = {
    "digestion": {"data": {"duration_min": 45, "temperature_c": 37}, "equipment": ["INC-1"]},
    "isolation": {"data": {"g_force": 400, "duration_min": 10}, "equipment": ["CEN-1"]},
    "concentration": {"data": {"final_volume_ml": 8}, "equipment": ["CEN-1"]},
}
CLIENT_LEVELS = (1, 4, 16)
STEP_RATE_CEILING = 450  # steps/s; well above what 2 cores sustain today (the run reports running out)


@dataclass
class Profile:
    seconds: float  # per measured load level
    small_batches: int
    big_batches: int
    events_per_batch: int
    audit_events: int
    readiness_requests: int
    outbox_count: int
    outbox_timeout: float


QUICK = Profile(
    seconds=4, small_batches=1_000, big_batches=10_000, events_per_batch=20, audit_events=100_000,
    readiness_requests=400, outbox_count=2_000, outbox_timeout=30,
)  # fmt: skip
FULL = Profile(
    seconds=15, small_batches=1_000, big_batches=100_000, events_per_batch=20, audit_events=1_000_000,
    readiness_requests=3_000, outbox_count=5_000, outbox_timeout=180,
)  # fmt: skip


@dataclass
class Bench:
    url: str
    db: Database
    ports: dict[str, int]
    tokens: dict[str, str] = field(default_factory=dict)
    lot_id: int = 0
    people: datagen.People | None = None
    results: dict[str, Any] = field(default_factory=dict)
    servers: dict[str, subprocess.Popen] = field(default_factory=dict)
    rss_samples: list[float] = field(default_factory=list)

    def bearer(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}


# --- setup --------------------------------------------------------------------------------------------


def seed(bench: Bench) -> None:
    """Reference data through the services, and bearer tokens issued as POST /auth/token issues them."""
    auth.configure_hashing(1, 1024)  # seeding speed only: stored hashes carry their own parameters

    def work(session) -> None:
        specifications.seed_defaults(session)
        system = reference.system_actor("bench")
        reference.create_clinic(session, system, code="C1", name="Bench clinic")
        users = {
            name: reference.create_user(
                session, system, username=name, full_name=name.title(), role=role, password=PASSWORD, clinic=clinic
            )
            for name, role, clinic in (("tech", "technician", None), ("qa", "qa", None), ("clinic", "clinic", "C1"))
        }
        today = date.today()
        bench.lot_id = reference.create_lot(
            session, system, kind="collagenase", name="Collagenase", lot_number="CG-B",
            expires_on=today + timedelta(days=90), status="released",
        ).id  # fmt: skip
        for code, kind in (("INC-1", "incubator"), ("CEN-1", "centrifuge")):
            reference.create_equipment(
                session, system, code=code, kind=kind, name=code,
                calibration_due_on=today + timedelta(days=30), status="in_service",
            )  # fmt: skip
        session.flush()
        patient = patients.register(
            session, actor_of(users["clinic"]), mrn="B-1", family_name="Doe", given_name="Jane",
            birth_date=date(1980, 5, 17),
        )  # fmt: skip
        for name in users:
            bench.tokens[name] = auth.issue_token(session, name, PASSWORD, timedelta(hours=12))[0]
        spec = specifications.current(session, TissueSource.ADIPOSE)
        bench.people = datagen.People(
            patient_id=patient.id,
            clinic_id=users["clinic"].clinic_id,
            specification_id=spec.id,
            clinic_user=(users["clinic"].id, "clinic"),
            tech=(users["tech"].id, "tech"),
        )

    bench.db.write(work)
    with bench.db.engine.begin() as connection:
        connection.execute(text(CREATE_TABLE))


def received_batches(bench: Bench, count: int) -> list[str]:
    """Batches registered, harvested, handed to ``tech`` and received, through the services, 25 per commit."""
    people = bench.people
    clinic = Actor(id=people.clinic_user[0], username="clinic", full_name="Clinic", role=Role.CLINIC,
                        clinic_id=people.clinic_id)  # fmt: skip
    tech = Actor(id=people.tech[0], username="tech", full_name="Tech", role=Role.TECHNICIAN, clinic_id=None)
    dins: list[str] = []

    def some(session, n: int) -> list[str]:
        made = []
        for _ in range(n):
            din = batches.register(
                session, clinic, facility=FIN, patient_id=people.patient_id, tissue_source="adipose"
            ).din
            ended = datetime.now(UTC) - timedelta(minutes=30)
            harvest = {
                "patient_mrn": "B-1", "patient_birth_date": "1980-05-17", "weight_kg": 80, "volume_ml": 150,
                "site": "abdomen", "started_at": (ended - timedelta(minutes=40)).isoformat(),
                "ended_at": ended.isoformat(),
            }  # fmt: skip
            steps.log_step(session, clinic, din, step="harvest", scanned_din=din, data=harvest)
            custody.handoff(session, clinic, din, scanned_din=din, to_username="tech", seal_id="S1", temperature_c=6)
            custody.receipt(session, tech, din, scanned_din=din, seal_id="S1", temperature_c=6, condition="intact")
            made.append(din)
        return made

    while len(dins) < count:
        n = min(25, count - len(dins))
        dins += bench.db.write(lambda session, n=n: some(session, n))
    return dins


def serve(bench: Bench, name: str, target: str, workdir: Path, broker: str) -> None:
    env = os.environ | {
        "DATABASE_URL": bench.url,
        "CELERY_BROKER_URL": broker,
        "LABTRACK_INSTANCE_PATH": str(workdir / f"instance-{name}"),
        "LABTRACK_TASK_QUEUE": f"labtrack-bench-{workdir.name}",
        "SECRET_KEY": "bench",
        "PORT": str(bench.ports[name]),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}",
    }
    log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the server
    bench.servers[name] = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), target],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            load.one(bench.ports[name], "GET", "/")
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{name} server did not start; see {workdir / f'{name}.log'}")


def worker_rss_mb(server: subprocess.Popen) -> list[float]:
    """VmRSS of each gunicorn worker (the master's children)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    sizes = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        if match:
            sizes.append(int(match.group(1)) / 1024)
    return sizes


def stop_servers(bench: Bench, *names: str) -> None:
    """Stop the named servers (all of them by default)."""
    servers = [bench.servers.pop(name) for name in names or list(bench.servers)]
    for server in servers:
        server.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


# --- benchmarks -----------------------------------------------------------------------------------------


class SharedDins:
    """One level's batches, handed out one at a time to whichever client asks next (thread-safe).

    Fixed shares ran out unevenly: gunicorn does not spread keep-alive connections evenly
    over its workers, so a client served alone by a worker went several times faster.
    """

    def __init__(self, dins: list[str]) -> None:
        self._dins = iter(dins)
        self._lock = threading.Lock()

    def __iter__(self) -> SharedDins:
        return self

    def __next__(self) -> str:
        with self._lock:
            return next(self._dins)


def step_requests(bench: Bench, dins: Iterable[str]) -> Iterator[load.Request]:
    headers = bench.bearer("tech")
    for din in dins:
        for name, body in LAB_STEPS.items():
            extra = {"reagent_lots": [bench.lot_id]} if name == "digestion" else {}
            yield "POST", f"/api/v1/batches/{din}/steps", {"step": name, "scanned_din": din} | body | extra, headers


def floor_requests(bench: Bench) -> Iterator[load.Request]:
    body = {"step": "isolation", "scanned_din": "A999926000001"} | LAB_STEPS["isolation"]
    while True:
        yield "POST", "/floor", body, {}


def ratio(measured: float, floor: float) -> float:
    return round(measured / floor, 3) if floor else float("nan")


def level_pool(profile: Profile, clients: int) -> int:
    """Batches one load level may need: 3 steps each at up to STEP_RATE_CEILING/s, plus one per client to warm up."""
    return int(profile.seconds * STEP_RATE_CEILING / 3) + 2 * clients


def bench_steps(bench: Bench, profile: Profile, pool: list[str]) -> None:
    levels = []
    for clients in CLIENT_LEVELS:
        floor = load.run(bench.ports["floor"], [floor_requests(bench) for _ in range(clients)], profile.seconds)
        shared = SharedDins(pool[: level_pool(profile, clients)])
        del pool[: level_pool(profile, clients)]
        sampler = Sampler(lambda: worker_rss_mb(bench.servers["app"]), 0.25)
        app = load.run(bench.ports["app"], [step_requests(bench, shared) for _ in range(clients)], profile.seconds)
        bench.rss_samples.extend(sampler.stop())
        entry = {
            "clients": clients,
            "floor": floor.summary(),
            "app": app.summary(),
            "rate_ratio": ratio(app.rate, floor.rate),
            "p99_ratio": ratio(app.percentile(99), floor.percentile(99)),
        }
        entry["pass"] = entry["rate_ratio"] >= 0.6 and entry["p99_ratio"] <= 2 and set(app.statuses) == {201}
        levels.append(entry)
        print(
            f"  steps x{clients:<2}: app {app.rate:7.1f}/s p50 {app.percentile(50) * 1e3:6.1f} ms "
            f"p99 {app.percentile(99) * 1e3:6.1f} ms | floor {floor.rate:7.1f}/s p99 {floor.percentile(99) * 1e3:6.1f} "
            f"ms | rate x{entry['rate_ratio']} (>= 0.6) p99 x{entry['p99_ratio']} (<= 2) | statuses "
            f"{dict(app.statuses)}{' | CLIENTS RAN OUT OF BATCHES' if app.exhausted else ''} "
            f"-> {'PASS' if entry['pass'] else 'FAIL'}",
            flush=True,
        )
    bench.results["step_logging"] = {"levels": levels, "pass": all(level["pass"] for level in levels)}
    # Throughput must not fall as clients are added (§9): the step rate at 16 clients against 1 client.
    one, sixteen = levels[0]["app"]["rate_per_s"], levels[-1]["app"]["rate_per_s"]
    floor_one, floor_sixteen = levels[0]["floor"]["rate_per_s"], levels[-1]["floor"]["rate_per_s"]
    scaling = {"one_client": one, "sixteen_clients": sixteen, "ratio": ratio(sixteen, one)}
    scaling |= {"floor_ratio": ratio(floor_sixteen, floor_one), "pass": sixteen >= one}
    bench.results["step_scaling"] = scaling
    print(
        f"  steps x16 vs x1: {sixteen:.1f}/s vs {one:.1f}/s = x{scaling['ratio']} (>= 1) | the floor's: "
        f"x{scaling['floor_ratio']} -> {'PASS' if scaling['pass'] else 'FAIL'}",
        flush=True,
    )


READ_CLIENTS = 4


def read_requests(keys: list, path: str, headers: dict[str, str], seed: int) -> Iterator[load.Request]:
    """``GET path`` (``{key}`` filled in with one of ``keys``, at random), forever."""
    rng = random.Random(seed)
    while True:
        yield "GET", path.format(key=rng.choice(keys)), None, headers


def bench_reads(bench: Bench, profile: Profile, dins: list[str]) -> None:
    """Readiness and a batch's detail GET against a bare authenticated primary-key read (the floor app), 4 clients.

    The cost of a request is the inverse of the throughput a closed loop of 4 clients sustains; each
    side runs twice, in alternation (floor, readiness, detail, floor, readiness, detail), and the
    two halves are summed, so that the machine's drift falls on all three alike.
    """
    with bench.db.engine.connect() as connection:
        ids = connection.execute(text("SELECT id FROM batches WHERE din = ANY(:dins)"), {"dins": dins}).scalars().all()
    sides = {  # name: server, keys, path, user
        "floor": ("floor", ids, "/floor/batches/{key}", "clinic"),
        "readiness": ("app", dins, "/api/v1/batches/{key}/readiness", "clinic"),
        "detail": ("app", dins, "/api/v1/batches/{key}", "qa"),
    }
    runs = {name: load.Run(clients=READ_CLIENTS, seconds=0.0) for name in sides}
    for half in range(2):
        for name, (server, chosen, path, user) in sides.items():
            work = [read_requests(chosen, path, bench.bearer(user), 100 * half + n) for n in range(READ_CLIENTS)]
            part = load.run(bench.ports[server], work, profile.seconds / 2)
            runs[name].latencies.extend(part.latencies)
            runs[name].statuses.update(part.statuses)
            runs[name].seconds += part.seconds
    floor = runs["floor"]
    result: dict[str, Any] = {"clients": READ_CLIENTS, "floor": floor.summary()}
    for name in ("readiness", "detail"):
        measured = runs[name]
        cost = ratio(floor.rate, measured.rate)
        ok = cost <= 3 and set(measured.statuses) == {200} and set(floor.statuses) == {200}
        result[name] = measured.summary() | {"cost_ratio": cost, "pass": ok}
        print(
            f"  {name} x{READ_CLIENTS}: {measured.rate:7.1f}/s p50 {measured.percentile(50) * 1e3:5.1f} ms p99 "
            f"{measured.percentile(99) * 1e3:5.1f} ms | floor (authenticated primary-key read) {floor.rate:7.1f}/s "
            f"p99 {floor.percentile(99) * 1e3:5.1f} ms | cost x{cost} (<= 3) | statuses {dict(measured.statuses)} "
            f"-> {'PASS' if ok else 'FAIL'}",
            flush=True,
        )
    result["pass"] = result["readiness"]["pass"] and result["detail"]["pass"]
    bench.results["reads"] = result


class Sampler:
    """Calls ``sample`` every ``interval`` seconds in a thread while a load runs, collecting what it returns."""

    def __init__(self, sample: Callable[[], list[float]], interval: float) -> None:
        self.sample, self.interval, self.values = sample, interval, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            self.values.extend(self.sample())

    def stop(self) -> list[float]:
        self.done.set()
        self.thread.join()
        return self.values


def lock_waiters(bench: Bench) -> Callable[[], list[float]]:
    """How many of the app's sessions are waiting for a lock right now (pg_stat_activity), as a sampler."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def sample() -> list[float]:
        with bench.db.engine.connect() as connection:
            return [connection.execute(query).scalar_one()]

    return sample


def deviation_requests(bench: Bench, din: str) -> Iterator[load.Request]:
    headers = bench.bearer("tech")
    while True:
        yield "POST", f"/api/v1/batches/{din}/deviations", {"kind": "manual", "description": "bench"}, headers


def bench_serialization(bench: Bench, profile: Profile, spread: list[str]) -> None:
    one = spread[0]
    # Lock waits are sampled during both runs: on one batch the writers queue on its row lock (by
    # design), on sixteen nothing should wait at all; that is what "no global serialization" means.
    sampler = Sampler(lock_waiters(bench), 0.05)
    racing = load.run(bench.ports["app"], [deviation_requests(bench, one) for _ in range(16)], profile.seconds)
    racing_waits = sampler.stop()
    sampler = Sampler(lock_waiters(bench), 0.05)
    apart = load.run(bench.ports["app"], [deviation_requests(bench, d) for d in spread[:16]], profile.seconds)
    apart_waits = sampler.stop()
    failures = []
    for din in {one, *spread[:16]}:
        status, report = load.one(
            bench.ports["app"], "GET", f"/api/v1/audit/verify?din={din}", None, bench.bearer("qa")
        )
        if status != 200 or not report["ok"]:
            failures.append({"din": din, "status": status, "report": report})
    with bench.db.engine.connect() as connection:
        seqs = (
            connection.execute(
                text(
                    "SELECT e.seq FROM batch_events e JOIN batches b ON b.id = e.batch_id WHERE b.din = :din ORDER BY 1"
                ),
                {"din": one},
            )
            .scalars()
            .all()
        )
    gapless = seqs == list(range(1, len(seqs) + 1))
    errors = racing.statuses.get(500, 0) + apart.statuses.get(500, 0)
    result = {
        "one_batch": racing.summary(),
        "sixteen_batches": apart.summary(),
        "ratio": ratio(apart.rate, racing.rate),
        "mean_sessions_waiting_on_a_lock": {
            "one_batch": round(statistics.fmean(racing_waits or [0]), 2),
            "sixteen_batches": round(statistics.fmean(apart_waits or [0]), 2),
        },
        "racing_chain_events": len(seqs),
        "racing_chain_gapless": gapless,
        "verify_failures": failures,
        "http_500": errors,
    }
    result["pass"] = result["ratio"] >= 1.5 and gapless and not failures and not errors
    bench.results["no_global_serialization"] = result
    print(
        f"  16 clients on 16 batches {apart.rate:.1f}/s vs on one batch {racing.rate:.1f}/s = x{result['ratio']} "
        f"(>= 1.5) | sessions waiting on a lock, mean: {result['mean_sessions_waiting_on_a_lock']['one_batch']} "
        f"on one batch, {result['mean_sessions_waiting_on_a_lock']['sixteen_batches']} on 16 "
        f"| one batch: {len(seqs)} events, gapless {gapless}, verify failures {len(failures)}, "
        f"500s {errors}, statuses {dict(racing.statuses)} / {dict(apart.statuses)} "
        f"-> {'PASS' if result['pass'] else 'FAIL'}",
        flush=True,
    )


def measure_readiness(benches: dict[str, Bench], requests: int, rounds: int = 10) -> dict[str, dict[str, Any]]:
    """p50/p99 of ``GET /readiness`` on each bench's server, measured in alternating slices.

    One client, sequential, bounded by the request count: the figure is a request's own
    latency. The databases are measured in turn, ``requests / rounds`` requests at a time,
    so that whatever else the machine does during the minute this takes falls on both
    alike; measured one after the other, minutes apart, the two p99s moved by several ms.
    """
    rng = random.Random(7)
    dins = {name: generated_dins(bench) for name, bench in benches.items()}
    runs = {name: load.Run(clients=1, seconds=0.0) for name in benches}
    for _ in range(rounds):
        for name, bench in benches.items():
            headers = bench.bearer("clinic")
            queue = (
                ("GET", f"/api/v1/batches/{rng.choice(dins[name])}/readiness", None, headers)
                for _ in range(requests // rounds)
            )
            part = load.run(bench.ports["app"], [queue], seconds=3600, warmup=5)
            runs[name].latencies.extend(part.latencies)
            runs[name].statuses.update(part.statuses)
            runs[name].seconds += part.seconds
    return {name: run.summary() for name, run in runs.items()}


def bench_readiness(big: Bench, small: Bench, profile: Profile) -> None:
    """Readiness p99 with 100,000 batches / 2,000,000 events, and against its p99 at ~1,000 batches."""
    measured = measure_readiness({"big": big, "small": small}, profile.readiness_requests)
    result: dict[str, Any] = {
        name: measured[name] | {"batches": count_batches(bench), "events": count_events(bench)}
        for name, bench in (("big", big), ("small", small))
    }
    result["ratio"] = ratio(result["big"]["p99_ms"], result["small"]["p99_ms"])
    result["pass"] = (
        result["big"]["p99_ms"] <= 10
        and result["ratio"] <= 1.2
        and result["big"]["statuses"] == {"200": result["big"]["requests"]}
    )
    big.results["readiness"] = result
    print(
        f"  readiness p99 {result['big']['p99_ms']} ms at {result['big']['batches']} batches / "
        f"{result['big']['events']} events (<= 10 ms) vs {result['small']['p99_ms']} ms at "
        f"{result['small']['batches']} batches, measured in alternation: x{result['ratio']} (<= 1.2) | p50 "
        f"{result['big']['p50_ms']} / {result['small']['p50_ms']} ms -> {'PASS' if result['pass'] else 'FAIL'}",
        flush=True,
    )


def generated_dins(bench: Bench) -> list[str]:
    with bench.db.engine.connect() as connection:
        return connection.execute(text("SELECT din FROM batches ORDER BY id")).scalars().all()


def count_events(bench: Bench) -> int:
    with bench.db.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM batch_events")).scalar_one()


def count_batches(bench: Bench) -> int:
    with bench.db.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM batches")).scalar_one()


def grow(bench: Bench, profile: Profile, next_sequence: int, *, batches_total: int = 0, events_total: int = 0) -> int:
    """Generate batches until there are ``batches_total`` batches and ``events_total`` events."""
    missing_events = max(0, events_total - count_events(bench))
    wanted = max(batches_total - count_batches(bench), -(-missing_events // profile.events_per_batch))
    if wanted > 0:
        began = time.monotonic()
        next_sequence = datagen.generate(bench.db.engine, bench.people, wanted, profile.events_per_batch, next_sequence)
        print(f"  generated {wanted} batches in {time.monotonic() - began:.1f} s", flush=True)
    return next_sequence


def bench_audit(bench: Bench, app) -> None:
    """chains.verify over every stream vs reading each stored canonical text and SHA-256-ing it."""
    events = count_events(bench)
    began = time.perf_counter()
    with bench.db.engine.connect() as connection:
        rows = connection.execution_options(yield_per=5000).execute(
            text("SELECT prev_hash, hash, canonical FROM batch_events ORDER BY batch_id, seq")
        )
        bad = sum(1 for prev, digest, canonical in rows if link_hash(prev, canonical) != digest)
    floor_seconds = time.perf_counter() - began
    with app.app_context():
        session = bench.db.reader()
        began = time.perf_counter()
        report = chains.verify(session, public_key=keys.trusted_public_key(app.config))
        verify_seconds = time.perf_counter() - began
        session.close()
    floor_rate, verify_rate = events / floor_seconds, report.events_checked / verify_seconds
    result = {
        "events": events,
        "floor_seconds": round(floor_seconds, 2),
        "floor_rate_per_s": round(floor_rate),
        "floor_mismatches": bad,
        "verify_seconds": round(verify_seconds, 2),
        "verify_rate_per_s": round(verify_rate),
        "verify_ok": report.ok,
        "verify_failures": report.failures[:5],
        "ratio": ratio(verify_rate, floor_rate),
    }
    result["pass"] = result["ratio"] >= 0.7 and report.ok and not bad
    bench.results["audit_verification"] = result
    print(
        f"  audit verify: {report.events_checked} events in {verify_seconds:.1f} s = {verify_rate:,.0f}/s | floor "
        f"read+SHA-256 {floor_rate:,.0f}/s | x{result['ratio']} (>= 0.7) | ok {report.ok} "
        f"-> {'PASS' if result['pass'] else 'FAIL'}",
        flush=True,
    )


def bench_outbox(bench: Bench, profile: Profile) -> None:
    began = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/outbox_bench.py"), "--count", str(profile.outbox_count)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = child.communicate(timeout=profile.outbox_timeout)
    except subprocess.TimeoutExpired:
        # SIGINT, not SIGKILL: outbox_bench's finally stops its Celery worker and drops its database.
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
        stderr = f"timed out after {profile.outbox_timeout} s (a row left pending?)\n{stderr}"
    line = next((ln for ln in stdout.splitlines() if ln.startswith("outbox webhook delivery")), "")
    match = re.search(r"= (\d+) webhooks/s", line)
    rate = int(match.group(1)) if match else 0
    result = {"rate_per_s": rate, "line": line or stderr[-2000:], "seconds": round(time.monotonic() - began, 1)}
    result["pass"] = rate >= 500 and "TIMED OUT" not in line
    bench.results["outbox"] = result
    print(f"  {line or 'outbox bench failed: ' + stderr[-300:]} -> {'PASS' if result['pass'] else 'FAIL'}")


# --- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and shorter runs (under 2 minutes)")
    parser.add_argument("--only", default="steps,serial,reads,readiness,audit,outbox")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    profile = QUICK if args.quick else FULL
    server = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not server.startswith("postgres") or not broker.startswith("redis"):
        sys.exit("bench/run.py needs DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis)")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="labtrack-bench-"))
    url, drop = fresh_database(workdir)
    small_url, drop_small = fresh_database(workdir) if "readiness" in chosen else ("", lambda: None)
    small: Bench | None = None
    base = 18000 + random.randrange(1000) * 2
    bench = Bench(url=url, db=Database(url), ports={"app": base, "floor": base + 1})
    load_line = Path("/proc/loadavg").read_text().split()[:3]
    print(f"LabTrack bench ({'quick' if args.quick else 'full'}): {os.cpu_count()} cores, load {' '.join(load_line)}, "
          f"database {make_url(url).database}", flush=True)  # fmt: skip
    try:
        upgrade(url)
        seed(bench)
        pool_size = sum(level_pool(profile, clients) for clients in CLIENT_LEVELS)
        pool = received_batches(bench, pool_size) if "steps" in chosen else []
        spread = received_batches(bench, 16) if "serial" in chosen else []
        readable = received_batches(bench, 50) if "reads" in chosen else []
        datagen.settle(bench.db.engine)
        print(f"  setup (migrate, seed, {len(pool) + len(spread) + len(readable)} received batches) "
              f"{time.monotonic() - started:.1f} s", flush=True)  # fmt: skip
        serve(bench, "app", "wsgi:app", workdir, broker)
        serve(bench, "floor", "floor_app:create_app()", workdir, broker)
        if "steps" in chosen:
            bench_steps(bench, profile, pool)
        if "serial" in chosen:
            bench_serialization(bench, profile, spread)
        if "reads" in chosen:
            bench_reads(bench, profile, readable)
        if bench.rss_samples:
            peak = max(bench.rss_samples)
            bench.results["memory"] = {"peak_worker_rss_mb": round(peak, 1), "bar_mb": 150, "pass": peak < 150}
            print(f"  web worker RSS under step load: peak {peak:.1f} MB (< 150) -> {'PASS' if peak < 150 else 'FAIL'}")
        next_sequence = 1
        if "readiness" in chosen:
            # The ~1,000-batch side of the readiness bar lives in a database of its own with its own
            # server, so that both sides can be measured in alternation (measure_readiness).
            small = Bench(url=small_url, db=Database(small_url), ports={"app": base + 2})
            upgrade(small_url)
            seed(small)
            grow(small, profile, 1, batches_total=profile.small_batches)
            (workdir / "small").mkdir()
            serve(small, "app", "wsgi:app", workdir / "small", broker)
        if "audit" in chosen:
            app = create_app(Config.from_env(instance_path=workdir / "instance-runner", DATABASE_URL=url,
                                             CELERY_BROKER_URL=broker, SECRET_KEY="bench"))  # fmt: skip
            next_sequence = grow(bench, profile, next_sequence, events_total=profile.audit_events)
            bench_audit(bench, app)
            app.extensions["labtrack.db"].dispose()
        if "readiness" in chosen:
            grow(
                bench, profile, next_sequence, batches_total=profile.big_batches,
                events_total=profile.big_batches * profile.events_per_batch,
            )  # fmt: skip
            # Both sides on a fresh server: the comparison is about the data, not about a server that
            # has just taken the write benches (a larger heap to collect, other statements cached).
            stop_servers(bench, "app")
            serve(bench, "app", "wsgi:app", workdir, broker)
            bench_readiness(bench, small, profile)
    finally:
        stop_servers(bench)
        bench.db.dispose()
        drop()
        if small is not None:
            stop_servers(small)
            small.db.dispose()
        drop_small()
    if "outbox" in chosen:
        bench_outbox(bench, profile)
    elapsed = time.monotonic() - started
    summary = {
        "mode": "quick" if args.quick else "full",
        "cpu_count": os.cpu_count(),
        "load_before": load_line,
        "seconds": round(elapsed, 1),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": bench.results,
    }
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{summary['at'].replace(':', '')}-{summary['mode']}.json"
    path.write_text(json.dumps(summary, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)  # server logs and instance folders; kept only when a run fails
    verdict = {name: ("PASS" if r["pass"] else "FAIL") for name, r in bench.results.items()}
    print(f"done in {elapsed:.0f} s on {os.cpu_count()} cores: {verdict} -> {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
