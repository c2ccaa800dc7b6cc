"""Fault injection with real components: a private PostgreSQL cluster of the test session's own (to
restart, make read-only or fill without touching the shared server), a tiny filesystem to fill, and the
app a real Celery worker serves (``worker_app``, tests/fixtures.py), whose tasks go to a queue of the test's own.

Without initdb the PostgreSQL fault tests skip with the reason, except under CI (``CI=true``), where a
fault test that cannot run fails instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select, text

from labtrack.db import normalise_url
from labtrack.migrate import upgrade
from labtrack.models import BatchEvent, Deviation, OutboxMessage
from tests.conftest import IN_CI, LabState, SharedApp, _seed, build_lab
from tests.workers.support import ROOT, free_port, wait_until, worker_env

POSTGRES_USER = "postgres"


@pytest.fixture
def app(worker_app):
    """The app a real worker serves (tests/fixtures.py)."""
    return worker_app


def cannot_run(reason: str) -> None:
    """Skip, or fail under CI: CI has what the fault tests need, so a skip there would hide a gap."""
    if IN_CI:
        pytest.fail(f"{reason} (under CI the fault tests must run)")
    pytest.skip(reason)


def postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(versions[-1]).parent if versions else None


def as_postgres(command: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", POSTGRES_USER, "--", *command] if os.geteuid() == 0 else command


def hand_over(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, POSTGRES_USER, POSTGRES_USER)


class PrivateCluster:
    """A PostgreSQL cluster in a temporary directory, on a free port: ours to restart, stop and fill."""

    def __init__(self, binaries: Path, directory: Path) -> None:
        self.binaries = binaries
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = free_port()

    def run(self, tool: str, *args: str) -> None:
        command = as_postgres([str(self.binaries / tool), *args])
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {result.stderr}\n{tail}")

    def create(self) -> None:
        hand_over(self.directory)
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", POSTGRES_USER, "--no-sync", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        # fsync off: faults here are the server's (a restart, a crash), not the machine's, whose cache survives
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data))

    def restart(self) -> None:
        # -l: the new server writes to the log, not to our pipes (else run() waits for it to exit)
        self.run("pg_ctl", "restart", "-w", "-m", "fast", "-D", str(self.data), "-l", str(self.log))

    def crash_and_start(self) -> None:
        """Stop as a power cut would (no shutdown checkpoint), then start: WAL recovery decides what stands."""
        self.stop("immediate")
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str) -> None:
        """Statements run outside a transaction, as the superuser (CREATE DATABASE, ALTER DATABASE...)."""
        engine = create_engine(normalise_url(self.url()))
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                for statement in statements:
                    connection.execute(text(statement))
        finally:
            engine.dispose()

    def new_database(self, tablespace: str | None = None, template: str | None = None) -> str:
        """A database of the test's own: a copy of ``template`` (a database's name), else migrated and
        seeded; its URL."""
        name = f"faults_{uuid.uuid4().hex[:10]}"
        statement = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        self.admin(statement + (f' TABLESPACE "{tablespace}"' if tablespace else ""))
        url = self.url(name)
        if template is None:
            upgrade(url)
            _seed(url)
        return url

    def disconnect_clients(self, database: str) -> None:
        """End every session on ``database`` but ours, as a failover or an administrator would."""
        self.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    binaries = postgres_bin()
    if binaries is None:
        cannot_run("initdb is not installed: no private PostgreSQL cluster to restart or fill")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="labtrack-faults-"))
    cluster = PrivateCluster(binaries, directory)
    try:
        cluster.create()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def private_lab_template(private_cluster: PrivateCluster, _shared_app: SharedApp, _lab_state: LabState) -> str:
    """A database of the private cluster holding what the shared one gives every ``lab`` test (``Lab.build``
    on the same migrations and seed), to copy for each test: its name."""
    url = private_cluster.new_database()
    lots = build_lab(_shared_app, url)
    assert lots == _lab_state.lots, f"the private lab data differs from the shared one: {lots} != {_lab_state.lots}"
    return url.rsplit("/", 1)[1]


def lab_template(request: pytest.FixtureRequest) -> str | None:
    """The private lab template when the test asks for a ``lab`` (as ``database_url`` gives it), else none."""
    return request.getfixturevalue("private_lab_template") if "lab" in request.fixturenames else None


@pytest.fixture
def private_database(request: pytest.FixtureRequest, private_cluster: PrivateCluster) -> Iterator[str]:
    """A database of the test's own on the private cluster; holding the ``lab`` data when the test asks for a lab."""
    url = private_cluster.new_database(template=lab_template(request))
    yield url
    private_cluster.admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


class TinyDisk:
    """A small tmpfs of its own: what a full disk looks like, made full by a ballast file and freed again."""

    def __init__(self, mountpoint: Path, size_mb: int) -> None:
        self.mountpoint = mountpoint
        self.ballast = mountpoint / "ballast"
        mountpoint.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(mountpoint)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            cannot_run(f"cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
        hand_over(mountpoint)

    def fill(self) -> None:
        """Write zeros until the filesystem refuses: every free block is taken."""
        chunk = b"\0" * (1 << 16)
        with contextlib.suppress(OSError), self.ballast.open("wb") as ballast:
            while True:
                ballast.write(chunk)
                ballast.flush()

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        assert wait_until(lambda: subprocess.run(["umount", str(self.mountpoint)]).returncode == 0, 10)


# --- what "nothing half-written" means, checked after every fault ---------------------------


def assert_nothing_half_written(lab) -> None:
    """Every chain verifies, every projection stands at its stream's last event, and every
    ``deviation.opened`` outbox row has its event and its deviation (and each such event its row)."""
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"], report["failures"]
    behind = lab.sql(
        "SELECT b.din FROM batches b "
        "WHERE b.seq <> (SELECT coalesce(max(e.seq), 0) FROM batch_events e WHERE e.batch_id = b.id)"
    )
    assert behind == [], f"projections not at their stream's head: {behind}"
    session = lab.db.reader()
    try:
        opened = {
            tuple(row)
            for row in session.execute(
                select(BatchEvent.batch_id, BatchEvent.seq).where(BatchEvent.type == "deviation_opened")
            )
        }
        deviations = {
            tuple(row) for row in session.execute(select(Deviation.id, Deviation.batch_id, Deviation.opened_seq))
        }
        rows = session.execute(
            select(OutboxMessage.batch_id, OutboxMessage.payload).where(OutboxMessage.topic == "deviation.opened")
        ).all()
    finally:
        session.close()
    announced = [(row.batch_id, row.payload["seq"]) for row in rows]
    assert sorted(announced) == sorted(opened), "an outbox row without its event, or an event without its row"
    assert {(row.payload["deviation_id"], row.batch_id, row.payload["seq"]) for row in rows} == deviations


def unavailable(response, reason: str) -> bool:
    """A clean 503: problem+json, code ``unavailable``, the reason, a detail saying nothing was recorded,
    and ``Retry-After`` telling the client when to resend."""
    body = response.get_json(silent=True) or {}
    return (
        response.status_code == 503
        and response.headers.get("Retry-After") == "5"
        and response.mimetype == "application/problem+json"
        and body.get("code") == "unavailable"
        and body.get("reason") == reason
        and "nothing was recorded" in body.get("detail", "")
    )


def deviations_until_refused(lab, din: str, limit: int = 2000) -> tuple[list[str], object, str]:
    """Open deviations until the database refuses one: what was accepted, the refusal, what was refused."""
    accepted = []
    for number in range(limit):
        description = f"filling {number}"
        response = lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": description})
        if response.status_code != 201:
            return accepted, response, description
        accepted.append(description)
    raise AssertionError(f"{limit} deviations fitted: the database never filled up")


def descriptions(lab, din: str) -> list[str]:
    listed = lab.ok(lab.get("qa", "/deviations", din=din), 200)["items"]
    return [deviation["description"] for deviation in reversed(listed)]


# --- a real server: gunicorn with the production configuration -------------------------------


class HttpResponse:
    """A ``requests`` answer with the parts of Flask's test response that the tests read."""

    def __init__(self, response: requests.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.mimetype = response.headers.get("Content-Type", "").split(";")[0]
        self.text = response.text
        self._response = response

    def get_json(self, silent: bool = False):
        try:
            return self._response.json()
        except ValueError:
            if silent:
                return None
            raise

    def get_data(self, as_text: bool = False):
        return self.text if as_text else self._response.content


class HttpClient:
    """FlaskClient's ``get``/``post`` over real HTTP, so the Lab helpers can drive a running server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def open(self, method: str, path: str, *, json=None, headers=None, query_string=None) -> HttpResponse:
        response = self.session.request(
            method, self.base + path, json=json, headers=headers, params=query_string, timeout=60
        )
        return HttpResponse(response)

    def get(self, path: str, **options) -> HttpResponse:
        return self.open("GET", path, **options)

    def post(self, path: str, **options) -> HttpResponse:
        return self.open("POST", path, **options)


@pytest.fixture
def gunicorn(lab, tmp_path: Path) -> Iterator[str]:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` (2 workers, 4 threads each) serving the test's app
    configuration: same database, instance folder, secret and queue. Its base URL."""
    port = free_port()
    env = worker_env(lab.app, PORT=str(port))
    log = (tmp_path / "gunicorn.log").open("wb")
    reaper = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
    server = subprocess.Popen(
        [*reaper, sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return requests.get(base + "/login", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(answering, 60), (tmp_path / "gunicorn.log").read_text()[-3000:]
        yield base
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
