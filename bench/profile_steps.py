"""Profile the hot requests in-process: statements per request and where the time goes.

    DATABASE_URL=postgresql://root@127.0.0.1/postgres .venv/bin/python bench/profile_steps.py [--steps 300] \\
        [--show] [--audit-events 100000] [--readiness-batches 100000]

On a scratch database (as bench/run.py makes one), through the Flask test client:
``POST /batches/{din}/steps`` (digestion, isolation, concentration, as the step bench
sends them), ``GET /batches/{din}/readiness`` and ``POST /batches/{din}/deviations`` (the
racing bench's request). Prints the SQL statements per request (counted with a SQLAlchemy
``before_cursor_execute`` listener, grouped by their first words), the mean time per
request, and the top of a cProfile of the step and deviation loops; ``--audit-events``
adds the audit bench and a cProfile of ``chains.verify``; ``--readiness-batches`` grows the database
(bench/datagen.py) and profiles readiness there, with each statement's EXPLAIN ANALYZE.
Timings are in-process and single-threaded, so they are steadier than the HTTP bench
on a shared machine; use them to choose changes and bench/run.py to judge the bars.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import logging
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import floor_app  # noqa: E402
import run  # noqa: E402
from outbox_bench import fresh_database  # noqa: E402
from sqlalchemy import event, text  # noqa: E402

from config import Config  # noqa: E402
from labtrack import create_app  # noqa: E402
from labtrack.audit import chains, keys  # noqa: E402
from labtrack.db import Database  # noqa: E402
from labtrack.migrate import upgrade  # noqa: E402
from labtrack.ops import logs  # noqa: E402


class StatementCounter:
    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.phase: list[str] = []  # the phase_times phases running now, innermost last
        self.in_phase: Counter[str] = Counter()
        self.last: list[str] = []
        self.parameters: list = []

    def listen(self, engine) -> None:
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, parameters, *_args) -> None:
        words = statement.split()
        self.last.append(statement)
        self.parameters.append(parameters)
        self.kinds[" ".join(words[:2]) if words[0] == "SELECT" else " ".join(words[:3])] += 1
        if self.phase:
            self.in_phase[self.phase[-1]] += 1

    def take(self) -> Counter[str]:
        kinds, self.kinds, self.last, self.parameters, self.in_phase = self.kinds, Counter(), [], [], Counter()
        return kinds


# Where a step's time goes: each of these is timed (wall clock, no profiler) around every call.
PHASES = (
    ("labtrack.api.common", "authenticate"),
    ("labtrack.services.steps", "in_hand"),
    ("labtrack.services.steps", "_materials"),
    ("labtrack.services.steps", "append_batch_event"),
    ("sqlalchemy.orm.session", "Session.commit"),
)


class PhaseTimer:
    """Times each of PHASES (and counts the statements run inside it) while ``on``.

    Installed before the app is built, since Flask keeps its own reference to ``authenticate``.
    """

    def __init__(self, counter: StatementCounter) -> None:
        self.counter = counter
        self.seconds: Counter[str] = Counter()
        self.on = False
        for module_name, path in PHASES:
            owner = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, self._timed(name, owner.__dict__[name]))

    def _timed(self, name: str, original):
        @functools.wraps(original)
        def timed(*args, **kwargs):
            if not self.on:
                return original(*args, **kwargs)
            self.counter.phase.append(name)
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - began
                self.counter.phase.pop()

        return timed


def report_phases(requests: int, total: float, seconds: Counter[str], counter: StatementCounter) -> None:
    print(f"POST /steps by phase (wall clock, no profiler): {total / requests * 1e3:.2f} ms per request")
    for name, spent in seconds.most_common():
        statements = counter.in_phase[name] / requests
        print(f"    {spent / requests * 1e3:6.3f} ms  {statements:4.2f} statements  {name}")
    rest = (total - sum(seconds.values())) / requests * 1e3
    print(f"    {rest:6.3f} ms  the rest: Flask, parsing, the rules' own code, dumping, the test client")


def floor_in_process(bench: run.Bench, requests: int) -> None:
    """The step bench's floor (bench/floor_app.py) through the test client, for a same-basis comparison."""
    os.environ["DATABASE_URL"] = bench.url
    floor = floor_app.create_app()
    client = floor.test_client()
    method, path, body, headers = next(run.floor_requests(bench))
    for _ in range(20):
        client.open(path, method=method, json=body, headers=headers)
    began = time.perf_counter()
    for _ in range(requests):
        client.open(path, method=method, json=body, headers=headers)
    spent = (time.perf_counter() - began) / requests
    print(f"    floor (bench/floor_app.py, one INSERT + COMMIT, same engine, test client): {spent * 1e3:.2f} ms")
    floor.extensions["engine"].dispose()


def report(name: str, requests: int, seconds: float, kinds: Counter[str]) -> None:
    total = sum(kinds.values())
    print(
        f"{name}: {requests} requests, {seconds / requests * 1e3:.2f} ms each, {total / requests:.2f} statements each"
    )
    for kind, count in kinds.most_common():
        print(f"    {count / requests:5.2f}  {kind[:100]}")


def profile_audit(app, bench: run.Bench, args: argparse.Namespace) -> None:
    """chains.verify against the read-and-hash floor (as bench/run.py measures them), then under cProfile."""
    run.grow(bench, run.QUICK, run.count_batches(bench) + 1, events_total=args.audit_events)
    bench.results.clear()
    run.bench_audit(bench, app)
    profiler = cProfile.Profile()
    with app.app_context():
        session = bench.db.reader()
        profiler.enable()
        chains.verify(session, public_key=keys.trusted_public_key(app.config))
        profiler.disable()
        session.close()
    print_profile("chains.verify", profiler, "tottime", args.top)


def profile_readiness(app, bench: run.Bench, counter: StatementCounter, post, args: argparse.Namespace) -> None:
    """GET /readiness on generated batches (bench/datagen.py, 20 events each): time, statements, each
    statement's EXPLAIN ANALYZE, and a cProfile."""
    first = run.count_batches(bench) + 1  # generated DINs' sequences, clear of any generated before
    run.grow(bench, run.FULL, first, batches_total=args.readiness_batches, events_total=args.readiness_batches * 20)
    with bench.db.engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        dins = connection.execute(text("SELECT din FROM batches ORDER BY random() LIMIT 1100")).scalars().all()
    headers = bench.bearer("clinic")
    for din in dins[:100]:
        post("GET", f"/api/v1/batches/{din}/readiness", None, headers)
    counter.take()
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for din in dins[100:]:
        post("GET", f"/api/v1/batches/{din}/readiness", None, headers)
    profiler.disable()
    report(
        f"GET /readiness at {run.count_batches(bench)} batches, under cProfile",
        1000,
        time.perf_counter() - began,
        counter.take(),
    )
    post("GET", f"/api/v1/batches/{dins[0]}/readiness", None, headers)
    statements = list(zip(counter.last, counter.parameters, strict=True))
    counter.take()
    with app.extensions["labtrack.db"].engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        for statement, parameters in statements:
            cursor.execute(f"EXPLAIN (ANALYZE, SUMMARY) {statement}", parameters)
            plan = "\n    ".join(row[0] for row in cursor.fetchall())
            print(f"{statement}\n    {plan}\n")
    print_profile("GET /readiness", profiler, "cumulative", args.top)


def profile_access_log(repeats: int = 15, lines: int = 2000) -> None:
    """The JSON access line, in-process, to /dev/null through the app's handler (its filter and formatter):
    ``logs.log_access`` beside the same fields sent as any other line goes (``Logger.log`` with ``extra``,
    the general JSON formatter). CPU time per line, the best and the median of ``repeats`` runs."""
    logger = logging.getLogger(logs.ACCESS_LOGGER)
    other = logging.getLogger("labtrack.profile")  # any other logger: the general formatter
    saved = logger.handlers[:], logger.propagate, logger.level
    path, status, seconds = "/api/v1/batches/A999926000001/steps", 201, 0.0042
    fields = {"method": "POST", "path": path, "status": status, "duration_ms": round(seconds * 1000, 2)}

    def general() -> None:
        other.log(logging.INFO, logs.ACCESS_MESSAGE, "POST", path, status, seconds * 1000, extra=fields)

    def access() -> None:
        logs.log_access(logger, logging.INFO, "POST", path, status, seconds)

    with open(os.devnull, "w") as sink, logs.context(request_id="0" * 32, username="tech", din="A999926000001"):
        logger.handlers[:], logger.propagate, logger.level = [logs.handler(sink)], False, logging.INFO
        other.handlers[:], other.propagate, other.level = logger.handlers, False, logging.INFO
        try:
            for name, line in (("general JSON line (Logger.log, extra)", general), ("logs.log_access", access)):
                runs = []
                for _ in range(repeats):
                    began = time.process_time()
                    for _ in range(lines):
                        line()
                    runs.append((time.process_time() - began) / lines * 1e6)
                runs.sort()
                print(f"    access line, {name}: {runs[0]:.1f} µs best, {runs[len(runs) // 2]:.1f} µs median")
        finally:
            logger.handlers[:], logger.propagate, logger.level = saved
            other.handlers[:] = []


def print_profile(title: str, profiler: cProfile.Profile, order: str, top: int) -> None:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
    print(f"{title}, by {order}:\n{out.getvalue()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="step requests to profile (a multiple of 3)")
    parser.add_argument("--top", type=int, default=30, help="cProfile rows to print")
    parser.add_argument("--show", action="store_true", help="print the SQL of one step and one deviation request")
    parser.add_argument("--audit-events", type=int, default=0, help="then profile chains.verify over this many events")
    parser.add_argument(
        "--readiness-batches", type=int, default=0, help="then grow to this many batches and profile GET /readiness"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="labtrack-profile-"))
    url, drop = fresh_database(workdir)
    try:
        upgrade(url)
        bench = run.Bench(url=url, db=Database(url), ports={})
        run.seed(bench)
        *dins, spare = run.received_batches(bench, 2 * (args.steps // 3) + 21)
        counter = StatementCounter()
        phases = PhaseTimer(counter)
        app = create_app(Config.from_env(instance_path=workdir / "instance", DATABASE_URL=url, SECRET_KEY="profile"))
        counter.listen(app.extensions["labtrack.db"].engine)
        client = app.test_client()

        def post(method: str, path: str, body, headers) -> None:
            answer = client.open(path, method=method, json=body, headers=headers)
            if answer.status_code not in (200, 201):
                raise SystemExit(f"{method} {path}: {answer.status_code} {answer.get_data(as_text=True)}")

        warm, measured, timed = dins[:20], dins[20 : 20 + args.steps // 3], dins[20 + args.steps // 3 :]
        for request in run.step_requests(bench, warm):
            post(*request)
        counter.take()
        phases.on = True
        began = time.perf_counter()
        for request in run.step_requests(bench, timed):
            post(*request)
        elapsed = time.perf_counter() - began
        phases.on = False
        report_phases(len(timed) * 3, elapsed, phases.seconds, counter)
        floor_in_process(bench, len(timed) * 3)
        profile_access_log()
        counter.take()
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        for request in run.step_requests(bench, measured):
            post(*request)
        profiler.disable()
        report("POST /steps", len(measured) * 3, time.perf_counter() - began, counter.take())
        if args.show:
            post(*next(run.step_requests(bench, [spare])))
            print("\n\n".join(counter.last))
            counter.take()
        headers = bench.bearer("clinic")
        for din in warm:
            post("GET", f"/api/v1/batches/{din}/readiness", None, headers)
        counter.take()
        began = time.perf_counter()
        for din in measured:
            post("GET", f"/api/v1/batches/{din}/readiness", None, headers)
        report("GET /readiness", len(measured), time.perf_counter() - began, counter.take())
        if args.readiness_batches:
            profile_readiness(app, bench, counter, post, args)
        deviations = run.deviation_requests(bench, spare)
        for _ in range(20):
            post(*next(deviations))
        counter.take()
        deviation_profiler = cProfile.Profile()
        began = time.perf_counter()
        deviation_profiler.enable()
        for _ in range(100):
            post(*next(deviations))
        deviation_profiler.disable()
        report("POST /deviations", 100, time.perf_counter() - began, counter.take())
        if args.show:
            post(*next(deviations))
            print("\n\n".join(counter.last))
            counter.take()
        print_profile("POST /steps", profiler, "cumulative", args.top)
        print_profile("POST /steps", profiler, "tottime", args.top)
        print_profile("POST /deviations", deviation_profiler, "cumulative", args.top)
        if args.audit_events:
            profile_audit(app, bench, args)
        app.extensions["labtrack.db"].dispose()
        bench.db.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
